#!/usr/bin/env bash
# Runs one criterion benchmark (benches/NAME.rs) and writes its figures to bench/results/NAME.md.
# Usage: scripts/bench-criterion.sh NAME "Title"
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1
title=${2:-$1}
out=$(cargo bench --bench "$name" 2>/dev/null | tee /dev/stderr)
mkdir -p bench/results
{
  echo "### $title (\`cargo bench --bench $name\`, criterion)"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo none)."
  echo
  echo "| benchmark | time per iteration (criterion: low / estimate / high) |"
  echo "|---|---|"
  # criterion prints "name  time: [a b c]" on one line, or the name alone on the line before.
  echo "$out" | awk '/time:/ { line=$0; sub(/^[ \t]*/, "", line); split(line, parts, /[ \t]*time:[ \t]*/);
                              name = (parts[1] != "") ? parts[1] : prev; print "| " name " | " parts[2] " |" }
                    !/time:/ && NF > 0 && $0 !~ /^[ \t]/ { prev=$0 }'
} >"bench/results/$name.md"
cat "bench/results/$name.md"
