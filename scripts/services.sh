#!/usr/bin/env bash
# scripts/services.sh: the PostgreSQL and Redis that Atelier needs, on any Debian-like machine.
#
# Usage: scripts/services.sh up | down [pg] [redis] | status | clean
#        (scripts/with-services.sh uses `up --hold PID` and `release PID`)
#
#   up      Decide DATABASE_URL and REDIS_URL: from the environment, else from .env (only
#           those two keys are read), else postgres://postgres@127.0.0.1:5432/atelier and
#           redis://127.0.0.1:6379. A server that answers there (and, for PostgreSQL, lets
#           that user in) is used as it is. Otherwise a project-local instance is started
#           (or reused, if an earlier `up` started it) on 127.0.0.1:
#             PostgreSQL: initdb + pg_ctl, data in target/services/pg/ (or in
#                         /tmp/atelier-pg-<hash> when running as root and user postgres
#                         cannot reach the project path), port 55432 or the next free one;
#             Redis:      redis-server without persistence, files in target/services/redis/,
#                         port 56379 or the next free one.
#           Missing binaries are installed with apt-get when root (else the command to run is
#           printed and the script exits 1). The database named in DATABASE_URL is created if
#           missing. Writes target/services/env (source it):
#             export DATABASE_URL='...'
#             export REDIS_URL='...'
#             ATELIER_STARTED_SERVICES="pg redis"  # local instances that `down` would stop
#             ATELIER_STARTED_NOW="pg"             # the subset that this very `up` started
#           A plain `up` leaves them running until `down`.
#   up --hold PID / release PID
#           The same `up`, for scripts/with-services.sh: what it started is stopped by `release`
#           once no other live PID holds it (overlapping runs share the instances safely).
#   down    Stop the local instances that `up` started (all, or only those named). Quiet when
#           there is nothing to stop. Data directories are kept (see `clean`).
#   status  Print what is running.
#   clean   `down`, then delete the local instances' data (target/services, /tmp/atelier-pg-*).
#
# Knobs (environment):
#   DATABASE_URL, REDIS_URL  wanted servers (URL parts must be percent-encoded).
#   ATELIER_SERVICES_PATH    colon-separated directories: when set, the PostgreSQL and Redis
#                            binaries are searched ONLY there instead of in PATH and
#                            /usr/lib/postgresql/*/bin (set it to an empty dir to simulate a
#                            machine without them).
#   ATELIER_NO_INSTALL=1     never run apt-get; print the install command and exit 1 instead.
#   ATELIER_PG_PORT, ATELIER_REDIS_PORT  preferred local ports (default 55432, 56379).
#   ATELIER_PG_OS_USER       OS user that runs the local PostgreSQL when we are root
#                            (default postgres, else nobody).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SVC=$ROOT/target/services
STATE=$SVC/state
SVC_ENV_FILE=$SVC/env
DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/atelier
DEFAULT_REDIS_URL=redis://127.0.0.1:6379
INSTALL_HINT='sudo apt-get install -y postgresql redis-server'

say() { printf '%s\n' "$*"; }
note() { printf 'services.sh: %s\n' "$*" >&2; }
die() { printf 'services.sh: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
alive() { # alive PID: the process exists and is not a zombie
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}
# Print a URL with its password masked.
shown() { sed -E 's#^([a-z]+://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; } # single-quote for sh

# ---------------------------------------------------------------------------------------------
# URLs

# parse_url URL: sets U_SCHEME U_USER U_PASS U_HAS_PASS U_HOST U_PORT U_PATH U_QUERY.
parse_url() {
  local url=$1 rest auth hp
  [[ $url == *://* ]] || die "not a URL: $(shown "$url")"
  U_SCHEME=${url%%://*} rest=${url#*://} U_QUERY='' U_PATH='' U_USER='' U_PASS='' U_HAS_PASS=0
  rest=${rest%%#*}
  if [[ $rest == *\?* ]]; then U_QUERY=${rest#*\?} rest=${rest%%\?*}; fi
  if [[ $rest == *@* ]]; then
    auth=${rest%@*} rest=${rest##*@}
    if [[ $auth == */* ]]; then die "unencoded '/' in the user or password of $(shown "$url")"; fi
    if [[ $auth == *:* ]]; then U_USER=${auth%%:*} U_PASS=${auth#*:} U_HAS_PASS=1; else U_USER=$auth; fi
  fi
  if [[ $rest == */* ]]; then U_PATH=${rest#*/} rest=${rest%%/*}; fi
  hp=$rest U_PORT=''
  if [[ $hp == \[*\]* ]]; then # [ipv6]:port
    U_HOST=${hp%%]*} U_HOST=${U_HOST#[}
    [[ $hp == *\]:* ]] && U_PORT=${hp##*]:}
  elif [[ $hp == *:* ]]; then U_HOST=${hp%:*} U_PORT=${hp##*:}
  else U_HOST=$hp
  fi
  [[ -z $U_PORT || $U_PORT =~ ^[0-9]+$ ]] || die "bad port in $(shown "$url")"
}
urldecode() { printf '%b' "${1//%/\\x}"; }

# Value of KEY in .env (KEY=v, export KEY=v, quoted or not); the file is never sourced.
dotenv_get() {
  local key=$1 file=$ROOT/.env line val
  [[ -f $file ]] || return 1
  line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*=" "$file" | tail -n 1) || return 1
  val=${line#*=} val=${val%$'\r'}
  val=${val#"${val%%[![:space:]]*}"}
  case $val in
    \"*) val=${val#\"} val=${val%%\"*} ;;
    \'*) val=${val#\'} val=${val%%\'*} ;;
    *) val=${val%%[[:space:]]#*} val=${val%"${val##*[![:space:]]}"} ;;
  esac
  [[ -n $val ]] && printf '%s' "$val"
}

resolve_wanted() {
  local v
  WANT_DB=${DATABASE_URL:-} WANT_REDIS=${REDIS_URL:-} WANT_DB_FROM=environment WANT_REDIS_FROM=environment
  if [[ -z $WANT_DB ]]; then
    if v=$(dotenv_get DATABASE_URL); then WANT_DB=$v WANT_DB_FROM=.env; else WANT_DB=$DEFAULT_DATABASE_URL WANT_DB_FROM=default; fi
  fi
  if [[ -z $WANT_REDIS ]]; then
    if v=$(dotenv_get REDIS_URL); then WANT_REDIS=$v WANT_REDIS_FROM=.env; else WANT_REDIS=$DEFAULT_REDIS_URL WANT_REDIS_FROM=default; fi
  fi
  parse_url "$WANT_DB"
  [[ $U_SCHEME == postgres || $U_SCHEME == postgresql ]] || die "DATABASE_URL must be postgres://...: $(shown "$WANT_DB")"
  DB_USER=$(urldecode "${U_USER:-postgres}") DB_NAME=$(urldecode "$U_PATH")
  [[ -n $DB_NAME ]] || DB_NAME=$DB_USER
  parse_url "$WANT_REDIS"
  [[ $U_SCHEME == redis || $U_SCHEME == rediss ]] || die "REDIS_URL must be redis://...: $(shown "$WANT_REDIS")"
  REDIS_DBPATH=$U_PATH
}

# The same PostgreSQL URL with another database name.
pg_url_db() {
  local q
  parse_url "$1"
  local auth=$U_USER
  ((U_HAS_PASS)) && auth+=":$U_PASS"
  local host=$U_HOST
  [[ $host == *:* ]] && host="[$host]"
  q=${U_QUERY:+?$U_QUERY}
  printf '%s://%s%s%s/%s%s' "$U_SCHEME" "${auth:+$auth@}" "$host" "${U_PORT:+:$U_PORT}" "$2" "$q"
}

# ---------------------------------------------------------------------------------------------
# Binaries

search_dirs() {
  local dirs=()
  if [[ -n ${ATELIER_SERVICES_PATH+x} ]]; then
    IFS=: read -r -a dirs <<<"$ATELIER_SERVICES_PATH"
  else
    IFS=: read -r -a dirs <<<"$PATH"
    dirs+=(/usr/lib/postgresql/*/bin)
  fi
  ((${#dirs[@]} == 0)) || printf '%s\n' "${dirs[@]}" | awk '!seen[$0]++' |
    { if [[ -n ${ATELIER_SERVICES_PATH+x} ]]; then cat; else sort_pg_dirs; fi; }
}
# Keep PATH order, but list /usr/lib/postgresql/*/bin newest version first.
sort_pg_dirs() {
  local d others=() pg=()
  while IFS= read -r d; do
    if [[ $d == /usr/lib/postgresql/*/bin ]]; then pg+=("$d"); else others+=("$d"); fi
  done
  ((${#others[@]} == 0)) || printf '%s\n' "${others[@]}"
  ((${#pg[@]} == 0)) || printf '%s\n' "${pg[@]}" | sort -t/ -k5,5Vr
}
find_bin() {
  local d
  while IFS= read -r d; do
    [[ -n $d && -x $d/$1 && ! -d $d/$1 ]] && { printf '%s\n' "$d/$1"; return 0; }
  done < <(search_dirs)
  return 1
}
# A directory holding initdb, pg_ctl and postgres together (symlinks resolved).
find_pg_bindir() {
  local d real
  while IFS= read -r d; do
    [[ -n $d && -x $d/initdb ]] || continue
    real=$(dirname "$(readlink -f "$d/initdb")")
    [[ -x $real/pg_ctl && -x $real/postgres ]] && { printf '%s\n' "$real"; return 0; }
  done < <(search_dirs)
  return 1
}
find_tools() {
  PSQL=$(find_bin psql) || PSQL=''
  PG_ISREADY=$(find_bin pg_isready) || PG_ISREADY=''
  PG_BINDIR=$(find_pg_bindir) || PG_BINDIR=''
  if [[ -n $PG_BINDIR ]]; then # clients from the server's own dir as a fallback
    [[ -n $PSQL || ! -x $PG_BINDIR/psql ]] || PSQL=$PG_BINDIR/psql
    [[ -n $PG_ISREADY || ! -x $PG_BINDIR/pg_isready ]] || PG_ISREADY=$PG_BINDIR/pg_isready
  fi
  REDIS_SERVER=$(find_bin redis-server) || REDIS_SERVER=''
  REDIS_CLI=$(find_bin redis-cli) || REDIS_CLI=''
}

install_packages() {
  if [[ ${ATELIER_NO_INSTALL:-0} == 1 || $EUID -ne 0 ]] || ! have apt-get; then
    note "PostgreSQL/Redis binaries are missing (need: $*). Install them with:"
    printf '%s\n' "$INSTALL_HINT" >&2
    exit 1
  fi
  note "installing $* with apt-get (this takes a minute)..."
  {
    apt-get -q update &&
      DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 \
        install --no-install-recommends "$@"
  } >"$SVC/apt.log" 2>&1 </dev/null 9>&- || { tail -n 30 "$SVC/apt.log" >&2; die "apt-get failed (log: $SVC/apt.log)"; }
}

# ---------------------------------------------------------------------------------------------
# Checks

port_in_use() {
  if have ss && [[ -n $(ss -Htln "sport = :$1" 2>/dev/null) ]]; then return 0; fi
  # shellcheck disable=SC2016 # $1 expands in the inner shell
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}
pick_port() {
  local p
  for ((p = $1; p < $1 + 100; p++)); do port_in_use "$p" || { printf '%s\n' "$p"; return 0; }; done
  die "no free port in $1..$(($1 + 99))"
}

psql_q() { # psql_q URL SQL...: run SQL (stdin) quietly, no password prompt
  local url=$1
  shift
  PGCONNECT_TIMEOUT=5 "$PSQL" -X -w -q -t -A -v ON_ERROR_STOP=1 -d "$url" "$@"
}
# 0 if something PostgreSQL-like accepts connections at the URL's host and port.
pg_answers() {
  parse_url "$1"
  if [[ -n $PG_ISREADY ]]; then
    local rc i
    for i in 1 2 3 4 5; do
      rc=0
      "$PG_ISREADY" -q -t 3 ${U_HOST:+-h "$U_HOST"} -p "${U_PORT:-5432}" || rc=$?
      [[ $rc == 1 ]] || break # 1 = starting up or shutting down: give it a few seconds
      sleep 1
    done
    return "$rc"
  fi
  psql_q "$(pg_url_db "$1" postgres)" -c 'select 1' >/dev/null 2>&1 || psql_q "$1" -c 'select 1' >/dev/null 2>&1
}
# ensure_db URL: 0 if we can connect to URL's database, creating it if needed.
ensure_db() {
  local err
  psql_q "$1" -c 'select 1' >/dev/null 2>&1 && return 0
  err=$(psql_q "$(pg_url_db "$1" postgres)" -v db="$DB_NAME" 2>&1 <<'SQL'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
  ) || { LAST_PG_ERROR=$err; return 1; }
  psql_q "$1" -c 'select 1' >/dev/null 2>&1
}

redis_ping() { # redis_ping URL
  local out
  if [[ -n $REDIS_CLI ]]; then
    local tls=()
    [[ $1 == rediss://* ]] && tls=(--tls)
    # stderr too: a failed AUTH is only a message there, and the PING may still answer
    out=$(timeout 5 "$REDIS_CLI" "${tls[@]}" --no-auth-warning -u "$1" ping 2>&1 </dev/null) || return 1
    [[ $out == PONG ]]
    return
  fi
  [[ $1 == redis://* ]] || return 1
  parse_url "$1"
  # shellcheck disable=SC2016
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    bulk() { printf "\$%s\r\n%s\r\n" "$(LC_ALL=C; printf %s "${#1}")" "$1"; }
    if [[ -n $4 ]]; then
      if [[ -n $3 ]]; then { printf "*3\r\n"; bulk AUTH; bulk "$3"; bulk "$4"; } >&3
      else { printf "*2\r\n"; bulk AUTH; bulk "$4"; } >&3; fi
      IFS= read -r -t 3 line <&3 && [[ $line == +OK* ]] || exit 1
    fi
    printf "*1\r\n\$4\r\nPING\r\n" >&3
    IFS= read -r -t 3 line <&3 && [[ $line == +PONG* ]]
  ' _ "${U_HOST:-127.0.0.1}" "${U_PORT:-6379}" "$(urldecode "$U_USER")" "$(urldecode "$U_PASS")" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# State (our own file, written with printf %q)

load_state() {
  PG_BASE='' PG_OS_USER='' PG_STATE_BINDIR='' REDIS_DIR='' REDIS_PORT='' AUTO_STOP=''
  # shellcheck source=/dev/null
  [[ -f $STATE ]] && . "$STATE"
  return 0
}
save_state() {
  if [[ -z $PG_BASE && -z $REDIS_DIR ]]; then rm -f "$STATE"; return; fi
  {
    local v
    for v in PG_BASE PG_OS_USER PG_STATE_BINDIR REDIS_DIR REDIS_PORT AUTO_STOP; do
      printf '%s=%q\n' "$v" "${!v}"
    done
  } >"$STATE.tmp"
  mv -f "$STATE.tmp" "$STATE"
}

LOCKED=0
lock() {
  ((LOCKED == 0)) || return 0
  mkdir -p "$SVC"
  if have flock; then
    exec 9>"$SVC/lock"
    flock -w 600 9 || die "another services.sh is running (lock $SVC/lock)"
  fi
  LOCKED=1
}

# Holders: scripts/with-services.sh runs `up --hold PID` and `release PID`. Instances that
# such an `up` started (AUTO_STOP) are stopped when the last live holder releases them, so
# that two overlapping runs never pull the services from under each other.
USERS=$SVC/holders
proc_start() { # start time of a process (tells a live PID from a reused one)
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  printf '%s\n' "${20}"
}
live_holders() { # prune dead holders, print the live ones
  local f pid
  [[ -d $USERS ]] || return 0
  for f in "$USERS"/*; do
    [[ -f $f ]] || continue
    pid=${f##*/}
    if [[ $(proc_start "$pid" || true) == "$(<"$f")" ]]; then printf '%s\n' "$pid"; else rm -f "$f"; fi
  done
}
cmd_release() {
  [[ ${1:-} =~ ^[0-9]+$ ]] || die "usage: release PID"
  [[ -d $SVC ]] || return 0
  lock
  load_state
  rm -f "$USERS/$1"
  [[ -n $AUTO_STOP && -z $(live_holders) ]] || return 0
  # shellcheck disable=SC2086 # "pg redis"
  cmd_down $AUTO_STOP
}

# ---------------------------------------------------------------------------------------------
# Local PostgreSQL

# AS_PG: command prefix that runs a program as the PostgreSQL OS user (PostgreSQL refuses
# to run as root); empty when we are not root.
pg_prefix() {
  AS_PG=()
  [[ $EUID -eq 0 ]] || return 0
  if have runuser; then
    AS_PG=(runuser -u "$PG_OS_USER" --)
  else
    # shellcheck disable=SC2016 # "$0" "$@" expand in the inner shell
    AS_PG=(su "$PG_OS_USER" -s /bin/bash -c 'exec "$0" "$@"')
  fi
}
as_pg() { pg_prefix; (cd / && "${AS_PG[@]}" "$@"); }
pg_os_user() {
  if [[ $EUID -ne 0 ]]; then id -un
  elif [[ -n ${ATELIER_PG_OS_USER:-} ]]; then printf '%s\n' "$ATELIER_PG_OS_USER"
  elif id postgres >/dev/null 2>&1; then echo postgres
  else echo nobody
  fi
}
# Choose (and create) the base directory of the local cluster.
pg_prepare_base() {
  local base=$SVC/pg h
  mkdir -p "$base"
  if [[ $EUID -eq 0 ]]; then
    chmod 0755 "$SVC"
    chown "$PG_OS_USER" "$base"
    chmod 0700 "$base"
    if ! as_pg test -w "$base" -a -x "$base" 2>/dev/null; then
      h=$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
      base=/tmp/atelier-pg-$h
      if [[ -e $base ]]; then
        [[ -d $base && ! -L $base && $(stat -c %U "$base") == "$PG_OS_USER" ]] ||
          die "$base exists and is not a directory owned by $PG_OS_USER"
      else
        mkdir -m 0700 "$base"
        chown "$PG_OS_USER" "$base"
      fi
      note "user $PG_OS_USER cannot reach $ROOT, so the PostgreSQL data dir is under $base"
    fi
  fi
  PG_BASE=$base
}
# Port of the running local cluster, or fail.
pg_local_port() {
  local pidf=${PG_BASE:-/nonexistent}/data/postmaster.pid pid port
  [[ -r $pidf ]] || return 1
  { read -r pid && read -r _ && read -r _ && read -r port; } <"$pidf" || return 1
  [[ $pid =~ ^[0-9]+$ && $port =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null || echo postgres) == postgres* ]] || return 1
  printf '%s\n' "$port"
}
pg_local_url() { printf 'postgres://postgres@127.0.0.1:%s/%s' "$1" "$DB_NAME"; }

pg_start_local() {
  PG_OS_USER=$(pg_os_user)
  pg_prepare_base
  local data=$PG_BASE/data sock=$PG_BASE/run log=$PG_BASE/postgres.log port ver locale=C
  PG_STATE_BINDIR=$PG_BINDIR
  ver=$("$PG_BINDIR/pg_ctl" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')
  if [[ -f $data/PG_VERSION && $(<"$data/PG_VERSION") != "$ver" ]]; then
    note "moving aside $data (PostgreSQL $(<"$data/PG_VERSION") data, server is $ver)"
    mv "$data" "$data.pg$(<"$data/PG_VERSION").$(date +%s)"
  fi
  if [[ ! -f $data/PG_VERSION ]]; then
    rm -rf "$data"
    if locale -a 2>/dev/null | grep -ix 'c\.utf-\?8' >/dev/null; then locale=C.UTF-8; fi
    as_pg "$PG_BINDIR/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale="$locale" \
      >"$PG_BASE/initdb.log" 2>&1 </dev/null 9>&- ||
      { tail -n 20 "$PG_BASE/initdb.log" >&2; die "initdb failed (log: $PG_BASE/initdb.log)"; }
    printf "\ninclude_if_exists = 'atelier.conf'\n" >>"$data/postgresql.conf"
  fi
  mkdir -p "$sock"
  [[ $EUID -ne 0 ]] || chown "$PG_OS_USER" "$sock"
  port=$(pick_port "${ATELIER_PG_PORT:-55432}")
  (( ${#sock} + 20 < 100 )) || sock='' # Unix socket paths are limited to ~107 bytes; TCP is enough
  {
    echo "# written by scripts/services.sh on every start"
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '${sock//\'/\'\'}'"
    echo "fsync = off                # throwaway dev/test instance"
    echo "synchronous_commit = off"
    echo "full_page_writes = off"
  } >"$data/atelier.conf"
  [[ $EUID -ne 0 ]] || chown "$PG_OS_USER" "$data/atelier.conf"
  save_state
  local detach=()
  have setsid && detach=(setsid -w) # own session: a Ctrl-C in the terminal must not reach it
  pg_prefix
  (cd / && exec "${detach[@]}" "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$data" -l "$log" -w -t 60 start) \
    >"$PG_BASE/pg_ctl.log" 2>&1 </dev/null 9>&- ||
    { cat "$PG_BASE/pg_ctl.log" >&2; tail -n 20 "$log" >&2; die "PostgreSQL did not start (log: $log)"; }
  pg_local_port >/dev/null || die "PostgreSQL started but its postmaster.pid is unreadable ($data)"
}

pg_stop_local() {
  local pid port data=$PG_BASE/data i
  port=$(pg_local_port) || return 1
  pid=$(head -n 1 "$data/postmaster.pid")
  if [[ -n $PG_STATE_BINDIR && -x $PG_STATE_BINDIR/pg_ctl ]]; then
    as_pg "$PG_STATE_BINDIR/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 </dev/null 9>&- || true
  fi
  if pg_local_port >/dev/null; then # pg_ctl could not stop it: fast shutdown by signal
    kill -INT "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do pg_local_port >/dev/null || break; sleep 0.1; done
    pg_local_port >/dev/null && { kill -KILL "$pid" 2>/dev/null || true; }
  fi
  say "PostgreSQL: stopped the local instance on 127.0.0.1:$port"
}

# ---------------------------------------------------------------------------------------------
# Local Redis

redis_local_pid() {
  local pid
  [[ -n $REDIS_DIR && -r $REDIS_DIR/redis.pid ]] || return 1
  pid=$(<"$REDIS_DIR/redis.pid")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null || echo redis) == redis* ]] || return 1
  printf '%s\n' "$pid"
}
redis_local_url() { printf 'redis://127.0.0.1:%s%s' "$1" "${REDIS_DBPATH:+/$REDIS_DBPATH}"; }
redis_quote() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

redis_start_local() {
  REDIS_DIR=$SVC/redis
  mkdir -p "$REDIS_DIR"
  REDIS_PORT=$(pick_port "${ATELIER_REDIS_PORT:-56379}")
  rm -f "$REDIS_DIR/redis.pid"
  {
    echo "# written by scripts/services.sh on every start"
    echo "bind 127.0.0.1"
    echo "port $REDIS_PORT"
    echo 'save ""'
    echo "appendonly no"
    echo "daemonize yes"
    echo "pidfile $(redis_quote "$REDIS_DIR/redis.pid")"
    echo "logfile $(redis_quote "$REDIS_DIR/redis.log")"
    echo "dir $(redis_quote "$REDIS_DIR")"
  } >"$REDIS_DIR/redis.conf"
  save_state
  "$REDIS_SERVER" "$REDIS_DIR/redis.conf" >"$REDIS_DIR/start.log" 2>&1 </dev/null 9>&- ||
    { cat "$REDIS_DIR/start.log" >&2; die "redis-server did not start (log: $REDIS_DIR/redis.log)"; }
  local i
  for ((i = 0; i < 100; i++)); do
    redis_local_pid >/dev/null && redis_ping "$(redis_local_url "$REDIS_PORT")" && return 0
    sleep 0.1
  done
  tail -n 20 "$REDIS_DIR/redis.log" >&2
  die "redis-server did not answer on 127.0.0.1:$REDIS_PORT (log: $REDIS_DIR/redis.log)"
}

redis_stop_local() {
  local pid i
  pid=$(redis_local_pid) || return 1
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do redis_local_pid >/dev/null || break; sleep 0.1; done
  redis_local_pid >/dev/null && { kill -KILL "$pid" 2>/dev/null || true; }
  rm -f "$REDIS_DIR/redis.pid"
  say "Redis: stopped the local instance on 127.0.0.1:$REDIS_PORT"
}

# ---------------------------------------------------------------------------------------------
# Commands

# Decide what PostgreSQL to use: sets PG_MODE (existing|local|start) and PG_URL.
pg_decide() {
  local port
  PG_MODE='' PG_URL=''
  [[ -n $PSQL ]] || return 0
  if pg_answers "$WANT_DB"; then
    if ensure_db "$WANT_DB"; then PG_MODE=existing PG_URL=$WANT_DB; return 0; fi
    note "a PostgreSQL server answers at $(shown "$WANT_DB") but cannot be used as \"$DB_USER\"${LAST_PG_ERROR:+: ${LAST_PG_ERROR%%$'\n'*}}; using a local instance instead"
  fi
  if port=$(pg_local_port); then PG_MODE=local PG_URL=$(pg_local_url "$port"); return 0; fi
  [[ -z $PG_BINDIR ]] || PG_MODE=start
}
redis_decide() {
  REDIS_MODE='' REDIS_URL_OUT=''
  if redis_ping "$WANT_REDIS"; then REDIS_MODE=existing REDIS_URL_OUT=$WANT_REDIS; return 0; fi
  if redis_local_pid >/dev/null && redis_ping "$(redis_local_url "$REDIS_PORT")"; then
    REDIS_MODE=local REDIS_URL_OUT=$(redis_local_url "$REDIS_PORT"); return 0
  fi
  [[ -z $REDIS_SERVER ]] || REDIS_MODE=start
}

STARTED_NOW=()
up_failed() { # stop what this `up` started if it fails half-way
  local rc=$?
  trap - EXIT
  if ((rc != 0)) && ((${#STARTED_NOW[@]})); then
    note "up failed; stopping what it started (${STARTED_NOW[*]})"
    [[ " ${STARTED_NOW[*]} " == *" redis "* ]] && { redis_stop_local >/dev/null || true; REDIS_DIR=''; }
    [[ " ${STARTED_NOW[*]} " == *" pg "* ]] && { pg_stop_local >/dev/null || true; PG_BASE=''; }
    save_state
  fi
  exit "$rc"
}

cmd_up() {
  HOLD=${1:-}
  lock
  load_state
  resolve_wanted
  find_tools
  pg_decide
  redis_decide
  local missing=()
  [[ -n $PG_MODE ]] || missing+=(postgresql)
  [[ -n $REDIS_MODE ]] || missing+=(redis-server)
  if ((${#missing[@]})); then
    install_packages "${missing[@]}"
    find_tools
    [[ -n $PG_MODE ]] || pg_decide # the package may have started a server on the wanted URL
    [[ -n $REDIS_MODE ]] || redis_decide
    [[ -n $PG_MODE ]] || die "still no usable PostgreSQL binaries after installing (search path: $(search_dirs | paste -sd:))"
    [[ -n $REDIS_MODE ]] || die "still no redis-server after installing (search path: $(search_dirs | paste -sd:))"
  fi

  trap 'up_failed' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local pg_line redis_line port
  case $PG_MODE in
    existing) pg_line="PostgreSQL: using the existing server at $(shown "$PG_URL")" ;;
    local) pg_line="PostgreSQL: reusing the local instance started earlier at $PG_URL (log: $PG_BASE/postgres.log)" ;;
    start)
      STARTED_NOW+=(pg)
      pg_start_local
      port=$(pg_local_port)
      PG_URL=$(pg_local_url "$port")
      pg_line="PostgreSQL: no usable server at $(shown "$WANT_DB") ($WANT_DB_FROM); started a local one at $PG_URL (data: $PG_BASE/data, log: $PG_BASE/postgres.log)"
      ;;
  esac
  if [[ $PG_MODE != existing ]]; then
    ensure_db "$PG_URL" || die "cannot create database \"$DB_NAME\" at $PG_URL: ${LAST_PG_ERROR:-}"
  fi
  case $REDIS_MODE in
    existing) redis_line="Redis: using the existing server at $(shown "$REDIS_URL_OUT")" ;;
    local) redis_line="Redis: reusing the local instance started earlier at $REDIS_URL_OUT (log: $REDIS_DIR/redis.log)" ;;
    start)
      STARTED_NOW+=(redis)
      redis_start_local
      REDIS_URL_OUT=$(redis_local_url "$REDIS_PORT")
      redis_line="Redis: no usable server at $(shown "$WANT_REDIS") ($WANT_REDIS_FROM); started a local one at $REDIS_URL_OUT (log: $REDIS_DIR/redis.log)"
      ;;
  esac

  local managed=() s
  pg_local_port >/dev/null && managed+=(pg)
  redis_local_pid >/dev/null && managed+=(redis)
  if [[ -n $HOLD ]]; then # started for a with-services run: stopped after its last holder
    mkdir -p "$USERS"
    proc_start "$HOLD" >"$USERS/$HOLD" || die "up --hold: no process $HOLD"
    for s in "${STARTED_NOW[@]}"; do [[ " $AUTO_STOP " == *" $s "* ]] || AUTO_STOP+="${AUTO_STOP:+ }$s"; done
  else
    AUTO_STOP='' # a plain `up` keeps everything running until `down`
  fi
  save_state
  {
    echo "# written by scripts/services.sh up; source this file"
    echo "export DATABASE_URL=$(sq "$PG_URL")"
    echo "export REDIS_URL=$(sq "$REDIS_URL_OUT")"
    echo "ATELIER_STARTED_SERVICES=\"${managed[*]}\""
    echo "ATELIER_STARTED_NOW=\"${STARTED_NOW[*]}\""
  } >"$SVC_ENV_FILE.tmp"
  chmod 0600 "$SVC_ENV_FILE.tmp"
  mv -f "$SVC_ENV_FILE.tmp" "$SVC_ENV_FILE"
  trap - EXIT INT TERM
  say "$pg_line"
  say "$redis_line"
}

cmd_down() {
  local which=("$@") s stopped=0
  ((${#which[@]})) || which=(pg redis)
  for s in "${which[@]}"; do [[ $s == pg || $s == redis ]] || die "down: unknown service '$s' (pg, redis)"; done
  [[ -d $SVC ]] || return 0
  lock
  load_state
  PG_OS_USER=${PG_OS_USER:-$(pg_os_user)}
  for s in "${which[@]}"; do
    case $s in
      pg) [[ -z $PG_BASE ]] || { pg_stop_local && stopped=1; PG_BASE='' PG_STATE_BINDIR=''; } ;;
      redis) [[ -z $REDIS_DIR ]] || { redis_stop_local && stopped=1; REDIS_DIR='' REDIS_PORT=''; } ;;
    esac
    AUTO_STOP=$(tr ' ' '\n' <<<"$AUTO_STOP" | grep -vx "$s" | paste -sd ' ' || true)
  done
  save_state
  ((stopped == 0)) || rm -f "$SVC_ENV_FILE"
}

cmd_status() {
  local port pid
  load_state
  if port=$(pg_local_port); then say "PostgreSQL: local instance running on 127.0.0.1:$port (pid $(head -n 1 "$PG_BASE/data/postmaster.pid"), data $PG_BASE/data)"
  else say "PostgreSQL: no local instance running"; fi
  if pid=$(redis_local_pid); then say "Redis: local instance running on 127.0.0.1:$REDIS_PORT (pid $pid, files $REDIS_DIR)"
  else say "Redis: no local instance running"; fi
  local holders
  holders=$(live_holders | paste -sd ' ')
  [[ -z $AUTO_STOP ]] || say "Stopped when their with-services runs end: $AUTO_STOP (holders: ${holders:-none})"
  if [[ -f $SVC_ENV_FILE ]]; then
    find_tools
    local db rd
    db=$(sed -n "s/^export DATABASE_URL='\(.*\)'$/\1/p" "$SVC_ENV_FILE")
    rd=$(sed -n "s/^export REDIS_URL='\(.*\)'$/\1/p" "$SVC_ENV_FILE")
    say "$SVC_ENV_FILE:"
    if [[ -n $PSQL ]] && psql_q "$db" -c 'select 1' >/dev/null 2>&1; then say "  DATABASE_URL=$(shown "$db") (answers)"; else say "  DATABASE_URL=$(shown "$db") (NOT answering)"; fi
    if redis_ping "$rd"; then say "  REDIS_URL=$(shown "$rd") (answers)"; else say "  REDIS_URL=$(shown "$rd") (NOT answering)"; fi
  else
    say "no $SVC_ENV_FILE (run: scripts/services.sh up)"
  fi
}

cmd_clean() {
  cmd_down
  local h
  h=$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
  rm -rf "$SVC" "/tmp/atelier-pg-$h"
  say "removed $SVC and /tmp/atelier-pg-$h"
}

case ${1:-} in
  up)
    shift
    if (($# == 0)); then cmd_up ''
    elif (($# == 2)) && [[ $1 == --hold && $2 =~ ^[0-9]+$ ]]; then cmd_up "$2"
    else die "usage: up [--hold PID]"; fi
    ;;
  release) shift; cmd_release "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status ;;
  clean) cmd_clean ;;
  *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
