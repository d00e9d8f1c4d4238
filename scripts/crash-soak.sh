#!/usr/bin/env bash
# Crash soak: `kill -9` of a real `codeflux serve` at varied points, TRIALS times, each
# followed by a restart on the same data directory (tests/lifecycle.rs). Records the result
# in docs/crash-soak.md. Needs what .ci/run sets up (Docker engine and base image).
#
#   scripts/crash-soak.sh            # 20 trials
#   TRIALS=50 scripts/crash-soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${TRIALS:-20}"
eval "$(bash ../shared/ci/docker-up.sh | grep '^export ')"
export CODEFLUX_TEST_BASE_IMAGE CODEFLUX_TEST_CA_CERT
log=$(mktemp)
status=passed
CODEFLUX_SOAK_TRIALS="$trials" cargo nextest run --test lifecycle kill_9 --no-capture \
  >"$log" 2>&1 || status=failed
{
  echo "# Crash soak"
  echo
  echo "\`scripts/crash-soak.sh\` with $trials trials: \`kill -9\` of \`codeflux serve\` before the first"
  echo "model call, mid tool loop, or while the answer is saved, then a restart on the same data"
  echo "directory. Each trial must end with exactly one answer and one sandbox per project, and"
  echo "no sandbox may remain after the projects are deleted."
  echo
  echo "- Date: $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD), $(nproc) cores"
  echo "- Result: **$status** ($(grep -c '^trial ' "$log" || true) of $trials trials completed)"
  echo
  echo '```'
  grep -E '^trial |^test result' "$log" || tail -40 "$log"
  echo '```'
} > docs/crash-soak.md
cat docs/crash-soak.md
[ "$status" = passed ]
