#!/usr/bin/env bash
# The worker's own CPU cost per request against a plain hyper server answering the same
# "hello" (BENCHMARKS.md, "The worker's per-request cost"): `roost worker --app hello`
# and `examples/plain_hyper.rs`, each loaded directly with `wrk -t2 -c$CONNS`, interleaved
# REPS times, nothing pinned (the default layout's flags: --io-threads $IO_THREADS).
#
#   bash benches/load/worker_cost.sh                  # CPU µs per request (user, sys)
#   MODE=callgrind bash benches/load/worker_cost.sh   # user-space instructions per request
#
# CPU time is read from /proc/PID/stat around a $DUR-second run after a 1 s warm-up. The
# callgrind mode counts user-space instructions (deterministic, so it survives a busy
# machine; valgrind runs the threads one at a time, so it says nothing about contention):
# instrumentation is switched on for a $DUR-second run after a 2 s warm-up.
# Knobs: ROOST_BIN, PLAIN_BIN, IO_THREADS (2), CONNS (64), DUR (5), REPS (3), MODE, KEEP
# (a path prefix: keep the callgrind profiles as KEEP-worker.callgrind, KEEP-plain.callgrind).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
roost="${ROOST_BIN:-$root/target/release/roost}"
plain="${PLAIN_BIN:-$root/target/release/examples/plain_hyper}"
io="${IO_THREADS:-2}"
conns="${CONNS:-64}"
dur="${DUR:-5}"
reps="${REPS:-3}"
mode="${MODE:-cpu}"
tck="$(getconf CLK_TCK)"
dir="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
requests() { grep -o '[0-9]* requests in' "$1" | cut -d' ' -f1; }

start() { # name port [valgrind args...]
    local name="$1" p="$2"
    shift 2
    case "$name" in
        worker) RUST_LOG=warn "$@" "$roost" worker --app hello --listen "tcp:127.0.0.1:$p" \
            --io-threads "$io" >"$dir/$name.log" 2>&1 & ;;
        plain) "$@" "$plain" "127.0.0.1:$p" "$io" >"$dir/$name.log" 2>&1 & ;;
    esac
    pid=$!
    for _ in $(seq 1 600); do
        curl -sf -o /dev/null "http://127.0.0.1:$p/" && return 0
        sleep 0.1
    done
    echo "$name did not start" >&2
    cat "$dir/$name.log" >&2
    exit 1
}

stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
}

cpu_run() { # name
    local name="$1" p
    p="$(port)"
    start "$name" "$p"
    wrk -t2 -c"$conns" -d1s "http://127.0.0.1:$p/" >/dev/null
    read -r u0 s0 < <(cpu_ticks "$pid")
    wrk -t2 -c"$conns" -d"${dur}s" "http://127.0.0.1:$p/" >"$dir/wrk.txt"
    read -r u1 s1 < <(cpu_ticks "$pid")
    stop
    local n
    n="$(requests "$dir/wrk.txt")"
    awk -v n="$n" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$tck" -v name="$name" 'BEGIN {
        us = 1e6 / t / n
        printf "%-6s %9d req  user %5.2f  sys %5.2f  total %5.2f CPU us/req\n",
            name, n, u * us, s * us, (u + s) * us }'
}

callgrind_run() { # name
    local name="$1" p out
    p="$(port)"
    out="$dir/callgrind-$name.out"
    start "$name" "$p" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out"
    wrk -t2 -c"$conns" -d2s "http://127.0.0.1:$p/" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    wrk -t2 -c"$conns" -d"${dur}s" "http://127.0.0.1:$p/" >"$dir/wrk.txt"
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    stop
    local n ir
    n="$(requests "$dir/wrk.txt")"
    ir="$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", ""); print $1 }')"
    if [ -n "${KEEP:-}" ]; then cp "$out.1" "$KEEP-$name.callgrind"; fi
    echo "$name: $n requests, $ir instructions, $((ir / n)) per request"
}

for _ in $(seq 1 "$reps"); do
    for name in worker plain; do
        if [ "$mode" = callgrind ]; then callgrind_run "$name"; else cpu_run "$name"; fi
    done
done
