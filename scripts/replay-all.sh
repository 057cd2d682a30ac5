#!/usr/bin/env bash
# Issue 17's replay-all: every committed trace of docs/traces plus fresh seeds of every load
# shape, under cycle and demand with the shipped defaults, against the ideal reference; one
# table with a mark per target (docs/SIMULATOR.md "Replay all"; figures in docs/benchmarks.md
# "Issue 17: replay-all"). Arguments go to `marble-sim replay-all` (e.g. --seeds 5, --strict).
# Builds the simulator without its `import` command (the replay needs none of it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p marble-sim --no-default-features --bin marble-sim
exec target/release/marble-sim replay-all "$@"
