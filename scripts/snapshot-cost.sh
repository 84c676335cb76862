#!/usr/bin/env bash
# Cost of book snapshots and checkpoints on throughput: the same load (ORDERS at full speed,
# 3 executors, --fsync batch) against a manager with snapshots off (the baseline, same run) and
# with each policy given. Prints orders/s and final-state latency per policy.
# Usage: scripts/snapshot-cost.sh [ORDERS=300000] ["POLICY" ...]   (NO_BUILD=1, KEEP=1)
# e.g.   scripts/snapshot-cost.sh 300000 "--snapshot-secs 30" "--snapshot-secs 2 --snapshot-every 5000"
ORDERS=${1:-300000}
shift || true
POLICIES=("--snapshot-secs 0" "$@")
[ $# -gt 0 ] || POLICIES+=("--snapshot-secs 30" "--snapshot-secs 2 --snapshot-every 5000")
MANAGER_LOG=info
source "$(dirname "$0")/grid-lib.sh"
printf "%-45s %12s %10s %10s %12s\n" policy orders/s p50_us p99_us checkpoints
for p in "${POLICIES[@]}"; do
  rm -rf "$work/data" "$work/manager.log"
  # shellcheck disable=SC2086
  start_manager 0 --fsync batch $p
  for i in 1 2 3; do start_executor "c$i"; done
  wait_ready c1 c2 c3
  load --orders "$ORDERS" --max --brokers 4
  python3 - "$p" "$work/r.json" "$(grep -c ' checkpoint ' "$work/manager.log" || true)" <<'PY'
import sys, json
d = json.load(open(sys.argv[2]))
rate = round(d["throughput"])
print(f"{sys.argv[1]:<45} {rate!s:>12} {d['final_us']['p50']:>10} {d['final_us']['p99']:>10} {sys.argv[3]:>12}")
PY
  stop_all
done
