#!/usr/bin/env bash
# Starts the Next.js dev server in /home/user under supervision. Its output also goes to a
# log that CodeFlux reads to check the app after each change (compile errors).
set -u
# On Docker the container starts as root (so that CodeFlux's command runner can run as root
# and commands cannot reach it); the dev server and everything after this line run as the
# workspace's owner, with no capability left.
if [ "$(id -u)" = 0 ]; then
  exec setpriv --reuid=user --regid=user --init-groups -- "$0" "$@"
fi
cd /home/user
. /etc/profile.d/codeflux.sh
# On Docker, CodeFlux sets this sandbox's network rules first and then creates the gate
# file (on a root-owned tmpfs): no app code runs before the rules are in place.
if [ -n "${CODEFLUX_NETWORK_GATE:-}" ]; then
  for _ in $(seq 1 1200); do
    [ -e "$CODEFLUX_NETWORK_GATE" ] && break
    sleep 0.1
  done
  if [ ! -e "$CODEFLUX_NETWORK_GATE" ]; then
    echo "codeflux: the network rules were never set; not starting the dev server" >&2
    exit 1
  fi
fi
: > /tmp/codeflux-dev.log
# The supervisor keeps the dev server up (restarts with back-off) and outlives it, so a
# dev server that exits never stops the sandbox.
exec node /usr/local/lib/codeflux-supervisor.cjs
