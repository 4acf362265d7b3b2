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

# shellcheck source=scripts/scratch-dev.sh
. scripts/scratch-dev.sh
start_scratch_dev e2e "$out" 1000

echo "e2e: atelier dev at $base; screenshots and server.log in $out/"
BASE_URL=$base CHROMIUM=$CHROMIUM PHOTOS="$out/photos" OUT="$out" node e2e/flow.mjs
