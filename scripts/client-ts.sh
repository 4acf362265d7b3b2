#!/usr/bin/env bash
# The typed TypeScript client (`make client-ts`): checks that clients/ts/src/schema.d.ts is what
# openapi-typescript makes of openapi.yaml today, type-checks and compiles the client and its
# test, then runs the test (node --test) against `atelier dev` (debug build) on a free port with a
# scratch database and the sandbox providers: login, upload, generate with live progress, payment.
#
# Installs what it needs (`npm ci` in clients/ts; Node.js with apt-get as root when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
client=clients/ts
out=target/client-ts

if [[ -z ${CLIENT_TS_WITH_SERVICES:-} ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      echo "client-ts: installing nodejs and npm with apt-get"
      apt-get -q update >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends nodejs npm >/dev/null
    else
      echo "client-ts: Node.js and npm are missing: sudo apt-get install -y nodejs npm" >&2
      exit 1
    fi
  fi
  (cd "$client" && npm ci --no-audit --no-fund --loglevel=error)
  mkdir -p "$out"
  (cd "$client" && npx openapi-typescript ../../openapi.yaml -o "../../$out/schema.d.ts" >/dev/null)
  if ! diff -q "$out/schema.d.ts" "$client/src/schema.d.ts" >/dev/null; then
    diff -u "$client/src/schema.d.ts" "$out/schema.d.ts" | head -n 40 >&2
    echo "client-ts: src/schema.d.ts is out of date with openapi.yaml: run 'cd clients/ts && npm run generate'" >&2
    exit 1
  fi
  (cd "$client" && rm -rf dist && npx tsc -p tsconfig.json)
  echo "client-ts: types up to date, client and test compiled"
  # With the examples, so that dev-dependencies' features are unified as in `make test`: the
  # binary reuses the test build's dependencies instead of building a second set (minutes in CI).
  cargo build --quiet --bin atelier --examples
  CLIENT_TS_WITH_SERVICES=1 exec scripts/with-services.sh "$0"
fi

# Phase 2 (under scripts/with-services.sh: DATABASE_URL and REDIS_URL answer).
mkdir -p "$out"
# shellcheck source=scripts/scratch-dev.sh
. scripts/scratch-dev.sh
start_scratch_dev client-ts "$out" 500
echo "client-ts: atelier dev at $base; server.log in $out/"
(cd "$client" && BASE_URL=$base PHOTOS="$PWD/../../docs/samples" node --test dist/test/)
