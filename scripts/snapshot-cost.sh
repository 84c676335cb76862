#!/usr/bin/env bash
# Cost of book snapshots and checkpoints on throughput: the same load (ORDERS at full speed,
# 3 executors, --fsync batch) against a manager with snapshots off (the baseline, same run) and
# with each policy given. Prints orders/s and final-state latency per policy, the checkpoints
# written, the longest time one took on the core thread and on the writer thread, how many
# were put off because the previous one was still being written, and the ratio to the baseline.
# Usage: scripts/snapshot-cost.sh [ORDERS=300000] ["POLICY" ...]   (NO_BUILD=1, KEEP=1)
# e.g.   scripts/snapshot-cost.sh 300000 "--snapshot-secs 30" "--snapshot-secs 2 --snapshot-every 5000"
ORDERS=${1:-300000}
shift || true
POLICIES=("--snapshot-secs 0" "$@")
[ $# -gt 0 ] || POLICIES+=("--snapshot-secs 30" "--snapshot-secs 2 --snapshot-every 5000")
MANAGER_LOG=info
source "$(dirname "$0")/grid-lib.sh"
printf "%-45s %10s %8s %8s %6s %9s %9s %8s %7s\n" policy orders/s p50_us p99_us ckpts core_max_ms write_max_ms delayed vs_off
base=""
for p in "${POLICIES[@]}"; do
  rm -rf "$work/data" "$work/manager.log"
  # shellcheck disable=SC2086
  start_manager 0 --fsync batch $p
  for i in 1 2 3; do start_executor "c$i"; done
  wait_ready c1 c2 c3
  load --orders "$ORDERS" --max --brokers 4
  line=$(python3 - "$p" "$work/r.json" "$work/manager.log" "$base" <<'PY'
import sys, json, re
d = json.load(open(sys.argv[2]))
rate = round(d["throughput"])
ck = [l for l in open(sys.argv[3], errors="replace") if " checkpoint " in l]
def mx(field):
    v = [int(m.group(1)) for l in ck for m in [re.search(rf" {field}=(\d+)", l)] if m]
    return max(v) if v else 0
base = float(sys.argv[4]) if sys.argv[4] else rate
print(f"{sys.argv[1]:<45} {rate!s:>10} {d['final_us']['p50']:>8} {d['final_us']['p99']:>8} {len(ck):>6} "
      f"{mx('core_us')/1000:>9.1f} {mx('write_us')/1000:>9.1f} {mx('delayed'):>8} {rate/base:>7.2f}")
PY
)
  echo "$line"
  [ -n "$base" ] || base=$(echo "$line" | awk '{print $(NF-7)}')
  stop_all
done
