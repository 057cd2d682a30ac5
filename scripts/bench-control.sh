#!/usr/bin/env bash
# Control-plane benchmark: request-slot decision latency (200 concurrent clients) and the
# idle daemon's CPU and RSS over a minute, against the release daemon on a simulated host.
# Figures go to docs/benchmarks.md ("Control plane"). Linux only (reads /proc).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p marble-tests --bins
exec target/release/bench-control "$@"
