#!/usr/bin/env bash
# End-to-end test of the demo page (`make e2e`): Playwright (e2e/, playwright-core from npm) drives
# Debian's Chromium, headless, through the whole flow against `atelier dev` (debug build) on a free
# port, with a scratch database, the sandbox providers and the sandbox payment page. Screenshots
# and the server's log go to target/e2e/.
#
# Installs what it needs: Chromium with apt-get (as root, when missing) and `npm ci` in e2e/.
# Where Chromium (or Node.js 20+) cannot be had, it says so and exits 0 without testing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=target/e2e
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

skip() {
  echo "e2e: SKIPPED: $*" >&2
  exit 0
}

apt_install() { # apt_install PACKAGE...: as root with apt-get only
  [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1 || return 1
  echo "e2e: installing $* with apt-get"
  apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends "$@" >/dev/null
}

if [[ -z ${E2E_WITH_SERVICES:-} ]]; then
  # Phase 1: the browser and the test driver, before anything is started.
  if [[ ! -x $CHROMIUM ]]; then
    apt_install chromium || true
    [[ -x $CHROMIUM ]] || skip "no Chromium at $CHROMIUM and it could not be installed (run as root with apt-get, or: sudo apt-get install -y chromium)"
  fi
  if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm || true
    command -v npm >/dev/null 2>&1 || skip "Node.js and npm are missing and could not be installed (sudo apt-get install -y nodejs npm)"
  fi
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  ((node_major >= 20)) || skip "Node.js $(node --version) is too old for playwright-core (needs 20 or newer)"
  echo "e2e: $("$CHROMIUM" --version 2>/dev/null | head -n 1), Node.js $(node --version)"
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
  cargo build --quiet --bin atelier --example gen_photo
  E2E_WITH_SERVICES=1 exec scripts/with-services.sh "$0"
fi

# Phase 2 (under scripts/with-services.sh: DATABASE_URL and REDIS_URL answer).
rm -rf "$out"
mkdir -p "$out/photos"
for photo in "person 900 1200" "item 800 800" "edit 1200 900"; do
  read -r name w h <<<"$photo"
  target/debug/examples/gen_photo "$out/photos/$name.jpg" "$w" "$h" >/dev/null
done

db=atelier_e2e_$$
admin_url=${DATABASE_URL%/*}/postgres
export PGOPTIONS="-c client_min_messages=warning"
psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port

server=''
cleanup() {
  local rc=$?
  if [[ -n $server ]]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT

# The sandbox generation, assistant and payment providers: no key of a real provider is passed on.
env -u KIE_API_KEY -u YOOKASSA_SHOP_ID -u YOOKASSA_SECRET_KEY -u TELEGRAM_BOT_TOKEN \
  -u TELEGRAM_BOT_ID -u TELEGRAM_PUBLIC_KEY -u PUBLIC_BASE_URL -u OPENROUTER_API_KEY \
  ENV_FILE= APP_ENV=development HOST=127.0.0.1 PORT="$port" \
  DATABASE_URL="${DATABASE_URL%/*}/$db" REDIS_KEY_PREFIX="e2e:$$:" \
  STORAGE_DIR="$out/media" SANDBOX_GENERATION_MS=1000 RUST_LOG=info \
  target/debug/atelier dev >"$out/server.log" 2>&1 &
server=$!

for _ in $(seq 1 120); do
  curl -fsS "$base/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { tail -n 30 "$out/server.log" >&2; echo "e2e: the server exited" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$base/ready" >/dev/null || { tail -n 30 "$out/server.log" >&2; echo "e2e: $base/ready never answered" >&2; exit 1; }

echo "e2e: atelier dev at $base; screenshots and server.log in $out/"
BASE_URL=$base CHROMIUM=$CHROMIUM PHOTOS="$out/photos" OUT="$out" node e2e/flow.mjs
