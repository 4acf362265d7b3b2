#!/usr/bin/env bash
# scripts/with-services.sh CMD [ARGS...]
#
# Runs `scripts/services.sh up`, exports DATABASE_URL and REDIS_URL from target/services/env,
# runs CMD, and on exit (also on Ctrl-C, SIGTERM, SIGHUP) stops the local instances that THIS
# invocation started, and nothing else: servers that were already running are left alone.
# A signal sent to this script alone is passed on to CMD. Exits with CMD's exit code.
set -euo pipefail

if (($# == 0)); then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
started='' child='' pending='' got_signal=''

# shellcheck disable=SC2317 # functions below are called from traps
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n $started ]]; then
    # shellcheck disable=SC2086 # word-split on purpose: "pg redis"
    bash "$here/services.sh" down $started || true
  fi
  exit "$rc"
}
# shellcheck disable=SC2317
on_signal() { # on_signal NAME EXIT_CODE
  got_signal=$1
  if [[ -n $child ]]; then kill -s "$1" "$child" 2>/dev/null || true # CMD decides; we wait for it
  else pending=$2; fi                                                  # still in `up`: exit right after it
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

bash "$here/services.sh" up
# shellcheck source=/dev/null
. "$here/../target/services/env"
started=${ATELIER_STARTED_NOW:-}
[[ -z $pending ]] || exit "$pending"

# CMD runs as a child that we `wait` for, so that our traps run while it is running. Bash
# would ignore SIGINT/SIGQUIT in it and give it /dev/null as stdin: undo both.
(trap - INT QUIT TERM HUP; exec "$@") <&0 &
child=$!
while :; do
  got_signal='' rc=0
  wait "$child" || rc=$?
  [[ -n $got_signal ]] || break # else `wait` may have been cut short by a signal
  if ! kill -0 "$child" 2>/dev/null; then
    rc2=0
    wait "$child" 2>/dev/null || rc2=$? # 127: its status was the one we already have
    ((rc2 == 127)) || rc=$rc2
    break
  fi
done
exit "$rc"
