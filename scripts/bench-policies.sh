#!/usr/bin/env bash
# Scheduling-policy benchmark over several workload seeds: for each seed, generate the
# standard week (`marble-sim generate --seed N --hosts H`) and run `cycle` and `demand` on it
# (`marble-sim compare`), then print one line per seed with the three issue-6 targets.
# Usage: scripts/bench-policies.sh [HOSTS (default 8)] [SEEDS (default "1 2 3 4 5 6")]
# Figures go to docs/benchmarks.md ("Scheduling policies").
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-8}
seeds=${2:-1 2 3 4 5 6}
cargo build --release --locked -q -p marbled --bin marble-sim
sim=target/release/marble-sim
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '%-5s %-28s %-28s %-22s %s\n' seed "ROOT wait p95 cycle/demand" "SPI grant p95 cycle/demand" "ROOT boots per job" "unused ROOT boots"
for seed in $seeds; do
  "$sim" generate --days 7 --seed "$seed" --hosts "$hosts" > "$dir/trace.toml"
  "$sim" compare "$dir/trace.toml" > "$dir/out.txt"
  # Columns of the table: label, cycle, demand, demand/cycle (durations are several words).
  p95=$(grep '^ROOT job wait p95' "$dir/out.txt" | sed 's/^ROOT job wait p95 *//; s/   */|/g')
  spi=$(grep '^SPI grant latency p95' "$dir/out.txt" | sed 's/^SPI grant latency p95 *//; s/   */|/g')
  boots=$(grep '^ROOT boots per ROOT job' "$dir/out.txt" | awk '{print $(NF-1)}')
  unused=$(grep '^ROOT boots that served no job' "$dir/out.txt" | awk '{print $(NF-1)}')
  printf '%-5s %-28s %-28s %-22s %s\n' "$seed" \
    "$(cut -d'|' -f1-3 <<<"$p95" | sed 's/|/ \/ /; s/|/ = /')" \
    "$(cut -d'|' -f1-3 <<<"$spi" | sed 's/|/ \/ /; s/|/ = /')" \
    "$boots" "$unused"
done
