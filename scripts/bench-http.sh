#!/usr/bin/env bash
# HTTP load benchmark: POST /api/v1/auth/telegram (1000 distinct users) and GET /api/v1/me,
# each with wrk at 32 connections for 15 s, against a release build of `atelier serve`.
# Expects DATABASE_URL and REDIS_URL (make bench-http sets them). Writes bench/results/http.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${BENCH_CONNECTIONS:-32}
DURATION=${BENCH_DURATION:-15s}
PORT=${BENCH_PORT:-18080}
BOT_TOKEN=1000000001:atelier-development-bot-token

if ! command -v wrk >/dev/null; then
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
  else
    echo "wrk is missing: sudo apt-get install -y wrk" >&2
    exit 1
  fi
fi

cargo build --release --quiet --bin atelier
bin="${CARGO_TARGET_DIR:-target}/release/atelier"
db_url="${DATABASE_URL%/*}/atelier_bench"
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS atelier_bench WITH (FORCE)" -c "CREATE DATABASE atelier_bench" >/dev/null

export ENV_FILE= APP_ENV=development HOST=127.0.0.1 PORT LOG_FORMAT=text RUST_LOG=warn
# The abuse limits stay on (their Redis round trips are part of what is measured) but high
# enough that one load generator on one address never reaches them.
export RATE_LIMIT_LOGIN_PER_IP=1000000000/1m RATE_LIMIT_UPLOADS_PER_USER=1000000000/1m
export DATABASE_URL=$db_url TELEGRAM_BOT_TOKEN=$BOT_TOKEN REDIS_KEY_PREFIX="bench:"
"$bin" migrate
"$bin" serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

work=$(mktemp -d)
# 1000 distinct users, signed now: logins spread over rows as real traffic does.
python3 - "$BOT_TOKEN" "$work/login.lua" <<'PY'
import hashlib, hmac, json, sys, time, urllib.parse
token, out = sys.argv[1], sys.argv[2]
secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
bodies = []
for uid in range(1, 1001):
    pairs = {"auth_date": str(int(time.time())),
             "user": json.dumps({"id": 900000 + uid, "first_name": "Bench", "username": f"bench{uid}"}, separators=(",", ":"))}
    dcs = "\n".join(f"{k}={v}" for k, v in sorted(pairs.items()))
    pairs["hash"] = hmac.new(secret, dcs.encode(), hashlib.sha256).hexdigest()
    bodies.append(json.dumps({"init_data": urllib.parse.urlencode(pairs)}))
with open(out, "w") as f:
    f.write("local bodies = {\n" + ",\n".join("[==[" + b + "]==]" for b in bodies) + "\n}\n")
    f.write('local i = 0\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    f.write("request = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[i])\nend\n")
PY

init=$("$bin" init-data sign --bot-token "$BOT_TOKEN" --user-id 900001 --first-name Bench)
token=$(curl -fs -X POST "http://127.0.0.1:$PORT/api/v1/auth/telegram" -H "Authorization: tma $init" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

run() { # run NAME ARGS... -> prints "req/s p50 p99"
  local name=$1
  shift
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" >"$work/$name.txt"
  python3 - "$work/$name.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
def pct(p):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{float(rps):.0f} {pct(50):.2f} {pct(99):.2f} {errors.group(1) if errors else 0}")
PY
}

read -r login_rps login_p50 login_p99 login_err < <(run login -s "$work/login.lua" "http://127.0.0.1:$PORT/api/v1/auth/telegram")
read -r me_rps me_p50 me_p99 me_err < <(run me -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/api/v1/me")
[[ -n ${BENCH_DRY:-} ]] && { echo "login $login_rps $login_p50 $login_p99 / me $me_rps $me_p50 $me_p99"; exit 0; }

mkdir -p bench/results
cat >bench/results/http.md <<MD
### HTTP: login and /me (\`make bench-http\`)

Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo none).
Load: wrk, 2 threads, $CONNECTIONS connections, $DURATION per endpoint, on the same machine as the server, PostgreSQL and Redis.

| endpoint | req/s | p50 ms | p99 ms | non-2xx | goal |
|---|---:|---:|---:|---:|---|
| POST /api/v1/auth/telegram (1000 users) | $login_rps | $login_p50 | $login_p99 | $login_err | ≥ 3 000 req/s, p99 < 20 ms |
| GET /api/v1/me | $me_rps | $me_p50 | $me_p99 | $me_err | ≥ 8 000 req/s, p99 < 20 ms |
MD
cat bench/results/http.md
