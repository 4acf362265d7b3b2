#!/usr/bin/env bash
# Upload benchmark: 8 concurrent clients post a 4000×3000 JPEG to /api/v1/editing/upload for
# 20 s against a release build; reports req/s, latency and the server's peak memory (VmHWM).
# Before that, hostile chunked uploads (endless part header, endless file) and the RSS they cost.
# Expects DATABASE_URL and REDIS_URL (make bench-upload sets them). Writes bench/results/upload.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${BENCH_CLIENTS:-8}
DURATION=${BENCH_DURATION_SECS:-20}
PORT=${BENCH_PORT:-18081}
BOT_TOKEN=1000000001:atelier-development-bot-token
target=${CARGO_TARGET_DIR:-target}

cargo build --release --quiet --bin atelier --example gen_photo
bin=$target/release/atelier
work=$(mktemp -d)
"$target/release/examples/gen_photo" "$work/photo.jpg" 4000 3000 >/dev/null

db_url="${DATABASE_URL%/*}/atelier_bench_upload"
psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS atelier_bench_upload WITH (FORCE)" -c "CREATE DATABASE atelier_bench_upload" >/dev/null
export ENV_FILE= APP_ENV=development HOST=127.0.0.1 PORT LOG_FORMAT=text RUST_LOG=warn
# The abuse limits stay on (their Redis round trips are part of what is measured) but high
# enough that one load generator on one address never reaches them.
export RATE_LIMIT_LOGIN_PER_IP=1000000000/1m RATE_LIMIT_UPLOADS_PER_USER=1000000000/1m
export DATABASE_URL=$db_url TELEGRAM_BOT_TOKEN=$BOT_TOKEN REDIS_KEY_PREFIX="bench:" STORAGE_DIR="$work/media"
"$bin" migrate
"$bin" serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
init=$("$bin" init-data sign --bot-token "$BOT_TOKEN" --user-id 900001 --first-name Bench)
token=$(curl -fs -X POST "http://127.0.0.1:$PORT/api/v1/auth/telegram" -H "Authorization: tma $init" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")

# First, before any photo is decoded (so that idle is idle):
# Hostile uploads: BENCH_HOSTILE_CLIENTS (8) concurrent chunked uploads of up to
# BENCH_HOSTILE_MIB (200) MiB each, half an endless part header, half an endless file; each
# client sends until the server answers or its budget is spent. The server's RSS is sampled
# every 20 ms: idle (before), peak (during) and after. Goal: peak within 64 MiB of idle.
HOSTILE_CLIENTS=${BENCH_HOSTILE_CLIENTS:-8}
HOSTILE_MIB=${BENCH_HOSTILE_MIB:-200}
python3 - "$PORT" "$token" "$server" "$HOSTILE_CLIENTS" "$HOSTILE_MIB" >"$work/hostile.txt" <<'PY'
import select, socket, sys, threading, time
port, token, pid, clients, mib = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
boundary = "atelierhostileboundary"
def rss():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
def chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"
def hostile(kind, out):
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.sendall((f"POST /api/v1/editing/upload HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    if kind == "header":
        start = f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; x=\"".encode()
    else:
        start = f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n\r\n".encode()
    s.sendall(chunk(start))
    filler, sent, budget = chunk(b"a" * 65536), 0, mib << 20
    status = "none"
    try:
        while sent < budget:
            if select.select([s], [], [], 0)[0]:
                break
            s.sendall(filler)
            sent += 65536
        s.settimeout(30)
        head = s.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        status = head.split(" ")[1] if " " in head else "closed"
    except OSError as e:
        status = type(e).__name__
    out.append((kind, status, sent))
    s.close()
idle = rss()
results, peak = [], [idle]
threads = [threading.Thread(target=hostile, args=("header" if i % 2 == 0 else "file", results)) for i in range(clients)]
for t in threads: t.start()
while any(t.is_alive() for t in threads):
    peak.append(rss()); time.sleep(0.02)
time.sleep(0.5)
after = rss()
outcomes = ", ".join(sorted({f"{k}: {st}" for k, st, _ in results}))
most = max(sent for _, _, sent in results) >> 20
print(f"{idle} {max(peak)} {after} {most}")
print(outcomes)
PY
{ read -r h_idle h_peak h_after h_sent; read -r h_outcomes; } <"$work/hostile.txt"


python3 - "$PORT" "$token" "$work/photo.jpg" "$CLIENTS" "$DURATION" >"$work/result.txt" <<'PY'
import http.client, sys, threading, time
port, token, path, clients, duration = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
photo = open(path, "rb").read()
boundary = "atelierbenchboundary"
body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
lat, errors, lock = [], [0], threading.Lock()
deadline = time.monotonic() + duration
def client():
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
    while time.monotonic() < deadline:
        t = time.monotonic()
        conn.request("POST", "/api/v1/editing/upload", body=body, headers=headers)
        r = conn.getresponse(); r.read()
        with lock:
            (lat.append(time.monotonic() - t) if r.status == 201 else errors.__setitem__(0, errors[0] + 1))
threads = [threading.Thread(target=client) for _ in range(clients)]
start = time.monotonic()
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.monotonic() - start
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(f"{len(lat) / elapsed:.1f} {pct(0.5):.0f} {pct(0.99):.0f} {errors[0]} {len(lat)} {len(photo)}")
PY
read -r rps p50 p99 errors count size <"$work/result.txt"
peak=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")

mkdir -p bench/results
cat >bench/results/upload.md <<MD
### Upload: validate + normalise + store (\`make bench-upload\`)

Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo none).
Load: $CLIENTS concurrent clients, ${DURATION} s, each posting a 4000×3000 JPEG ($((size / 1024)) KiB) to POST /api/v1/editing/upload; IMAGE_WORKERS = default (cores).

| figure | measured | goal |
|---|---:|---|
| uploads/s (201s) | $rps ($count in ${DURATION} s, $errors errors) | — |
| latency p50 / p99 | ${p50} ms / ${p99} ms | — |
| server CPU time per photo | $(python3 -c "print(round($(nproc) * 1000 / $rps))" 2>/dev/null || echo ?) ms upper bound (cores ÷ rate) | < 150 ms per photo per core |
| server peak RSS (VmHWM) | $((peak / 1024)) MiB (idle $((rss_idle / 1024)) MiB) | < 200 MiB with 8 concurrent uploads |
| $HOSTILE_CLIENTS hostile chunked uploads of up to $HOSTILE_MIB MiB (endless part header / endless file), at once, before the load above | RSS idle $((h_idle / 1024)) MiB → peak $((h_peak / 1024)) MiB (+$(((h_peak - h_idle) / 1024)) MiB), $((h_after / 1024)) MiB after; at most $h_sent MiB sent by one client; answers: $h_outcomes | peak within 64 MiB of idle |
MD
cat bench/results/upload.md
