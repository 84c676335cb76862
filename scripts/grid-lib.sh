# Shared plumbing of the bench scripts (sourced, not run): release build, a scratch dir, process
# cleanup on exit or Ctrl-C, and starting a manager / executors with readiness observed from
# the ready file and the executors' "executor ready" log line (never a fixed sleep).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# BIN_DIR=target/debug: use binaries already built (no release build; figures then say so).
# NO_BUILD=1: use target/release as it is.
# MANAGER_FLAGS="...": extra flags for every manager started (e.g. --stage-threads 2).
if [ -n "${BIN_DIR:-}" ]; then
  B=$BIN_DIR
else
  [ -n "${NO_BUILD:-}" ] || cargo build --release -p manager -p executor -p user-sim --quiet
  B=target/release
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM

# start_manager [PORT] [extra manager flags...]: sets ADDR and MPID; logs to $work/manager.log.
start_manager() {
  local port=${1:-0}; shift || true
  rm -f "$work/addr"
  NO_COLOR=1 RUST_LOG=${MANAGER_LOG:-warn} $B/manager --port "$port" --bind 127.0.0.1 --data-dir "$work/data" \
      --ready-file "$work/addr" ${MANAGER_FLAGS:-} "$@" 2>>"$work/manager.log" & pids+=($!)
  MPID=$!
  for _ in $(seq 600); do [ -f "$work/addr" ] && break; sleep 0.05; done
  ADDR=$(cat "$work/addr")
}

# start_executor NAME [extra executor flags...]: sets EPID; logs to $work/NAME.log.
start_executor() {
  local name=$1; shift
  NO_COLOR=1 RUST_LOG=info $B/executor --manager "$ADDR" --ca "$work/data/cert.pem" --token "$(cat "$work/data/token")" \
      --name "$name" "$@" 2>"$work/$name.log" & pids+=($!)
  EPID=$!
}

# wait_ready NAME...: until each executor owns its shard.
wait_ready() {
  for name in "$@"; do
    for _ in $(seq 600); do grep -q "executor ready" "$work/$name.log" 2>/dev/null && break; sleep 0.05; done
  done
}

# stop_all: SIGTERM every started process and wait for it.
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

# load ARGS...: user-sim with the grid's address and credentials; JSON report in $work/r.json.
load() {
  $B/user-sim --manager "$ADDR" --ca "$work/data/cert.pem" --credentials "$work/data/brokers.csv" \
      --quiet --json "$work/r.json" "$@"
}
