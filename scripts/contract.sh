#!/usr/bin/env bash
# Contract testing: Schemathesis (pinned, from PyPI, in a venv under target/) against the
# /openapi.yaml that `atelier dev` serves, on a free port with a scratch database and the
# sandbox providers, signed in as a test user who has credits, uploads, generations and a chat
# session to look up. Every check runs: no 5xx on any generated input, status codes, content
# types, headers and bodies as documented, negative data refused, auth not ignored.
# CONTRACT_MAX_EXAMPLES bounds the examples per operation and phase (default 25; CI runs a
# smaller bound, by hand run more). CONTRACT_SEED repeats a run.
# Expects DATABASE_URL and REDIS_URL (make contract sets them). Reports go to target/contract/.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-25}
BOT_TOKEN=1000000001:atelier-development-bot-token
ADMIN_KEY=contract-admin-api-key
USER_ID=777000001
out=target/contract
venv=target/contract-venv

# Schemathesis in its own venv; Debian's python3 needs python3-venv for that.
new_venv() { rm -rf "$venv" && python3 -m venv "$venv" >/dev/null 2>&1; }
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "version $SCHEMATHESIS_VERSION"; then
  if ! new_venv; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
      echo "python3 with venv not found: installing it with apt-get"
      apt-get -q update >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends python3 python3-venv >/dev/null
      new_venv
    else
      echo "python3 with venv is missing: sudo apt-get install -y python3 python3-venv" >&2
      exit 1
    fi
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# With the examples, so that dev-dependencies' features are unified as in `make test`: the
# binary reuses the test build's dependencies instead of building a second set (minutes in CI).
cargo build --quiet --bin atelier --examples
bin="${CARGO_TARGET_DIR:-target}/debug/atelier"

db="atelier_contract_$$"
PGOPTIONS='-c client_min_messages=warning' psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -rf "$out" && mkdir -p "$out/media"
base="http://127.0.0.1:$port"
tg_secret=contract-telegram-webhook-secret
pids=()
drop_db() { PGOPTIONS='-c client_min_messages=warning' psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; }
trap 'kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null; drop_db' EXIT
# api.telegram.org may be out of reach (CI): Stars invoices and deliveries go to a local fake.
coproc telegram { exec python3 scripts/fake-telegram.py; }
pids+=("$telegram_PID")
read -r tg_port <&"${telegram[0]}"

# The sandbox generation and payment providers (no keys). Abuse limits stay on but out of reach
# of one client, so that generated requests get past them to the code behind; YooKassa
# notifications are accepted from this machine so that their parser is fuzzed too.
export ENV_FILE= APP_ENV=development HOST=127.0.0.1 PORT=$port PUBLIC_BASE_URL=$base LOG_FORMAT=text RUST_LOG=warn
export DATABASE_URL="${DATABASE_URL%/*}/$db" REDIS_KEY_PREFIX="contract:$$:" STORAGE_DIR="$out/media"
export TELEGRAM_BOT_TOKEN=$BOT_TOKEN ADMIN_API_KEY=$ADMIN_KEY SIGNUP_BONUS_CREDITS=100000
export RATE_LIMIT_LOGIN_PER_IP=1000000/1m RATE_LIMIT_LOGIN_FAILURES_PER_IP=1000000/1m
export RATE_LIMIT_UPLOADS_PER_USER=1000000/1m RATE_LIMIT_CHAT_PER_USER=1000000/1m
export RATE_LIMIT_PAYMENTS_PER_USER=1000000/1m PAYMENTS_MAX_PENDING_PER_USER=1000000
export MAX_TASKS_PER_USER_PER_HOUR=1000000 MAX_ACTIVE_TASKS_PER_USER=1000000
export YOOKASSA_ALLOWED_NETWORKS=127.0.0.1/32 SANDBOX_GENERATION_MS=0 IMAGE_MIN_SIDE=1
export TELEGRAM_API_BASE_URL="http://127.0.0.1:$tg_port" TELEGRAM_WEBHOOK_SECRET=$tg_secret
"$bin" dev >"$out/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do curl -fs "$base/health" >/dev/null && break; sleep 0.1; done
curl -fs "$base/health" >/dev/null || { cat "$out/server.log" >&2; exit 1; }

init=$("$bin" init-data sign --bot-token "$BOT_TOKEN" --user-id "$USER_ID" --first-name Contract)
token=$(curl -fs -X POST "$base/api/v1/auth/telegram" -H "Authorization: tma $init" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# Known resources for the operations that look one up by id, so that generated requests reach
# the code behind the lookup instead of a 404 (links carry the same ids in the stateful phase).
api() { # api METHOD PATH [curl args...] — prints the JSON answer
  local method=$1 path=$2
  shift 2
  curl -fsS -X "$method" "$base$path" -H "Authorization: Bearer $token" "$@"
}
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("/"): v=v[k]
print(v)' "$1"; }
fitting=$(api POST /api/v1/fitting/upload -F person=@docs/samples/person.jpg -F item=@docs/samples/item.jpg)
edit_upload=$(api POST /api/v1/editing/upload -F image=@docs/samples/person.jpg | field id)
spare_upload=$(api POST /api/v1/editing/upload -F image=@docs/samples/item.jpg | field id)
generate() { api POST /api/v1/editing/generate -H 'Content-Type: application/json' \
  -d "{\"upload_id\": \"$edit_upload\", \"prompt\": \"make it blue\", \"client_request_id\": \"$1\"}" | field generation/id; }
session=$(api POST /api/v1/editing/chat -H 'Content-Type: application/json' \
  -d "{\"upload_id\": \"$edit_upload\", \"message\": \"make it brighter\"}" | field session_id)
# Read by scripts/contract.toml.
export CONTRACT_TOKEN=$token CONTRACT_INIT_DATA=$init CONTRACT_ADMIN_KEY=$ADMIN_KEY CONTRACT_TELEGRAM_SECRET=$tg_secret
export CONTRACT_PERSON_UPLOAD=$(field person/id <<<"$fitting") CONTRACT_ITEM_UPLOAD=$(field item/id <<<"$fitting")
export CONTRACT_EDIT_UPLOAD=$edit_upload CONTRACT_SPARE_UPLOAD=$spare_upload CONTRACT_SESSION=$session
export CONTRACT_GENERATION=$(generate seed-1) CONTRACT_SPARE_GENERATION=$(generate seed-2)

run() { # run NAME FILTERS... — one schemathesis run; its reports go to $out/NAME
  local name=$1
  shift
  "$venv/bin/schemathesis" --config-file scripts/contract.toml run "$base/openapi.yaml" \
    --url "$base" --checks all --max-examples "$MAX_EXAMPLES" ${CONTRACT_SEED:+--seed "$CONTRACT_SEED"} \
    --no-color --report junit,ndjson --report-dir "$out/$name" "$@"
}

echo "== schemathesis $SCHEMATHESIS_VERSION against $base, at most $MAX_EXAMPLES examples per operation"
status=0
# Erasing the account would sign the test user out of everything after it: it runs last, alone.
run all --exclude-operation-id erase --exclude-operation-id fitting_upload --exclude-operation-id editing_upload \
  --exclude-operation-id telegram_webhook || status=$?
# The runs of one operation have no stateful phase: its links lead to operations left out, which
# Schemathesis reports as an error.
single=(--phases examples,coverage,fuzzing)
# The bot's webhook acknowledges (200) and ignores whatever is not a readable Update, by design:
# Telegram resends an update on any other status, so a malformed one would loop. Refusing
# "negative data" is therefore not expected of it; everything else is checked.
run webhook "${single[@]}" --include-operation-id telegram_webhook --exclude-checks negative_data_rejection || status=$?
# Multipart negative cases: see contract.toml (a false positive of Schemathesis 4.32.5).
run uploads "${single[@]}" --include-operation-id fitting_upload --include-operation-id editing_upload \
  --exclude-checks negative_data_rejection || status=$?
run erase "${single[@]}" --include-operation-id erase || status=$?
# A panic in a handler drops the connection rather than answering 500: look for it in the log.
if grep -B2 -A8 'panicked' "$out/server.log" >&2; then
  echo "the server panicked (above; whole log: $out/server.log)" >&2
  status=1
fi
exit "$status"
