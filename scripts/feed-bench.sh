#!/usr/bin/env bash
# Feed benchmark (issue figures), in one run on this machine, same grid shape, same order flow:
#   1. a grid of N executors (default 2) with no feed subscriber: user-sim --orders BIG --max
#   2. the same with S (default 16) L3 subscribers (`user-sim record`, all securities, files
#      on /dev/shm when it exists) connected before the load
# and prints both throughputs, their ratio, and the feed messages delivered per second (the
# sum over the subscribers of what they received, over the load's elapsed time).
# Usage: scripts/feed-bench.sh [EXECUTORS] [BIG_ORDERS] [SUBSCRIBERS]
# Note: on a 2-core machine the subscribers compete with the grid for the same cores, so the
# ratio is a worst case for the manager's feed role.
N=${1:-2}
BIG=${2:-1000000}
S=${3:-16}
source "$(dirname "$0")/grid-lib.sh"

start_grid() {
  rm -rf "$work/data"
  start_manager 0 --fsync batch
  for i in $(seq "$N"); do start_executor "bench-$i"; done
  wait_ready $(seq -f "bench-%g" "$N")
}
field() { python3 -c "import json; d=json.load(open('$work/r.json')); print($1)"; }
shm=/dev/shm; [ -d "$shm" ] || shm=$work

echo "== $N executors, $BIG orders --max, no subscriber"
start_grid
load --orders "$BIG" --max --brokers 4
base=$(field "d['throughput']")
echo "throughput: $(field "f\"{d['throughput']:.0f} orders/s in {d['elapsed_s']:.2f} s\"")"
stop_all

echo "== $N executors, $BIG orders --max, $S L3 subscribers"
start_grid
rec_pids=()
recdir=$(mktemp -d "$shm/feed-bench.XXXX")
for i in $(seq "$S"); do
  NO_COLOR=1 $B/user-sim record --manager "$ADDR" --ca "$work/data/cert.pem" --token "$(cat "$work/data/token")" \
      --out "$recdir/r$i" --levels 1 2>"$work/rec$i.log" & rec_pids+=($!); pids+=($!)
done
for i in $(seq "$S"); do
  for _ in $(seq 600); do grep -q "caught up" "$work/rec$i.log" 2>/dev/null && break; sleep 0.05; done
done
load --orders "$BIG" --max --brokers 4
with=$(field "d['throughput']")
elapsed=$(field "d['elapsed_s']")
echo "throughput: $(field "f\"{d['throughput']:.0f} orders/s in {d['elapsed_s']:.2f} s\"")"
# Let the subscribers drain what is queued for them (each logs "caught up" on a heartbeat
# sent only with nothing queued), then stop them: their summaries give the messages.
for i in $(seq "$S"); do
  [ -f "$work/rec$i.log" ] || continue
  n=$(grep -c "caught up" "$work/rec$i.log" || true)
  for _ in $(seq 600); do [ "$(grep -c "caught up" "$work/rec$i.log" || true)" -ge $((n + 2)) ] && break; sleep 0.05; done
done
for p in "${rec_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${rec_pids[@]}"; do wait "$p" 2>/dev/null || true; done
msgs=0; dropped=0
for i in $(seq "$S"); do
  line=$(grep "recorded " "$work/rec$i.log" | tail -1)
  m=$(echo "$line" | sed -E 's/.*recorded ([0-9]+) feed messages.*/\1/')
  msgs=$((msgs + ${m:-0}))
  grep -q "too slow" "$work/rec$i.log" && dropped=$((dropped + 1))
done
stop_all
rm -rf "$recdir"
python3 - "$base" "$with" "$msgs" "$elapsed" "$S" "$dropped" <<'EOF'
import sys
base, with_, msgs, elapsed, s, dropped = map(float, sys.argv[1:])
print(f"ratio with/without {int(s)} subscribers: {with_ / base:.3f}")
print(f"feed messages delivered: {int(msgs)} ({msgs / elapsed:,.0f}/s over the load, "
      f"{msgs / s / elapsed:,.0f}/s per subscriber); subscribers dropped as too slow: {int(dropped)}")
EOF
