#!/usr/bin/env bash
# Soak of a long trading day in bounded memory: a manager (book snapshots and the finished-order
# index on) and 3 executors under a paced load for N minutes. Every minute it samples the RSS of
# each process and the orders journaled so far; early (minute 2) and late (minute N-2) it kills
# an executor (failover time, commands replayed after the images) and then restarts the manager
# with kill -9 (recovery time, journal records read after the checkpoint). Prints the tables.
# DAY=2m runs HOSE trading days compressed to 2 minutes: every close expires the day's resting
# orders, so the live book is bounded by one day's flow, as on a real exchange (the default,
# DAY=none, is one continuous session: this load leaves orders resting, so the live book and
# RSS grow with the run).
# Usage: scripts/soak.sh [MINUTES=12] [RATE=20000] [extra manager flags...]   (KEEP=1 keeps logs)
# e.g.   scripts/soak.sh 15 30000 --snapshot-every 20000 --snapshot-secs 5
MINUTES=${1:-12}
RATE=${2:-20000}
shift 2 || shift $#
SNAP=("$@")
[ ${#SNAP[@]} -gt 0 ] || SNAP=(--snapshot-every 20000 --snapshot-secs 5)
DAY=${DAY:-none}
[ "$DAY" = none ] || SNAP+=(--schedule hose --day-length "$DAY" --days 1000)
MANAGER_LOG=info
source "$(dirname "$0")/grid-lib.sh"
now() { date +%s.%N; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "-"; }
# Epoch seconds of the first/last line containing TEXT in FILES after epoch AFTER.
logtime() { # logtime first|last AFTER TEXT FILE...
  python3 - "$@" <<'PY'
import sys, re, datetime
which, after, text, files = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
times = []
for f in files:
    try:
        lines = open(f, errors="replace").readlines()
    except FileNotFoundError:
        continue
    for line in lines:
        if text in line:
            m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            if not m:
                continue
            t = datetime.datetime.fromisoformat(m.group(1)[:26]).replace(tzinfo=datetime.timezone.utc).timestamp()
            if t >= after:
                times.append(t)
print((min if which == "first" else max)(times) if times else "nan")
PY
}
# The field VALUE of the last manager log line containing TEXT.
field() { grep " $1 " "$work/manager.log" | tail -1 | grep -o " $2=[0-9]*" | cut -d= -f2 || true; }

start_manager 0 --fsync batch "${SNAP[@]}"
PORT=${ADDR##*:}
declare -A EX
n_exec=0
spawn_exec() { n_exec=$((n_exec + 1)); start_executor "ex$n_exec"; EX[$1]=$EPID; EXNAME[$1]="ex$n_exec"; }
declare -A EXNAME
for k in 1 2 3; do spawn_exec $k; done
wait_ready ex1 ex2 ex3

# Paced load in chunks of 20 s (a manager restart ends a chunk; the next one carries on).
(
  i=0
  while :; do
    i=$((i + 1))
    $B/user-sim --manager "$ADDR" --ca "$work/data/cert.pem" --credentials "$work/data/brokers.csv" \
      --quiet --json "$work/load-$i.json" --orders $((RATE * 20)) --rate "$RATE" --brokers 4 --seed "$i" \
      2>>"$work/load.log" || sleep 1
  done
) & LOADER=$!
pids+=($LOADER)

events=()
failover() { # failover LABEL
  local k=2 t0 lost moved history
  history=$(field checkpoint history)
  kill -9 "${EX[$k]}"; t0=$(now); wait "${EX[$k]}" 2>/dev/null || true
  sleep 8
  lost=$(logtime first "$t0" "lost;" "$work/manager.log")
  # The survivors take the books over (Assign, images, replay of the tail in one batch).
  moved=$(logtime last "$t0" "shard map changed" "$work/${EXNAME[1]}.log" "$work/${EXNAME[3]}.log")
  events+=("$(python3 -c "nan=float('nan'); print(f'$1 executor failover: kill->lost {1000*($lost-$t0):.0f} ms, kill->books taken over {1000*($moved-$t0):.0f} ms; history kept for failover before the kill: ${history:-?} commands (all securities)')")") || true
  spawn_exec $k
}
restart_manager() { # restart_manager LABEL
  local t0 t1 t2 before
  before=$(grep -c "recovered from the journal" "$work/manager.log" || true)
  kill -9 "$MPID"; t0=$(now); wait "$MPID" 2>/dev/null || true
  start_manager "$PORT" --fsync batch "${SNAP[@]}"; t1=$(now)
  sleep 8
  t2=$(logtime last "$t0" "executor ready" "$work/${EXNAME[1]}.log" "$work/${EXNAME[2]}.log" "$work/${EXNAME[3]}.log")
  events+=("$(python3 -c "nan=float('nan'); print(f'$1 manager restart: kill->listening {1000*($t1-$t0):.0f} ms, kill->executors ready again {1000*($t2-$t0):.0f} ms;')") $(grep "recovered from the journal" "$work/manager.log" | tail -1 | grep -o 'resume_seq=[0-9]* books=[0-9]* records=[0-9]* rejected=[0-9]* next_seq=[0-9]* .*elapsed_ms=[0-9]*')") || true
  # The market-data feed rebuilds on a thread of its own (from its checkpoint) after the start.
  local fed
  fed=$(grep "feed: rebuilt from the journal" "$work/manager.log" | tail -1 | grep -o 'commands=[0-9]* from_checkpoint_seq=[0-9]* .*elapsed_ms=[0-9]*' || true)
  events+=("$1 feed rebuild: ${fed:-not finished 8 s after the start}")
}

# Per minute: RSS of each process; from the latest checkpoint: order records in the projection
# (live + finished not yet archived), commands kept for failover, ids in the gateway's memory,
# resting orders in the book images; over the minute's checkpoints: the longest time on the
# core thread (ms) and the longest write on the writer thread (ms).
ckpt_max() { # ckpt_max FIELD FROM_LINE: max of FIELD over checkpoint lines after FROM_LINE
  tail -n +"$2" "$work/manager.log" | grep " checkpoint " | grep -o " $1=[0-9]*" | cut -d= -f2 | sort -n | tail -1 || true
}
printf "%-4s %10s %7s %7s %7s %7s %9s %9s %9s %9s %8s %8s\n" min next_seq mgr_MB ex1_MB ex2_MB ex3_MB records history gw_ids image_ord core_ms write_ms
from=1
start=$(now)
for m in $(seq 1 "$MINUTES"); do
  # Early and late events, between samples.
  if [ "$m" -eq 3 ] || [ "$m" -eq $((MINUTES - 1)) ]; then
    label=$([ "$m" -eq 3 ] && echo early || echo late)
    failover "$label"
    sleep 10
    restart_manager "$label"
  fi
  target=$(python3 -c "print($start + 60*$m)")
  while python3 -c "import sys,time; sys.exit(0 if time.time() < $target else 1)"; do sleep 1; done
  core_us=$(ckpt_max core_us "$from"); write_us=$(ckpt_max write_us "$from")
  from=$(($(wc -l < "$work/manager.log") + 1))
  printf "%-4s %10s %7s %7s %7s %7s %9s %9s %9s %9s %8s %8s\n" "$m" "$(field checkpoint next_seq || echo -)" \
    "$(rss_mb "$MPID")" "$(rss_mb "${EX[1]}")" "$(rss_mb "${EX[2]}")" "$(rss_mb "${EX[3]}")" \
    "$(field checkpoint records)" "$(field checkpoint history)" "$(field checkpoint gateway_ids)" "$(field checkpoint image_orders)" \
    "$([ -n "$core_us" ] && echo $((core_us / 1000)) || echo -)" "$([ -n "$write_us" ] && echo $((write_us / 1000)) || echo -)"
done
echo
for e in "${events[@]}"; do echo "$e"; done
echo "checkpoints: $(grep -c ' checkpoint' "$work/manager.log") ; last: $(grep ' checkpoint' "$work/manager.log" | tail -1 | sed 's/.*checkpoint//')"
du -sh "$work/data/journal" "$work/data/tape" "$work/data/snapshots" | sed 's/^/size: /'
python3 - "$work" <<'PY'
import json, glob, sys
rs = [json.load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/load-*.json"))]
print(f"load chunks completed: {len(rs)}, orders final: {sum(r.get('accepted', 0) + r.get('rejected', 0) for r in rs)}")
PY
