#!/usr/bin/env bash
# Chat turn benchmark: our side of POST /api/v1/editing/chat with an instant fake OpenRouter.
# A release `atelier serve` (OpenRouter pointed at the fake), BENCH_CHAT_USERS (default 200) users
# each with a photo and a session, then BENCH_CHAT_RATE (default 200) turns per second, open loop,
# for BENCH_CHAT_SECONDS (default 30); latency from each turn's scheduled send time to the end of
# its reply. Every turn is a real one: the charge (free allowance) and the pending turn in one
# transaction, the call, the history and accounting in another, the chat.reply publish.
# The client and the fake are examples/chat_bench.rs, on the same machine as the server,
# PostgreSQL and Redis. Expects DATABASE_URL and REDIS_URL (make bench-chat sets them).
# Writes bench/results/chat.md.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${BENCH_CHAT_USERS:-200}
RATE=${BENCH_CHAT_RATE:-200}
SECONDS_=${BENCH_CHAT_SECONDS:-30}
PORT=${BENCH_PORT:-18082}
FAKE_PORT=${BENCH_FAKE_PORT:-18092}
FIRST_TID=900001

cargo build --release --quiet --bin atelier --example chat_bench
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/atelier
client=$target/release/examples/chat_bench
db_url="${DATABASE_URL%/*}/atelier_bench_chat"
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS atelier_bench_chat WITH (FORCE)" -c "CREATE DATABASE atelier_bench_chat" >/dev/null
work=$(mktemp -d)

export ENV_FILE= APP_ENV=development HOST=127.0.0.1 PORT LOG_FORMAT=text RUST_LOG=warn
export DATABASE_URL=$db_url REDIS_KEY_PREFIX="bench-chat:" STORAGE_DIR=$work/media
export OPENROUTER_API_KEY=sk-or-v1-bench OPENROUTER_BASE_URL="http://127.0.0.1:$FAKE_PORT/api/v1"
# An OpenRouter key is a real credential: beside it the development secrets are refused.
export JWT_SECRET=bench-jwt-secret-bench-jwt-secret-bench MEDIA_URL_SECRET=bench-media-secret-bench-media-secret
# Every turn is paid with a free action, so no credits need granting (the ledger still records each).
export FREE_ACTIONS_PER_MONTH=100000000
# The abuse limits stay on (their Redis round trip is part of what is measured), high enough that
# the benchmark's users never reach them.
export RATE_LIMIT_CHAT_PER_USER=1000000000/1m RATE_LIMIT_UPLOADS_PER_USER=1000000000/1m
"$bin" migrate
psql "$db_url" -qc "INSERT INTO users (telegram_id, first_name, referral_code)
  SELECT $((FIRST_TID - 1)) + g, 'Bench', 'chatbench' || g FROM generate_series(1, $USERS) g" >/dev/null
"$bin" serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

load=$(cut -d' ' -f1-3 /proc/loadavg)
"$client" --url "http://127.0.0.1:$PORT" --fake-port "$FAKE_PORT" --users "$USERS" \
  --first-telegram-id "$FIRST_TID" --rate "$RATE" --seconds "$SECONDS_" --server-pid "$server" | tee "$work/out.txt"
IFS='|' read -r _ total ok errors achieved p50 p90 p99 p999 max fake_p99_us cpu_ms users \
  s50 s90 s99 s999 lag99 < <(grep '^CHAT_BENCH|' "$work/out.txt")
verdict=$(awk -v p="$s99" 'BEGIN { print (p < 5 ? "met" : "missed") }')

mkdir -p bench/results
cat >bench/results/chat.md <<MD
### Chat turn, our side, with an instant fake OpenRouter (\`make bench-chat\`)

Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo none); load average before the run: $load.
Command: \`make bench-chat\` (scripts/bench-chat.sh: BENCH_CHAT_USERS=$users BENCH_CHAT_RATE=$RATE BENCH_CHAT_SECONDS=$SECONDS_).
Setup: a release \`atelier serve\` (2 HTTP workers), PostgreSQL, Redis, and the client with the fake OpenRouter
(examples/chat_bench.rs) all on this machine. $users users, each with a 640×480 photo and one session that grows by a
turn per $((users / RATE)) s or so (history window read, photo signed and sent, history appended); open-loop load.
Latency is taken from the moment the client sends a turn to the end of the reply, and also from the turn's scheduled
time, which adds the client's own lateness (tokio's timer has a millisecond's grain; p99 of that lateness: $lag99 ms).
The fake answers at once (p99 $fake_p99_us µs inside it).

| figure | measured | goal |
|---|---:|---|
| turns answered / sent (errors) | $ok / $total ($errors) | — |
| throughput | $achieved turns/s | 200 turns/s |
| latency from the send p50 / p90 / p99 / p99.9 | $s50 / $s90 / $s99 / $s999 ms | p99 < 5 ms: $verdict |
| latency from the schedule p50 / p90 / p99 / p99.9 / max | $p50 / $p90 / $p99 / $p999 / $max ms | — |
| server CPU per turn (user + system) | $cpu_ms ms | — |
MD
cat bench/results/chat.md
