#!/usr/bin/env bash
# Where the grid pays off: per-order work done on each executor's own CPU (executor
# --work-us U --work-mode sleep, which waits instead of burning this machine's shared cores),
# for 1..6 executors. Prints a Markdown table of median processing time and throughput.
# Usage: scripts/work-scaling.sh [WORK_US] [ORDERS] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-50}
ORDERS=${2:-40000}
REPEATS=${3:-3}
cargo build --release --workspace --quiet
B=target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
echo "| executors | work/order | orders | median time (s) | median orders/s | speed-up vs 1 |"
echo "|---:|---:|---:|---:|---:|---:|"
base=""
for n in 1 2 3 4 6; do
  times=()
  for r in $(seq "$REPEATS"); do
    rm -rf "$work/data" "$work/addr"; pids=()
    NO_COLOR=1 RUST_LOG=warn $B/manager --port 0 --bind 127.0.0.1 --data-dir "$work/data" --fsync never \
        --ready-file "$work/addr" 2>/dev/null & pids+=($!)
    for _ in $(seq 300); do [ -f "$work/addr" ] && break; sleep 0.05; done
    ADDR=$(cat "$work/addr")
    for i in $(seq "$n"); do
      NO_COLOR=1 RUST_LOG=info $B/executor --manager "$ADDR" --ca "$work/data/cert.pem" --token "$(cat "$work/data/token")" \
          --name "w$i" --work-us "$WORK" --work-mode sleep 2>"$work/w$i.log" & pids+=($!)
    done
    for i in $(seq "$n"); do for _ in $(seq 300); do grep -q "executor ready" "$work/w$i.log" && break; sleep 0.05; done; done
    $B/user-sim --manager "$ADDR" --ca "$work/data/cert.pem" --credentials "$work/data/brokers.csv" \
        --orders "$ORDERS" --max --seed "$r" --quiet --json "$work/r.json"
    times+=("$(python3 -c "import json; print(json.load(open('$work/r.json'))['elapsed_s'])")")
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  done
  med=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  [ -n "$base" ] || base=$med
  python3 -c "print(f'| $n | $WORK us | $ORDERS | {$med:.3f} | {$ORDERS/$med:,.0f} | {$base/$med:.2f}x |')"
done
