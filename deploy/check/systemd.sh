#!/usr/bin/env bash
# Check deploy/systemd. With systemd-analyze (Debian package `systemd`; works without
# systemd as PID 1): `verify` must print nothing (unknown keys are only warnings there,
# so any output fails) and `security --offline` must score 3.0 or better. ExecStart=
# must name an existing binary, so the unit is checked with its path rewritten to the
# built roost. Without systemd-analyze: a static check of the keys roost relies on.
# Usage: deploy/check/systemd.sh [ROOST_BINARY]
set -euo pipefail
roost=$(realpath "${1:-$(dirname "$0")/../../target/debug/roost}")
cd "$(dirname "$0")/../.."
unit=deploy/systemd/roost.service

for key in Type=notify NotifyAccess=main ExecReload= KillMode=mixed WatchdogSec= \
    LimitNOFILE= RuntimeDirectory=roost ProtectSystem=strict User=roost \
    AmbientCapabilities=CAP_NET_BIND_SERVICE CapabilityBoundingSet=CAP_NET_BIND_SERVICE \
    NoNewPrivileges=yes; do
    grep -q "^$key" "$unit" || { echo "$unit: no $key line"; exit 1; }
done
grep -q '^Type=notify-reload' deploy/systemd/roost-notify-reload.conf
# Every `roost check -c FILE` / `serve -c FILE` in the unit names the same config.
[ "$(grep -o -- '-c [^ ]*' "$unit" | sort -u | wc -l)" -eq 1 ]

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze not found: static check of $unit only"
    exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s#/usr/local/bin/roost#$roost#g" "$unit" >"$dir/roost.service"
if ! systemd-analyze verify "$dir/roost.service" >"$dir/out" 2>&1 || [ -s "$dir/out" ]; then
    echo "systemd-analyze verify $unit:"
    cat "$dir/out"
    exit 1
fi
systemd-analyze --offline=true security --threshold=30 "$dir/roost.service" >"$dir/sec" 2>&1 \
    || { tail -5 "$dir/sec"; echo "$unit: exposure above 3.0"; exit 1; }
echo "systemd-analyze: $unit verifies; $(grep -o 'Overall exposure level.*' "$dir/sec")"
