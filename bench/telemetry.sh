#!/usr/bin/env bash
# The cost of metrics on the request path: `berth bridge` without metrics
# and with them (`[metrics] listen` set, so the bridge counts every request
# and serves /metrics), in one run of the shared kit (streamable HTTP,
# seq-100B and pipe8-100B, no peers).
#
#   bench/telemetry.sh                 # 3 reps
#   bench/telemetry.sh --reps 1        # quicker
#
# Arguments go to the kit's run.py. Results: bench/results/<date>-telemetry.{json,md}
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
KIT="$(cd "${BENCH_KIT:-$ROOT/../shared/bench}" && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BERTH="$TARGET_DIR/release/berth"

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --bin berth)
fi
[ "${BENCH_SKIP_SETUP:-0}" = 1 ] || env -u CARGO_TARGET_DIR bash "$KIT/setup.sh"

mkdir -p "$HERE/results"
BENCH_SKIP_SETUP=1 bash "$KIT/run.sh" \
  --tag telemetry --out "$HERE/results" --no-peers \
  --scenarios seq-100B,pipe8-100B \
  --target "berth:streamable-http=env BERTH_METRICS__ENABLED=false $BERTH bridge --port {port} -- {backend_argv}" \
  --target "berth+metrics:streamable-http=env BERTH_METRICS__LISTEN=127.0.0.1:0 $BERTH bridge --port {port} -- {backend_argv}" \
  "$@"
