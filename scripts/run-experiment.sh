#!/usr/bin/env bash
# The scaling experiment in one command: build the release binaries, then hand over to the Rust
# `experiment` driver (scripts/src/main.rs).
#
#   scripts/run-experiment.sh                  # = run --quick: 180 runs into results/runs/<UTC time>/
#   scripts/run-experiment.sh --publish        # the same, then merged into results/ + README table
#   scripts/run-experiment.sh run --orders 100000,1000000 --repeats 3
#   scripts/run-experiment.sh publish results/runs/<UTC time>   # publish an earlier run
#   scripts/run-experiment.sh plot --dir results/runs/<UTC time> # redraw its charts and tables
#   sudo scripts/run-experiment.sh run --netem-delay-ms 0.2 --work-us 20   # LAN emulation
#   scripts/run-experiment.sh run --help       # every flag
#
# Time on the reference machine (2-vCPU VM, AMD EPYC, crates already downloaded), measured from
# a fresh clone: 12 min 10 s = 11 min 17 s release build (fat LTO, about 6.5 CPU-minutes, run
# under nice while other builds shared the cores, load average 4 to 9) + 52 s of runs. An idle
# 2-core machine should need roughly 4 to 5 minutes (estimate). Once built: about 50 s.
# A plain run writes only its own run directory (git ignores results/runs/): no tracked file
# changes unless you pass --publish or call `publish`.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "" | --publish | --out | --out-dir | --results | --readme | --no-plot) set -- run --quick "$@" ;;
esac
echo "run-experiment: building the release binaries (minutes on a fresh clone, seconds after)" >&2
cargo build --release -p manager -p executor -p user-sim -p scripts
exec target/release/experiment "$@"
