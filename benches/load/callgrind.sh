#!/usr/bin/env bash
# Instructions per proxied request in the front's user space, counted by callgrind:
# deterministic, so two builds can be compared on a busy machine where req/s cannot.
#
#   bash benches/load/callgrind.sh [ROOST_BIN] [NAME]      (CONNS=16 connections by default)
#
# Starts `roost worker --app demo` as the backend and `roost serve` (a farm pool over it)
# under `valgrind --tool=callgrind --instr-atstart=no`, warms up for 2 s, switches
# instrumentation on for a 10 s `wrk -c$CONNS` run, and prints requests, total Ir and Ir per
# request. The profile stays in $OUT_DIR (default /tmp) for `callgrind_annotate`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/release/roost}"
name="${2:-roost}"
conns="${CONNS:-16}"
out_dir="${OUT_DIR:-/tmp}"
command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null

dir="$(mktemp -d)"
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
backend_port="$(port)"; front_port="$(port)"; admin_port="$(port)"
cat >"$dir/farm.yaml" <<EOF
sites:
  - name: bench
    bindings: [{listen: "127.0.0.1:$front_port"}]
    applications: [{path: /, pool: farm}]
pools:
  farm:
    farm:
      servers: [{address: "127.0.0.1:$backend_port", maxConcurrentRequests: 1000}]
admin: {listen: "127.0.0.1:$admin_port"}
EOF

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

"$bin" worker --app demo --listen "tcp:127.0.0.1:$backend_port" --io-threads 1 >/dev/null 2>&1 &
pids+=($!)
RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out_dir/callgrind-$name.out" \
    "$bin" serve -c "$dir/farm.yaml" >"$dir/front.log" 2>&1 &
front=$!
pids+=("$front")
for _ in $(seq 1 300); do
    curl -sf -o /dev/null -H 'Host: bench' "http://127.0.0.1:$front_port/" && break
    sleep 0.2
done
wrk -t1 -c"$conns" -d2s -H 'Host: bench' "http://127.0.0.1:$front_port/" >/dev/null
callgrind_control -i on "$front" >/dev/null 2>&1
wrk -t1 -c"$conns" -d10s -H 'Host: bench' "http://127.0.0.1:$front_port/" >"$dir/wrk.txt"
callgrind_control -i off "$front" >/dev/null 2>&1
callgrind_control -d "$front" >/dev/null 2>&1
sleep 1
requests="$(grep -o '[0-9]* requests in' "$dir/wrk.txt" | cut -d' ' -f1)"
callgrind_annotate "$out_dir/callgrind-$name.out.1" >"$dir/annotate.txt" 2>/dev/null
ir="$(grep -m1 'PROGRAM TOTALS' "$dir/annotate.txt" | tr -d ',' | awk '{print $1}')"
echo "$name: $requests requests, $ir instructions, $((ir / requests)) per request (profile: $out_dir/callgrind-$name.out.1)"
