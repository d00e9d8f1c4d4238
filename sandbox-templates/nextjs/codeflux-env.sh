# The sandbox's settings for the dev server and every login shell. The Dockerfiles set
# them with ENV as well, but E2B's legacy template builder ignores ENV lines: its start
# command sources this file, and envd runs commands with `bash -l`, which reads it from
# /etc/profile.d. Values already set win.
export NEXT_TELEMETRY_DISABLED="${NEXT_TELEMETRY_DISABLED:-1}"
export NPM_CONFIG_UPDATE_NOTIFIER="${NPM_CONFIG_UPDATE_NOTIFIER:-false}"
export NPM_CONFIG_FUND="${NPM_CONFIG_FUND:-false}"
export NPM_CONFIG_AUDIT="${NPM_CONFIG_AUDIT:-false}"
export NPM_CONFIG_LEGACY_PEER_DEPS="${NPM_CONFIG_LEGACY_PEER_DEPS:-true}"
export PORT="${PORT:-3000}"
# The app's database is owned by the process that listens on $PORT (codeflux-db-host.cjs);
# CodeFlux reaches it on this loopback address.
export CODEFLUX_DB_BRIDGE="${CODEFLUX_DB_BRIDGE:-127.0.0.1:39017}"
case "${NODE_OPTIONS:-}" in
  *codeflux-db-host.cjs*) ;;
  *) export NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--require /usr/local/lib/codeflux-db-host.cjs" ;;
esac
