#!/usr/bin/env bash
# Thin driver: build the release binaries, then hand over to the Rust `experiment` binary.
# Usage: scripts/run-experiment.sh [run|plot|fit] [flags]   (no args = `run --quick`)
#   scripts/run-experiment.sh                      # ~1 minute demo grid -> results/
#   scripts/run-experiment.sh run                  # full grid: 5 sizes x 6 setups x 5 repeats
#   scripts/run-experiment.sh run --orders 100000,1000000 --repeats 3
#   sudo scripts/run-experiment.sh run --netem-delay-ms 0.2 --work-us 20   # LAN emulation
#   scripts/run-experiment.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --quiet
if [ "$#" -eq 0 ]; then
  set -- run --quick
fi
exec target/release/experiment "$@"
