#!/usr/bin/env bash
# Criterion benchmark of initData validation and signing. Writes bench/results/initdata.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(cargo bench --bench initdata 2>/dev/null | tee /dev/stderr)
mkdir -p bench/results
{
  echo "### initData validation (\`make bench-initdata\`, criterion)"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo none)."
  echo
  echo "| benchmark | time per call (criterion low / median / high) |"
  echo "|---|---|"
  echo "$out" | awk '/time:/ { name=prev; sub(/^[ \t]+/, "", name); line=$0; sub(/.*time:[ \t]*/, "", line); print "| " name " | " line " |" } { if ($0 !~ /^[ \t]/ && $0 != "") prev=$1 }'
} >bench/results/initdata.md
cat bench/results/initdata.md
