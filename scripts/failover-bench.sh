#!/usr/bin/env bash
# Failover and recovery figures:
#   1. failover time: kill -9 one of 3 executors under a paced load; time from the kill to the
#      manager declaring it lost, and to its securities being rebuilt (replayed) elsewhere;
#   2. manager recovery: journal N orders (default 1,000,000), kill -9 the manager, restart it
#      and report how long journal recovery took.
# Usage: scripts/failover-bench.sh [HEARTBEAT_TIMEOUT_MS] [ORDERS]
set -euo pipefail
cd "$(dirname "$0")/.."
TIMEOUT=${1:-1500}
ORDERS=${2:-1000000}
cargo build --release --workspace --quiet
B=target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT INT TERM
ts() { date +%s.%N; }
logtime() { # first ISO timestamp of a log line matching $2 in file $1, as epoch seconds
  python3 - "$1" "$2" <<'PY'
import sys, re, datetime
for line in open(sys.argv[1], errors="replace"):
    if sys.argv[2] in line:
        m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
        t = datetime.datetime.fromisoformat(m.group(1)[:26]).replace(tzinfo=datetime.timezone.utc)
        print(t.timestamp()); break
PY
}
start_manager() {
  rm -f "$work/addr"
  NO_COLOR=1 RUST_LOG=info $B/manager --port "${1:-0}" --bind 127.0.0.1 --data-dir "$work/data" --fsync batch \
      --heartbeat-timeout-ms "$TIMEOUT" --ready-file "$work/addr" 2>>"$work/manager.log" & pids+=($!)
  MPID=$!
  for _ in $(seq 600); do [ -f "$work/addr" ] && break; sleep 0.05; done
  ADDR=$(cat "$work/addr")
}

echo "== failover (heartbeat timeout $TIMEOUT ms)"
start_manager
for i in 1 2 3; do
  NO_COLOR=1 RUST_LOG=info $B/executor --manager "$ADDR" --ca "$work/data/cert.pem" --token "$(cat "$work/data/token")" \
      --name "ex$i" 2>"$work/ex$i.log" & pids+=($!)
  eval "EX$i=$!"
done
for i in 1 2 3; do for _ in $(seq 300); do grep -q "executor ready" "$work/ex$i.log" && break; sleep 0.05; done; done
$B/user-sim --manager "$ADDR" --ca "$work/data/cert.pem" --credentials "$work/data/brokers.csv" \
    --orders 400000 --rate 100000 --quiet --json "$work/load.json" & LOAD=$!
sleep 1.5
kill -9 "$EX2"; killed=$(ts)
wait "$LOAD"
lost=$(logtime "$work/manager.log" "lost;")
moved=$(python3 - "$work" <<'PY'
import sys, re, datetime, glob
best = None
for f in glob.glob(sys.argv[1] + "/ex[13].log"):
    for line in open(f, errors="replace"):
        if "books rebuilt by replay" in line:
            m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            t = datetime.datetime.fromisoformat(m.group(1)[:26]).replace(tzinfo=datetime.timezone.utc).timestamp()
            best = t if best is None else max(best, t)
print(best)
PY
)
python3 - "$killed" "$lost" "$moved" "$work/load.json" <<'PY'
import sys, json
k, l, m = map(float, sys.argv[1:4])
d = json.load(open(sys.argv[4]))
print(f"kill -> declared lost: {1000*(l-k):.0f} ms; kill -> books rebuilt on the survivors: {1000*(m-k):.0f} ms")
print(f"load: {d['orders']} orders at 100,000/s, all final; final-state latency p50 {d['final_us']['p50']} us, "
      f"p99 {d['final_us']['p99']} us, max {d['final_us']['max']} us (orders of the lost executor waited)")
PY
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=()

echo "== manager recovery ($ORDERS journaled orders)"
rm -rf "$work/data" "$work/manager.log"
start_manager
NO_COLOR=1 RUST_LOG=info $B/executor --manager "$ADDR" --ca "$work/data/cert.pem" --token "$(cat "$work/data/token")" --name rx 2>"$work/rx.log" & pids+=($!)
for _ in $(seq 300); do grep -q "executor ready" "$work/rx.log" && break; sleep 0.05; done
$B/user-sim --manager "$ADDR" --ca "$work/data/cert.pem" --credentials "$work/data/brokers.csv" --orders "$ORDERS" --max --quiet --json "$work/big.json"
port=${ADDR##*:}
kill -9 "$MPID"; t0=$(ts)
start_manager "$port"; t1=$(ts)
for _ in $(seq 1200); do grep -q "books rebuilt by replay" "$work/rx.log" && break; sleep 0.05; done; t2=$(ts)
grep "recovered from the journal" "$work/manager.log" | sed 's/.*INFO //'
python3 -c "print(f'restart to listening: {1000*($t1-$t0):.0f} ms; restart to books rebuilt on the executor: {1000*($t2-$t0):.0f} ms')"
du -sh "$work/data/journal" "$work/data/tape" | sed 's/^/size: /'
