#!/usr/bin/env bash
# Generation pipeline, end to end with the sandbox provider: the delay from a generate request to
# its generation.queued event on a WebSocket (50 requests), and whole generations per second drained
# by 4 workers (job runners) with 4 job slots each (PIPELINE_BENCH_JOBS, default 400, plus the 50). Runs the ignored
# test `generations::bench_pipeline` in release mode. Expects DATABASE_URL and REDIS_URL (make
# bench-pipeline sets them). Writes bench/results/pipeline.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --quiet --test api --no-run 2>/dev/null
load=$(cut -d' ' -f1-3 /proc/loadavg)
line=$(cargo test --release --quiet --test api generations::bench_pipeline -- --ignored --exact --nocapture 2>/dev/null |
  tee /dev/stderr | grep '^PIPELINE_BENCH|')
IFS='|' read -r _ jobs drain rate p50 p99 max workers cpu_app cpu_pg <<<"$line"
mkdir -p bench/results
cat >bench/results/pipeline.md <<MD
### Generation pipeline with the sandbox provider (\`make bench-pipeline\`)

Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo none); server, worker, PostgreSQL and Redis on the same machine; load average before: $load.
Each generation: the charge and job in the request's transaction, then the job's steps (compose a 400×400 edit, store, poll, fetch, check, re-encode, store, mark succeeded; the first poll in the same step when the provider is instant) with SANDBOX_GENERATION_MS=0.

| figure | measured | goal |
|---|---:|---|
| generations completed per second, $workers workers × 4 slots | $rate ($jobs in ${drain} s) | ≥ 200 jobs/s |
| generate request → \`generation.queued\` on the socket, p50 / p99 / max | ${p50} / ${p99} / ${max} ms | — |
| CPU per generation while draining: worker process / PostgreSQL | ${cpu_app} / ${cpu_pg} ms | — |
MD
cat bench/results/pipeline.md
