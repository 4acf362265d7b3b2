#!/usr/bin/env bash
# Job queue throughput: N no-op jobs (QUEUE_BENCH_JOBS, default 2000) enqueued in one transaction,
# then drained by job runners against the real PostgreSQL, claim to complete; two setups with four
# job slots in all (one worker with 4 slots; four workers with 1 slot each, as four processes).
# Runs the ignored test `queue::bench_queue_throughput` in release mode. Expects DATABASE_URL and
# REDIS_URL (make bench-queue sets them). Writes bench/results/queue.md.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${QUEUE_BENCH_JOBS:-2000}
cargo test --release --quiet --test api --no-run 2>/dev/null
load=$(cut -d' ' -f1-3 /proc/loadavg)
out=$(QUEUE_BENCH_JOBS=$jobs cargo test --release --quiet --test api queue::bench_queue_throughput \
  -- --ignored --exact --nocapture 2>/dev/null | tee /dev/stderr | grep '^QUEUE_BENCH|')
mkdir -p bench/results
{
  echo "### Job queue throughput (\`make bench-queue\`: $jobs no-op jobs, claim → complete)"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo none); PostgreSQL $(psql "$DATABASE_URL" -Atc 'SHOW server_version' 2>/dev/null || echo '?') on the same machine; load average before the run: $load."
  echo
  echo "| setup | jobs | drain time (s) | jobs/s (claim → complete) | enqueue rate (jobs/s, one transaction) |"
  echo "|---|---|---|---|---|"
  echo "$out" | awk -F'|' '{ print "| " $2 " | " $3 " | " $4 " | " $5 " | " $6 " |" }'
  echo
  echo "The raw queue figure, with no-op handlers; the issue's goal (≥ 200 jobs/s) is for whole"
  echo "generations with the sandbox provider."
} >bench/results/queue.md
cat bench/results/queue.md
