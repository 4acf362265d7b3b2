# Sourced by scripts/e2e.sh and scripts/client-ts.sh (under scripts/with-services.sh):
# `start_scratch_dev NAME OUT GENERATION_MS` runs `atelier dev` (debug build) on a free port with a
# scratch database and the sandbox providers, its log in OUT/server.log, and waits until it is
# ready. Sets `base`; on exit the server is stopped and the database dropped.
start_scratch_dev() {
  local name=$1 generation_ms=$3
  scratch_out=$2
  scratch_db=atelier_${name//-/_}_$$
  scratch_admin_url=${DATABASE_URL%/*}/postgres
  export PGOPTIONS="-c client_min_messages=warning"
  psql "$scratch_admin_url" -qc "DROP DATABASE IF EXISTS $scratch_db WITH (FORCE)" -c "CREATE DATABASE $scratch_db" >/dev/null
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base=http://127.0.0.1:$port
  scratch_server=''
  trap stop_scratch_dev EXIT
  # The sandbox generation, assistant and payment providers: no key of a real provider is passed on.
  env -u KIE_API_KEY -u YOOKASSA_SHOP_ID -u YOOKASSA_SECRET_KEY -u TELEGRAM_BOT_TOKEN \
    -u TELEGRAM_BOT_ID -u TELEGRAM_PUBLIC_KEY -u PUBLIC_BASE_URL -u OPENROUTER_API_KEY \
    ENV_FILE= APP_ENV=development HOST=127.0.0.1 PORT="$port" \
    DATABASE_URL="${DATABASE_URL%/*}/$scratch_db" REDIS_KEY_PREFIX="$name:$$:" \
    STORAGE_DIR="$scratch_out/media" SANDBOX_GENERATION_MS="$generation_ms" RUST_LOG=info \
    "${CARGO_TARGET_DIR:-target}/debug/atelier" dev >"$scratch_out/server.log" 2>&1 &
  scratch_server=$!
  for _ in $(seq 1 240); do
    curl -fsS "$base/ready" >/dev/null 2>&1 && return 0
    kill -0 "$scratch_server" 2>/dev/null || break
    sleep 0.5
  done
  tail -n 30 "$scratch_out/server.log" >&2
  echo "$name: atelier dev at $base did not become ready" >&2
  exit 1
}

stop_scratch_dev() {
  local rc=$?
  if [[ -n ${scratch_server:-} ]]; then
    kill "$scratch_server" 2>/dev/null || true
    wait "$scratch_server" 2>/dev/null || true
  fi
  psql "$scratch_admin_url" -qc "DROP DATABASE IF EXISTS $scratch_db WITH (FORCE)" >/dev/null 2>&1 || true
  exit "$rc"
}
