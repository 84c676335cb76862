#!/usr/bin/env bash
# Failover and recovery figures:
#   1. failover time: kill -9 one of 3 executors under a paced load; time from the kill to the
#      manager declaring it lost, and to its securities' books being rebuilt on the survivors;
#   2. manager recovery: journal N orders (default 1,000,000), kill -9 the manager, restart it,
#      and report journal recovery time and restart-to-rebuilt time.
# Usage: scripts/failover-bench.sh [HEARTBEAT_TIMEOUT_MS] [ORDERS]     (KEEP=1 keeps the logs)
TIMEOUT=${1:-1500}
ORDERS=${2:-1000000}
MANAGER_LOG=info
source "$(dirname "$0")/grid-lib.sh"
now() { date +%s.%N; }
# Epoch seconds of the first (or, with "last", the latest) log line containing TEXT in FILES.
logtime() { # logtime first|last TEXT FILE...
  python3 - "$@" <<'PY'
import sys, re, datetime
which, text, files = sys.argv[1], sys.argv[2], sys.argv[3:]
times = []
for f in files:
    for line in open(f, errors="replace"):
        if text in line:
            m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            times.append(datetime.datetime.fromisoformat(m.group(1)[:26])
                         .replace(tzinfo=datetime.timezone.utc).timestamp())
print((min if which == "first" else max)(times) if times else "nan")
PY
}

echo "== failover (heartbeat timeout $TIMEOUT ms)"
start_manager 0 --fsync batch --heartbeat-timeout-ms "$TIMEOUT"
for i in 1 2 3; do start_executor "ex$i"; eval "EX$i=$EPID"; done
wait_ready ex1 ex2 ex3
load --orders 400000 --rate 100000 & LOAD=$!
sleep 1.5
kill -9 "$EX2"; killed=$(now)
wait "$LOAD"
lost=$(logtime first "lost;" "$work/manager.log")
rebuilt=$(logtime last "books rebuilt by replay" "$work/ex1.log" "$work/ex3.log")
python3 - "$killed" "$lost" "$rebuilt" "$work/r.json" <<'PY'
import sys, json
k, l, m = map(float, sys.argv[1:4])
d = json.load(open(sys.argv[4]))
print(f"kill -> declared lost: {1000*(l-k):.0f} ms; kill -> books rebuilt on the survivors: {1000*(m-k):.0f} ms")
print(f"load: {d['orders']} orders at 100,000/s, all final; final-state latency p50 {d['final_us']['p50']} us, "
      f"p99 {d['final_us']['p99']} us, max {d['final_us']['max']} us (the lost executor's orders waited)")
PY
stop_all

echo "== manager recovery ($ORDERS journaled orders)"
rm -rf "$work/data" "$work/manager.log"
start_manager 0 --fsync batch
start_executor rx; wait_ready rx
load --orders "$ORDERS" --max
port=${ADDR##*:}
kill -9 "$MPID"; t0=$(now)
start_manager "$port" --fsync batch; t1=$(now)
for _ in $(seq 1200); do grep -q "books rebuilt by replay" "$work/rx.log" && break; sleep 0.02; done; t2=$(now)
grep "recovered from the journal" "$work/manager.log" | sed 's/.*INFO //'
python3 -c "print(f'restart to listening: {1000*($t1-$t0):.0f} ms; restart to books rebuilt on the executor: {1000*($t2-$t0):.0f} ms')"
du -sh "$work/data/journal" "$work/data/tape" | sed 's/^/size: /'
