#!/usr/bin/env bash
# Scheduling-policy benchmark over several workload seeds: for each seed, generate the
# standard week (`marble-sim generate --seed N --hosts H`) and run `cycle` and `demand` on it
# (`marble-sim compare`), then print one line per seed with the three issue-6 targets and
# the ROOT p95 budget (jobs over the bar for demand / the ideal reference / allowed; cold
# starts / the cold starts the slack covers in expectation).
# Usage: scripts/bench-policies.sh [HOSTS (default 8)] [SEEDS (default "1 2 3 4 5 6")]
# Figures go to docs/benchmarks.md ("Scheduling policies").
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-8}
seeds=${2:-1 2 3 4 5 6}
cargo build --release --locked -q -p marble-sim --bin marble-sim
sim=target/release/marble-sim
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '%-5s %-28s %-28s %-20s %-8s %-18s %s\n' seed "ROOT wait p95 cycle/demand" "SPI grant p95 cycle/demand" "ROOT boots per job" "unused" "over bar d/i/max" "cold/limit"
for seed in $seeds; do
  "$sim" generate --days 7 --seed "$seed" --hosts "$hosts" > "$dir/trace.toml"
  "$sim" compare "$dir/trace.toml" > "$dir/out.txt"
  # Columns of the table: label, cycle, demand, demand/cycle (durations are several words).
  p95=$(grep '^ROOT job wait p95' "$dir/out.txt" | sed 's/^ROOT job wait p95 *//; s/   */|/g')
  spi=$(grep '^SPI grant latency p95' "$dir/out.txt" | sed 's/^SPI grant latency p95 *//; s/   */|/g')
  boots=$(grep '^ROOT boots per ROOT job' "$dir/out.txt" | awk '{print $(NF-1)}')
  unused=$(grep '^ROOT boots that served no job' "$dir/out.txt" | awk '{print $(NF-1)}')
  allowed=$(sed -n 's/^ROOT p95 budget: .* at most \([0-9]*\) may wait longer$/\1/p' "$dir/out.txt")
  over=$(sed -n 's/^  waiting longer: demand \([0-9]*\), ideal reference \([0-9]*\) .*/\1\/\2/p' "$dir/out.txt")
  cold=$(sed -n 's/^  demand started \([0-9]*\) of .*/\1/p' "$dir/out.txt")
  limit=$(sed -n 's/.* at ~\([0-9]*\) cold starts .*/\1/p' "$dir/out.txt")
  printf '%-5s %-28s %-28s %-20s %-8s %-18s %s\n' "$seed" \
    "$(cut -d'|' -f1-3 <<<"$p95" | sed 's/|/ \/ /; s/|/ = /')" \
    "$(cut -d'|' -f1-3 <<<"$spi" | sed 's/|/ \/ /; s/|/ = /')" \
    "$boots" "$unused" "$over/$allowed" "$cold/${limit:--}"
done
