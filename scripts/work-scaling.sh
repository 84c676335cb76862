#!/usr/bin/env bash
# Where the grid pays off: per-order work done on each executor's own CPU (executor
# --work-us U --work-mode sleep, which waits instead of burning this machine's shared cores),
# for 1..6 executors. Prints a Markdown table of median processing time and throughput.
# Usage: scripts/work-scaling.sh [WORK_US] [ORDERS] [REPEATS]
WORK=${1:-50}
ORDERS=${2:-40000}
REPEATS=${3:-3}
source "$(dirname "$0")/grid-lib.sh"
echo "| executors | work/order | orders | median time (s) | median orders/s | speed-up vs 1 |"
echo "|---:|---:|---:|---:|---:|---:|"
base=""
for n in 1 2 3 4 6; do
  times=()
  for r in $(seq "$REPEATS"); do
    rm -rf "$work/data"
    start_manager 0 --fsync never
    for i in $(seq "$n"); do start_executor "w$i" --work-us "$WORK" --work-mode sleep; done
    wait_ready $(seq -f "w%g" "$n")
    load --orders "$ORDERS" --max --seed "$r"
    times+=("$(python3 -c "import json; print(json.load(open('$work/r.json'))['elapsed_s'])")")
    stop_all
  done
  med=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  [ -n "$base" ] || base=$med
  python3 -c "print(f'| $n | $WORK us | $ORDERS | {$med:.3f} | {$ORDERS/$med:,.0f} | {$base/$med:.2f}x |')"
done
