#!/usr/bin/env bash
# Validate deploy/kubernetes offline: every manifest against the Kubernetes schemas
# (PyPI kubernetes-validate, which bundles them; strict = unknown fields fail) for the
# oldest supported version (1.30: preStop.sleep) and the newest; the ServiceMonitor CRD
# against @kubernetes-models/prometheus-operator (npm); and every proxy.yaml held in a
# ConfigMap with `roost check`.
# Usage: deploy/check/kubernetes.sh [ROOST_BINARY]
set -euo pipefail
roost=$(realpath "${1:-$(dirname "$0")/../../target/debug/roost}")
cd "$(dirname "$0")/../.."
tools=${ROOST_CHECK_TOOLS:-${TMPDIR:-/tmp}/roost-check-tools}
mkdir -p "$tools"

command -v kubernetes-validate >/dev/null 2>&1 || python3 -m pip install -q kubernetes-validate==1.37.0
manifests=(deploy/kubernetes/*.yaml deploy/kubernetes/farm/*.yaml deploy/kubernetes/monitoring/*.yaml)
for v in 1.30.0 1.37.0; do
    out=$(kubernetes-validate --strict --quiet -k "$v" "${manifests[@]}" 2>&1) || { echo "$out"; exit 1; }
    # Only the CRD may lack a schema here; it is checked below.
    if echo "$out" | grep -v "kind ServiceMonitor" | grep -q .; then
        echo "$out"
        exit 1
    fi
done
echo "kubernetes-validate: ${#manifests[@]} files pass for 1.30.0 and 1.37.0"

if [ ! -d "$tools/node_modules/@kubernetes-models/prometheus-operator" ]; then
    npm install --silent --no-audit --no-fund --prefix "$tools" @kubernetes-models/prometheus-operator@6 >/dev/null
fi
python3 - "${manifests[@]}" <<'PY' | node deploy/check/servicemonitor.mjs "$tools/node_modules"
import json, sys, yaml
docs = []
for f in sys.argv[1:]:
    with open(f) as fh:
        docs += [d for d in yaml.safe_load_all(fh) if d]
print(json.dumps(docs))
PY

# Each ConfigMap's proxy.yaml must pass `roost check` (the farm's DNS name is not
# resolved by check, only its form).
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" "${manifests[@]}" <<'PY'
import os, sys, yaml
out = sys.argv[1]
for f in sys.argv[2:]:
    with open(f) as fh:
        for d in yaml.safe_load_all(fh):
            if d and d.get("kind") == "ConfigMap" and "proxy.yaml" in d.get("data", {}):
                name = os.path.basename(f).replace(".yaml", "") + "-" + d["metadata"]["name"]
                with open(os.path.join(out, name + ".yaml"), "w") as o:
                    o.write(d["data"]["proxy.yaml"])
PY
n=0
for f in "$dir"/*.yaml; do
    "$roost" check -c "$f" >/dev/null
    n=$((n + 1))
done
[ "$n" -ge 2 ] || { echo "expected the proxy.yaml of configmap.yaml and the farm example"; exit 1; }
echo "roost check: $n proxy.yaml from ConfigMaps pass"
