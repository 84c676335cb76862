#!/usr/bin/env bash
# Grid benchmark (issue figures): for the no-grid baseline (manager --local) and a grid of N
# executors (default 4) on this machine, in the same run:
#   1. user-sim --orders 5000 --max         (end to end, once connected)
#   2. user-sim --orders 1000000 --max      (sustained orders/s)
#   3. user-sim at half the measured rate over 200,000 orders (latency percentiles)
# Usage: scripts/grid-bench.sh [EXECUTORS] [BIG_ORDERS]
N=${1:-4}
BIG=${2:-1000000}
source "$(dirname "$0")/grid-lib.sh"

start_grid() { # $1 = local | grid
  rm -rf "$work/data"
  if [ "$1" = local ]; then start_manager 0 --fsync batch --local; else start_manager 0 --fsync batch; fi
  if [ "$1" = grid ]; then
    for i in $(seq "$N"); do start_executor "bench-$i"; done
    wait_ready $(seq -f "bench-%g" "$N")
  fi
}
field() { python3 -c "import json; d=json.load(open('$work/r.json')); print($1)"; }

for mode in local grid; do
  echo "== $mode $( [ $mode = grid ] && echo "($N executors)")"
  start_grid $mode; load --orders 5000 --max --brokers 4
  echo "5000 orders: $(field "f\"{d['elapsed_s']*1000:.1f} ms, {d['throughput']:.0f} orders/s, final p50 {d['final_us']['p50']} us p99 {d['final_us']['p99']} us\"")"
  stop_all
  start_grid $mode; load --orders "$BIG" --max --brokers 4
  rate=$(field "d['throughput']")
  echo "$BIG orders --max: $(field "f\"{d['elapsed_s']:.2f} s, {d['throughput']:.0f} orders/s, final p99 {d['final_us']['p99']} us\"")"
  stop_all
  half=$(python3 -c "print(int($rate/2))")
  start_grid $mode; load --orders 200000 --rate "$half" --brokers 4
  echo "200000 orders at $half/s: $(field "f\"accept p50 {d['accept_us']['p50']} p99 {d['accept_us']['p99']} us; final p50 {d['final_us']['p50']} p90 {d['final_us']['p90']} p99 {d['final_us']['p99']} p99.9 {d['final_us']['p999']} max {d['final_us']['max']} us\"")"
  stop_all
done
