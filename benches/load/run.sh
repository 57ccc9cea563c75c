#!/usr/bin/env bash
# roost load harness: one command that installs the load tools and the peer proxies from
# Debian, builds roost in release mode, and measures direct / roost (farm) / roost (web
# garden) / nginx / HAProxy, interleaved, on loopback only. See BENCHMARKS.md.
#
#   bash benches/load/run.sh            # full run (~10-12 min)
#   QUICK=1 bash benches/load/run.sh    # ~3 min (more on busy cores): fewer, shorter runs
#
# Knobs (environment): REPS, DUR (seconds per run), IDLE_CONNS (10000), SCENARIOS and
# TARGETS (comma lists to run a subset), BACKEND_CPUS (1), PROXY_CPUS (0), LOAD_CPUS (0),
# NO_INSTALL=1 (skip apt-get), NO_BUILD=1 (use the existing target/release/roost),
# OUT (results file, default benches/load/results.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v taskset >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
if [ "${#need[@]}" -gt 0 ] && [ "${NO_INSTALL:-0}" != 1 ]; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$root" && cargo build --release --bin roost --example plain_hyper)
fi

# 10,000 idle client connections need as many descriptors in the client and the proxy.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true

exec python3 "$here/harness.py" "$@"
