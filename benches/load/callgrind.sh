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
#
# CACHE_SIM=1 also simulates the caches (a 32 KiB L1 and a 1 MiB last level: this
# machine's L1d and per-core L2) and prints the misses per request: what a request touches
# that a busy thread has not touched lately (BENCHMARKS.md, "The per-request footprint").
# PROXY=nginx measures nginx instead (one worker, `master_process off`, the harness's
# proxy settings), for the same numbers under the same load.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/release/roost}"
proxy="${PROXY:-roost}"
name="${2:-$proxy}"
conns="${CONNS:-16}"
out_dir="${OUT_DIR:-/tmp}"
command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null

vg=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out_dir/callgrind-$name.out")
if [ "${CACHE_SIM:-0}" = 1 ]; then
    vg+=(--cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=1048576,16,64)
fi

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
mkdir -p "$dir/nginx-body" "$dir/nginx-proxy"
sed -e "s/^worker_processes .*/worker_processes 1;\nmaster_process off;/" \
    -e '/listen .*NGINX_H2_PORT/d; /listen .*NGINX_TLS_PORT/d; /ssl_certificate/d' \
    -e "s#\${RUN_DIR}#$dir#g; s/\${BACKEND_PORT}/$backend_port/; s/\${NGINX_PORT}/$front_port/" \
    "$here/nginx.conf.tmpl" >"$dir/nginx.conf"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

"$bin" worker --app demo --listen "tcp:127.0.0.1:$backend_port" --io-threads 1 >/dev/null 2>&1 &
pids+=($!)
case "$proxy" in
    roost) RUST_LOG=warn "${vg[@]}" "$bin" serve -c "$dir/farm.yaml" >"$dir/front.log" 2>&1 & ;;
    nginx) "${vg[@]}" nginx -p "$dir" -e stderr -c "$dir/nginx.conf" >"$dir/front.log" 2>&1 & ;;
    *) echo "PROXY=$proxy: roost or nginx" >&2; exit 2 ;;
esac
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
totals="$(grep -m1 'PROGRAM TOTALS' "$dir/annotate.txt" | tr -d ',')"
ir="$(echo "$totals" | awk '{print $1}')"
echo "$name: $requests requests, $ir instructions, $((ir / requests)) per request (profile: $out_dir/callgrind-$name.out.1)"
if [ "${CACHE_SIM:-0}" = 1 ]; then
    # Events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw, each followed by its percentage.
    echo "$totals" | awk -v r="$requests" -v n="$name" '{
        printf "%s: per request: L1 instruction misses %.0f, L1 data misses %.0f, last-level data misses %.1f (%.1f read, %.1f write)\n",
            n, $7 / r, ($9 + $11) / r, ($15 + $17) / r, $15 / r, $17 / r }'
fi
