#!/usr/bin/env bash
# WebSocket fan-out benchmark: BENCH_WS_SOCKETS (default 5000) concurrent authenticated sockets,
# spread over BENCH_WS_USERS (default 1000) accounts, against a release build of `atelier serve`;
# events are published through Redis as the workers publish them (`realtime::publish`), each
# stamped with its send time. Two phases: a steady one (BENCH_WS_EVENTS events at BENCH_WS_RATE
# per second, each to one user's sockets) and a burst (one event to every user at once).
# Reports publish → receipt delay p50/p99/max and the server's VmRSS/VmHWM.
# The client is examples/ws_bench.rs, on the same machine as the server, PostgreSQL and Redis.
# Expects DATABASE_URL and REDIS_URL (make bench-ws sets them). Writes bench/results/ws.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SOCKETS=${BENCH_WS_SOCKETS:-5000}
USERS=${BENCH_WS_USERS:-1000}
EVENTS=${BENCH_WS_EVENTS:-5000}
RATE=${BENCH_WS_RATE:-500}
PORT=${BENCH_PORT:-18081}
FIRST_TID=800001

# Each socket is a file descriptor in the server and one in the client.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < SOCKETS + 1024)); then
  echo "open file limit is $(ulimit -n); $((SOCKETS + 1024)) are needed (raise the hard limit)" >&2
  exit 1
fi

cargo build --release --quiet --bin atelier --example ws_bench
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/atelier
client=$target/release/examples/ws_bench
db_url="${DATABASE_URL%/*}/atelier_bench_ws"
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS atelier_bench_ws WITH (FORCE)" -c "CREATE DATABASE atelier_bench_ws" >/dev/null
work=$(mktemp -d)

export ENV_FILE= APP_ENV=development HOST=127.0.0.1 PORT LOG_FORMAT=text RUST_LOG=warn
# The abuse limits stay on (their Redis round trips are part of what is measured) but high
# enough that one load generator on one address never reaches them.
export RATE_LIMIT_LOGIN_PER_IP=1000000000/1m RATE_LIMIT_UPLOADS_PER_USER=1000000000/1m
export DATABASE_URL=$db_url REDIS_KEY_PREFIX="bench-ws:" STORAGE_DIR=$work/media
# The sockets are spread evenly over the users, so the per-user cap must allow that many.
export WS_MAX_CONNECTIONS_PER_USER=$(((SOCKETS + USERS - 1) / USERS))
"$bin" migrate
psql "$db_url" -qc "INSERT INTO users (telegram_id, first_name, referral_code)
  SELECT $((FIRST_TID - 1)) + g, 'Bench', 'wsbench' || g FROM generate_series(1, $USERS) g" >/dev/null
"$bin" serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

load=$(cut -d' ' -f1-3 /proc/loadavg)
"$client" --url "ws://127.0.0.1:$PORT/api/v1/ws" --sockets "$SOCKETS" --users "$USERS" \
  --first-telegram-id "$FIRST_TID" --events "$EVENTS" --rate "$RATE" --server-pid "$server" | tee "$work/out.txt"
IFS='|' read -r _ open connect_s users events rate steady_got steady_want s50 s99 smax \
  bursts burst_pub burst_got burst_want b50 b99 bmax rss_idle rss_open rss_end hwm errors lost \
  < <(grep '^WS_BENCH|' "$work/out.txt")
per_socket_kib=$(awk -v a="$rss_idle" -v b="$rss_open" -v n="$open" 'BEGIN { printf "%.1f", (b - a) * 1024 / n }')
verdict() { awk -v p="$1" 'BEGIN { print (p < 50 ? "met" : "missed") }'; }

mkdir -p bench/results
cat >bench/results/ws.md <<MD
### WebSocket fan-out (\`make bench-ws\`)

Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo none); load average before the run: $load.
Command: \`make bench-ws\` (scripts/bench-ws.sh: BENCH_WS_SOCKETS=$SOCKETS BENCH_WS_USERS=$USERS BENCH_WS_EVENTS=$EVENTS BENCH_WS_RATE=$RATE).
Setup: a release \`atelier serve\` (2 HTTP workers), PostgreSQL, Redis and the client (examples/ws_bench.rs, tokio-tungstenite)
all on this machine. $open sockets open ($connect_s s to open them all, each authenticated with a JWT and sent its snapshot),
$users users with $WS_MAX_CONNECTIONS_PER_USER sockets each. Events go through Redis pub/sub exactly as the workers send them;
the delay is from just before \`PUBLISH\` to the client parsing the frame (same clock).

| phase | events | deliveries (got / expected) | p50 ms | p99 ms | max ms | goal |
|---|---:|---:|---:|---:|---:|---|
| steady, $rate events/s | $events | $steady_got / $steady_want | $s50 | $s99 | $smax | p99 < 50 ms: $(verdict "$s99") |
| burst, one event per user at once (published in $burst_pub s) | $bursts | $burst_got / $burst_want | $b50 | $b99 | $bmax | p99 < 50 ms: $(verdict "$b99") |

Server memory (/proc/PID/status): VmRSS $rss_idle MiB before the sockets, $rss_open MiB with $open sockets open
(≈ $per_socket_kib KiB per socket), $rss_end MiB at the end; peak VmHWM $hwm MiB.
Errors (failed opens + failed publishes): $errors; sockets lost during the run: $lost.
MD
cat bench/results/ws.md
