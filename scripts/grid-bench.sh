#!/usr/bin/env bash
# Grid benchmark (issue figures): for the no-grid baseline (manager --local) and a grid of N
# executors (default 4) on this machine, in the same run:
#   1. user-sim --orders 5000 --max         (end to end, once connected)
#   2. user-sim --orders 1000000 --max      (sustained orders/s)
#   3. user-sim at half the measured grid rate over 200,000 orders (latency percentiles)
# Usage: scripts/grid-bench.sh [EXECUTORS] [BIG_ORDERS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}
BIG=${2:-1000000}
cargo build --release --workspace --quiet
B=target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

start_grid() { # $1 = mode (local|grid)
  rm -rf "$work/data" "$work/addr"; pids=()
  local extra=(); [ "$1" = local ] && extra=(--local)
  RUST_LOG=warn $B/manager --port 0 --bind 127.0.0.1 --data-dir "$work/data" --fsync batch \
      --ready-file "$work/addr" "${extra[@]}" 2>"$work/manager.log" & pids+=($!)
  for _ in $(seq 300); do [ -f "$work/addr" ] && break; sleep 0.05; done
  ADDR=$(cat "$work/addr")
  if [ "$1" = grid ]; then
    for i in $(seq "$N"); do
      RUST_LOG=info $B/executor --manager "$ADDR" --ca "$work/data/cert.pem" --token "$(cat "$work/data/token")" \
          --name "bench-$i" 2>"$work/exec-$i.log" & pids+=($!)
    done
    for i in $(seq "$N"); do
      for _ in $(seq 300); do grep -q "executor ready" "$work/exec-$i.log" 2>/dev/null && break; sleep 0.05; done
    done
  fi
}
stop_grid() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
load() { # $@ = extra user-sim args; prints the JSON report
  $B/user-sim --manager "$ADDR" --ca "$work/data/cert.pem" --credentials "$work/data/brokers.csv" \
      --brokers 4 --quiet --json "$work/r.json" "$@"
  cat "$work/r.json"
}
field() { python3 -c "import json,sys; d=json.load(open('$work/r.json')); print($1)"; }

for mode in local grid; do
  echo "== $mode $( [ $mode = grid ] && echo "($N executors)")"
  start_grid $mode; load --orders 5000 --max >/dev/null
  echo "5000 orders: $(field "f\"{d['elapsed_s']*1000:.1f} ms, {d['throughput']:.0f} orders/s, final p50 {d['final_us']['p50']} us p99 {d['final_us']['p99']} us\"")"
  stop_grid
  start_grid $mode; load --orders "$BIG" --max >/dev/null
  rate=$(field "d['throughput']")
  echo "$BIG orders --max: $(field "f\"{d['elapsed_s']:.2f} s, {d['throughput']:.0f} orders/s, final p99 {d['final_us']['p99']} us\"")"
  stop_grid
  half=$(python3 -c "print(int($rate/2))")
  start_grid $mode; load --orders 200000 --rate "$half" >/dev/null
  echo "200000 orders at $half/s: $(field "f\"accept p50 {d['accept_us']['p50']} p99 {d['accept_us']['p99']} us; final p50 {d['final_us']['p50']} p90 {d['final_us']['p90']} p99 {d['final_us']['p99']} p99.9 {d['final_us']['p999']} max {d['final_us']['max']} us\"")"
  stop_grid
done
