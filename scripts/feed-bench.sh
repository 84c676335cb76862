#!/usr/bin/env bash
# Feed benchmark (issue 12's figures): one order flow (user-sim --orders BIG --max, 4 brokers)
# through the same grid shape (N executors, default 2), in one run on this machine, with:
#   base   no feed subscriber (the baseline of every ratio below);
#   count  S subscriptions (default 16) held by ONE `user-sim record --count-only --sessions S`
#          process: each decodes every L3 message and applies it to its books, writes no file,
#          and all of them share one thread, so they cannot starve the grid;
#   files  S `user-sim record` processes writing LOBSTER files (on /dev/shm when it exists):
#          the worst case, the subscribers compete with the grid for the cores.
# For each: wall throughput, the manager's own CPU per order (/proc/PID/stat utime+stime over
# the load: the figure that isolates the feed's cost in the manager), the feed's messages from
# the manager's metrics (canonical, produced for the views, sent, bytes) and their rates over
# the load, and, after the subscribers drained, whether every subscriber's final books equal
# the sequential engine's (journal export -> replay --local --books-out, compared with cmp).
# Usage: scripts/feed-bench.sh [EXECUTORS] [BIG_ORDERS] [SUBSCRIBERS]
# MODES="base count files" (default) picks the runs; MANAGER_ARGS adds manager flags to every
# run (e.g. "--feed-subscriber-queue 2000000": whole-L3 subscribers share one log, so a deep
# bound lets the one-thread counting process fall behind during the load without overflows).
N=${1:-2}
BIG=${2:-1000000}
S=${3:-16}
MODES=${MODES:-base count files}
source "$(dirname "$0")/grid-lib.sh"
TCK=$(getconf CLK_TCK)
shm=/dev/shm; [ -d "$shm" ] || shm=$work

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
field() { python3 -c "import json; d=json.load(open('$work/r.json')); print($1)"; }
# metric NAME: the sample's value from the manager's /metrics (0 when absent).
metric() {
  curl -s "http://127.0.0.1:$MPORT/metrics" | awk -v n="$1" '$1 == n { printf "%d\n", $2; f=1 } END { if (!f) print 0 }'
}
feed_metrics() {
  echo "$(metric 'gridmatch_feed_messages_total{view="canonical"}') $(metric 'gridmatch_feed_messages_total{view="L3"}') \
$(metric gridmatch_feed_sent_messages_total) $(metric gridmatch_feed_sent_bytes_total)"
}

start_grid() {
  rm -rf "$work/data"
  MPORT=$(free_port)
  # shellcheck disable=SC2086
  MANAGER_LOG=${MANAGER_LOG:-warn,manager::server=info} start_manager 0 --fsync batch --metrics-addr "127.0.0.1:$MPORT" ${MANAGER_ARGS:-}
  for i in $(seq "$N"); do start_executor "bench-$i"; done
  wait_ready $(seq -f "bench-%g" "$N")
}

# wait_feed_applied: until the feed task has applied everything the core handed it (its
# canonical count stops growing once the load is over): before that, a subscriber can be
# "caught up" with what the feed published so far while the feed still works off a backlog.
# Stable for 2 s: a feed thread starved of CPU on a loaded machine can pause for less.
wait_feed_applied() {
  local last=-1 now same=0
  for _ in $(seq 600); do
    now=$(metric 'gridmatch_feed_messages_total{view="canonical"}')
    if [ "$now" = "$last" ]; then same=$((same + 1)); [ $same -ge 4 ] && return; else same=0; fi
    last=$now; sleep 0.5
  done
}

# caught_up LOG PATTERN: how many "caught up" heartbeats LOG shows for PATTERN (one session).
caught_up() { grep "caught up" "$1" | grep -c -F "$2" || true; }
# wait_caught_up LOG:PATTERN...: until every one shows two more "caught up" heartbeats than now.
# The feed sends a heartbeat only with nothing queued for the subscription: everything
# sequenced so far was received. A dropped or failed subscriber is not waited for.
wait_caught_up() {
  local targets=() spec
  for spec in "$@"; do targets+=("$(( $(caught_up "${spec%%:*}" "${spec#*:}") + 2 ))"); done
  for _ in $(seq 6000); do
    local pending=0 i=0
    for spec in "$@"; do
      local log=${spec%%:*}
      if [ "$(caught_up "$log" "${spec#*:}")" -lt "${targets[$i]}" ] && ! grep -q -E "too slow|Error" "$log"; then
        pending=1; break
      fi
      i=$((i + 1))
    done
    [ $pending = 0 ] && return
    sleep 0.05
  done
}

# run MODE: one grid, one load; appends a result line to $work/results.
run() {
  local mode=$1 rec_pids=() logs=() books=() recdir
  echo "== $mode: $N executors, $BIG orders --max$([ "$mode" = base ] || echo ", $S L3 subscriptions")"
  start_grid
  recdir=$(mktemp -d "$shm/feed-bench.XXXX")
  local rec=($B/user-sim record --manager "$ADDR" --ca "$work/data/cert.pem" --token "$(cat "$work/data/token")")
  case $mode in
    count)
      NO_COLOR=1 RUST_LOG=info "${rec[@]}" --count-only --sessions "$S" --books-out "$recdir/books.csv" \
        2>"$work/count.log" & rec_pids+=($!); pids+=($!)
      logs=("$work/count.log")
      for i in $(seq "$S"); do books+=("$recdir/books.csv.$i"); done
      # One process: every session logs its own heartbeats into the same file.
      for _ in $(seq 1200); do [ "$(grep -c "caught up" "$work/count.log" 2>/dev/null || true)" -ge "$S" ] && break; sleep 0.05; done
      ;;
    files)
      for i in $(seq "$S"); do
        NO_COLOR=1 RUST_LOG=info "${rec[@]}" --out "$recdir/r$i" --levels 1 --books-out "$recdir/books$i.csv" \
          2>"$work/rec$i.log" & rec_pids+=($!); pids+=($!)
        logs+=("$work/rec$i.log"); books+=("$recdir/books$i.csv")
      done
      for log in "${logs[@]}"; do
        for _ in $(seq 1200); do grep -q "caught up" "$log" 2>/dev/null && break; sleep 0.05; done
      done
      ;;
  esac
  local m0 c0 m1 c1 t0 t1
  m0=$(feed_metrics); c0=$(cpu_ticks "$MPID")
  load --orders "$BIG" --max --brokers 4
  c1=$(cpu_ticks "$MPID"); m1=$(feed_metrics)
  local tput elapsed; tput=$(field "d['throughput']"); elapsed=$(field "d['elapsed_s']")
  echo "throughput: $(field "f\"{d['throughput']:.0f} orders/s in {d['elapsed_s']:.2f} s\"")"
  local drained=0 m2="$m1" exact="-" dropped=0
  if [ "$mode" != base ]; then
    t0=$(date +%s.%N)
    local specs=() before after
    if [ "$mode" = count ]; then
      for i in $(seq "$S"); do specs+=("$work/count.log:subscription{n=$i}"); done
    else
      for log in "${logs[@]}"; do specs+=("$log:caught up"); done
    fi
    # Caught up with a feed that published nothing meanwhile (else wait again).
    for _ in 1 2 3 4 5; do
      wait_feed_applied
      before=$(metric 'gridmatch_feed_messages_total{view="canonical"}')
      wait_caught_up "${specs[@]}"
      after=$(metric 'gridmatch_feed_messages_total{view="canonical"}')
      [ "$before" = "$after" ] && break
      echo "the feed published more while the subscribers caught up: waiting again"
    done
    t1=$(date +%s.%N); drained=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
    m2=$(feed_metrics)
    for p in "${rec_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${rec_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    dropped=$(cat "${logs[@]}" | grep -c "too slow" || true)
  fi
  local c2; c2=$(cpu_ticks "$MPID")
  stop_all
  grep "feed totals" "$work/manager.log" | tail -1 | sed 's/.*feed totals/manager: feed totals/' || true
  if [ "$mode" != base ]; then
    # The reference: the journal's commands through the sequential engine.
    $B/manager journal export --csv --data-dir "$work/data" --out-dir "$work/export" >/dev/null
    $B/user-sim replay --local --securities "$work/data/securities.csv" --orders "$work/export/orders.csv" \
      --trades-out /dev/null --totals-out /dev/null --rejects-out /dev/null --books-out "$work/ref-books.csv" >/dev/null
    local equal=0
    for b in "${books[@]}"; do cmp -s "$b" "$work/ref-books.csv" && equal=$((equal + 1)); done
    exact="$equal/${#books[@]}"
    echo "final books equal to the sequential engine's: $exact subscribers ($(grep -c . "$work/ref-books.csv") rows each)"
    if [ "$equal" != "${#books[@]}" ]; then
      echo "  distinct books among the subscribers: $(cat "${books[@]}" 2>/dev/null | md5sum >/dev/null; md5sum "${books[@]}" 2>/dev/null | cut -d' ' -f1 | sort -u | wc -l); first difference:"
      diff "$work/ref-books.csv" "${books[0]}" | head -4 | sed 's/^/    /'
      tail -1 "${logs[0]}" | sed 's/^/  subscriber: /'
    fi
    rm -rf "$work/export"
  fi
  rm -rf "$recdir"
  echo "$mode $tput $elapsed $c0 $c1 $c2 $TCK $m0 $m1 $m2 $drained $exact $dropped" >>"$work/results"
}

for mode in $MODES; do run "$mode"; done
python3 - "$work/results" "$BIG" "$S" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    mode = f[0]
    tput, elapsed = float(f[1]), float(f[2])
    c0, c1, c2, tck = (float(x) for x in f[3:7])
    m0, m1, m2 = ([int(x) for x in f[7 + 4 * k: 11 + 4 * k]] for k in range(3))
    drained, exact, dropped = f[19], f[20], f[21]
    rows[mode] = dict(tput=tput, elapsed=elapsed, cpu=(c1 - c0) / tck, cpu_all=(c2 - c0) / tck,
                      m0=m0, m1=m1, m2=m2, drained=drained, exact=exact, dropped=dropped)
big, s = int(sys.argv[2]), int(sys.argv[3])
base = rows.get("base")
print(f"\n{'run':6} {'orders/s':>10} {'ratio':>6} {'mgr CPU s':>9} {'us/order':>8} {'ratio':>6} "
      f"{'canon/s':>9} {'L3 msgs/s':>10} {'sent/s':>10} {'MB/s':>6} {'drain s':>7} {'exact':>6} {'dropped':>7}")
for mode in ("base", "count", "files"):
    r = rows.get(mode)
    if not r:
        continue
    us = r["cpu"] / big * 1e6
    d = [b - a for a, b in zip(r["m0"], r["m1"])]
    e = r["elapsed"]
    ratio = f"{r['tput'] / base['tput']:.3f}" if base else "-"
    cratio = f"{us / (base['cpu'] / big * 1e6):.2f}" if base and base["cpu"] > 0 else "-"
    print(f"{mode:6} {r['tput']:10.0f} {ratio:>6} {r['cpu']:9.2f} {us:8.2f} {cratio:>6} "
          f"{d[0] / e:9.0f} {d[1] / e:10.0f} {d[2] / e:10.0f} {d[3] / e / 1e6:6.1f} {r['drained']:>7} "
          f"{r['exact']:>6} {r['dropped']:>7}")
    if mode != "base":
        t = [b - a for a, b in zip(r["m0"], r["m2"])]
        print(f"       after draining: {t[0]:,} canonical messages, {t[1]:,} produced for the L3 views, "
              f"{t[2]:,} sent ({t[3] / 1e6:,.1f} MB); manager CPU including the drain {r['cpu_all']:.2f} s")
print("ratio: throughput over the base run's; us/order: the manager's CPU (user+system) per order "
      "during the load; msgs/s over the load's elapsed time.")
EOF
