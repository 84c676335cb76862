#!/usr/bin/env bash
# A compressed trading day under load (issue figure): a manager on the HOSE schedule
# (--schedule hose --day-length DAY --days 1), N executors, and a paced user-sim load that runs
# across the whole day into the close. Prints the load's timeline (per window: orders final,
# orders/s, rejects, final-state p50/p99, and the exchange times, i.e. which part of the day),
# the rejects per reason, and the phase changes the journal recorded with their exchange times.
# Usage: scripts/day-bench.sh [EXECUTORS] [RATE] [DAY_SECONDS]
N=${1:-3}
RATE=${2:-20000}
DAY=${3:-60}
source "$(dirname "$0")/grid-lib.sh"

start_manager 0 --fsync batch --schedule hose --day-length "${DAY}s" --days 1
for i in $(seq "$N"); do start_executor "day-$i"; done
wait_ready $(seq -f "day-%g" "$N")
# The day started with the manager; the load outlasts its close by a little.
orders=$((RATE * (DAY + 2)))
window=$(python3 -c "print(max($DAY / 12, 1))")
echo "== HOSE day of ${DAY} s, $N executors, $orders orders at $RATE/s from 4 brokers"
load --orders "$orders" --rate "$RATE" --brokers 4 --timeline "$window"
python3 - "$work/r.json" <<'EOF'
import json, sys, datetime
d = json.load(open(sys.argv[1]))
def clock(ns):
    if ns <= 0:
        return "--:--:--"
    t = datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone(datetime.timedelta(hours=7)))
    return t.strftime("%H:%M:%S")
print(f"whole run: {d['orders']} orders in {d['elapsed_s']:.1f} s, {d['throughput']:.0f} orders/s; "
      f"final p50 {d['final_us']['p50']} us, p99 {d['final_us']['p99']} us, p99.9 {d['final_us']['p999']} us")
print(f"phase {d['phase_at_start']} at the start, {d['phase_at_end']} at the end; "
      f"{d['accepted']} accepted, {d['rejected']} rejected, {d['fills']} fills, "
      f"{d['passive_fills']} passive fills, {d['expired']} expired at the close")
print("rejects: " + ", ".join(f"{k} {v}" for k, v in d["rejects_by_reason"].items()))
print(f"{'wall s':>11} {'finals':>8} {'orders/s':>9} {'rejected':>8} {'p50 us':>8} {'p99 us':>8}  exchange time")
for w in d["timeline"]:
    print(f"{w['start_s']:>5.0f}-{w['end_s']:<5.0f} {w['finals']:>8} {w['orders_per_s']:>9.0f} {w['rejected']:>8} "
          f"{w['p50_us']:>8} {w['p99_us']:>8}  {clock(w['exchange_from'])}-{clock(w['exchange_to'])}")
EOF
echo "== phase changes in the journal (exchange time at HOSE)"
$B/manager journal export --csv --extra-columns --data-dir "$work/data" --out-dir "$work/export" 2>/dev/null
python3 - "$work/export/orders.csv" <<'EOF'
import csv, sys, datetime
tz = datetime.timezone(datetime.timedelta(hours=7))
for row in csv.DictReader(open(sys.argv[1])):
    if row["action"] == "PHASE":
        t = datetime.datetime.fromtimestamp(int(row["time"]) / 1e9, tz)
        print(f"  seq {row['seq']:>9}  {t:%Y-%m-%d %H:%M:%S}  {row['type']}")
EOF
stop_all
