#!/usr/bin/env bash
# scripts/with-services.sh CMD [ARGS...]
#
# Runs `scripts/services.sh up`, exports DATABASE_URL and REDIS_URL from target/services/env,
# runs CMD, and on exit (also on Ctrl-C, SIGTERM, SIGHUP) stops the local instances that this
# run started; servers that were already running are left alone. When runs overlap, the
# instances are stopped when the last of them ends. A signal sent to this script alone is
# passed on to CMD. Exits with CMD's exit code.
set -euo pipefail

if (($# == 0)); then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
held='' child='' pending='' got_signal=''

# shellcheck disable=SC2317 # functions below are called from traps
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  [[ -z $held ]] || bash "$here/services.sh" release "$$" || true
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

bash "$here/services.sh" up --hold "$$"
held=1
# shellcheck source=/dev/null
. "$here/../target/services/env"
[[ -z $pending ]] || exit "$pending"

# CMD runs as a child that we `wait` for, so that our traps run while it is running. Bash
# would ignore SIGINT/SIGQUIT in it and give it /dev/null as stdin: undo both.
(trap - INT QUIT TERM HUP; exec "$@") <&0 &
child=$!
while :; do
  got_signal='' rc=0
  wait "$child" || rc=$?
  [[ -n $got_signal ]] || break # a signal cut `wait` short (rc = 128+N)...
  kill -0 "$child" 2>/dev/null || break # ...and CMD is gone already: keep that code
done
((rc >= 0 && rc <= 255)) || rc=1
exit "$rc"
