#!/usr/bin/env bash
# Starts the Next.js dev server in /home/user and reports when it answers. Its output also
# goes to a log that CodeFlux reads to check the app after each change (compile errors).
set -u
# On Docker the container starts as root (so that CodeFlux's command runner can run as root
# and commands cannot reach it); the dev server and everything after this line run as the
# workspace's owner, with no capability left.
if [ "$(id -u)" = 0 ]; then
  exec setpriv --reuid=user --regid=user --init-groups -- "$0" "$@"
fi
cd /home/user
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
log=/tmp/codeflux-dev.log
: > "$log"
npx next dev --turbopack -H 0.0.0.0 -p 3000 > >(tee -a "$log") 2>&1 &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; wait "$server"' TERM INT
for _ in $(seq 1 240); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "codeflux: the dev server exited" >&2
    wait "$server"
    exit 1
  fi
  status=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:3000/ 2>/dev/null || true)
  if [ "$status" = "200" ]; then
    echo "codeflux: dev server ready on port 3000"
    break
  fi
  sleep 0.5
done
wait "$server"
