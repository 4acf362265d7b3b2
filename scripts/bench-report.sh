#!/usr/bin/env bash
# Writes bench/RESULTS.md: the machine, the date, and every benchmark's table from
# bench/results/*.md (each names its command, figures and goals), in the order `make bench` runs
# them. Run by `make bench` after the benchmarks; safe to rerun alone.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/RESULTS.md
order=(initdata media http upload queue pipeline ws chat)
{
  echo "# Atelier — benchmark report"
  echo
  echo "Written by \`make bench\` ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo none))."
  echo "Gathered on: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)."
  echo "Each section names the machine, date and commit it was measured on (a section older than this"
  echo "report was not re-run: run its make target), its command, and the goal each figure is held"
  echo "against. Server, worker, PostgreSQL, Redis and the load generator share one machine. No test"
  echo "asserts timings."
  echo
  for name in "${order[@]}"; do
    file=bench/results/$name.md
    if [[ -f $file ]]; then
      cat "$file"
      echo
    else
      echo "### $name: not measured (bench/results/$name.md is missing)"
      echo
    fi
  done
  # The hand-kept part: a summary of the figures and where the time goes.
  cat bench/narrative.md
} >"$out"
echo "wrote $out"
