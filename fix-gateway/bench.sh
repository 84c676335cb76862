#!/usr/bin/env bash
# FIX gateway figures, with the native QUIC client in the same run for comparison. Each
# measurement gets a fresh grid (manager --fsync batch + N executors) on loopback:
#   1. one FIX session streaming ORDERS requests as fast as its window allows (fix-load --max)
#      next to one native broker session doing the same (user-sim --brokers 1 --max);
#   2. the same flow paced at RATE requests/s (default 10,000): FIX request -> first answer
#      (ExecutionReport or OrderCancelReject, after the engine processed it) next to user-sim
#      --rate RATE (due -> accepted, i.e. journaled, and due -> final).
# Both clients send the same seeded flow (user-sim's generator, one broker, seed 1).
# Usage: fix-gateway/bench.sh [EXECUTORS] [ORDERS] [RATE]
N=${1:-2}
ORDERS=${2:-200000}
RATE=${3:-10000}
PACED=$(( RATE * 10 ))
source "$(dirname "$0")/../scripts/grid-lib.sh"
cargo build --release -p fix-gateway --quiet

fresh_grid() {
  stop_all
  rm -rf "$work/data" "$work/fix"
  start_manager 0 --fsync batch
  for i in $(seq "$N"); do start_executor "bench-$i"; done
  wait_ready $(seq -f "bench-%g" "$N")
}

start_gateway() {
  rm -f "$work/gw.out"
  NO_COLOR=1 RUST_LOG=warn $B/fix-gateway --listen 127.0.0.1:0 --data-dir "$work/fix" \
      --manager "$ADDR" --ca "$work/data/cert.pem" >"$work/gw.out" 2>>"$work/gw.log" & pids+=($!)
  for _ in $(seq 600); do grep -q listening "$work/gw.out" 2>/dev/null && break; sleep 0.05; done
  GW=$(awk '{print $NF}' "$work/gw.out")
}

fix_load() {
  $B/fix-load --gateway "$GW" --sender B01 --password "@$work/data/brokers.csv" \
      --orders "$work/orders-$1.csv" --json "$work/f.json" "${@:2}" >/dev/null
}
j() { python3 -c "import json; d=json.load(open('$1')); print($2)"; }

fresh_grid
for n in "$ORDERS" "$PACED"; do
  $B/user-sim generate --orders "$n" --seed 1 --brokers 1 --securities "$work/data/securities.csv" \
      --out "$work/orders-$n.csv" >/dev/null
done

echo "== $ORDERS requests, one session, as fast as possible ($N executors, loopback)"
start_gateway; fix_load "$ORDERS"
echo "FIX (fix-load):       $(j "$work/f.json" "f\"{d['throughput']:.0f} requests/s ({d['elapsed_s']:.2f} s); send->answer p50 {d['answer_us']['p50']} us p99 {d['answer_us']['p99']} us\"")"
fresh_grid; load --orders "$ORDERS" --brokers 1 --max --seed 1
echo "native (user-sim):    $(j "$work/r.json" "f\"{d['throughput']:.0f} requests/s ({d['elapsed_s']:.2f} s); send->final p50 {d['final_us']['p50']} us p99 {d['final_us']['p99']} us\"")"

echo "== $PACED requests at $RATE/s, one session"
fresh_grid; start_gateway; fix_load "$PACED" --rate "$RATE"
echo "FIX (fix-load):       due->first answer p50 $(j "$work/f.json" "d['answer_us']['p50']") us, p99 $(j "$work/f.json" "d['answer_us']['p99']") us, p99.9 $(j "$work/f.json" "d['answer_us']['p999']") us"
fresh_grid; load --orders "$PACED" --brokers 1 --rate "$RATE" --seed 1
echo "native (user-sim):    due->accepted p50 $(j "$work/r.json" "d['accept_us']['p50']") us, p99 $(j "$work/r.json" "d['accept_us']['p99']") us; due->final p50 $(j "$work/r.json" "d['final_us']['p50']") us, p99 $(j "$work/r.json" "d['final_us']['p99']") us, p99.9 $(j "$work/r.json" "d['final_us']['p999']") us"
stop_all
