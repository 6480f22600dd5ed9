#!/usr/bin/env bash
# WebAssembly middleware on the proxy path: `berth bridge` with and without
# a middleware plugin (plugins/testing/echo-mw: sees every request and every
# result, changes nothing; two hook calls per tools/call), measured in one
# run of the shared kit, plus the host micro-benchmark (hook call time,
# instantiation, memory per instance).
#
#   bench/plugins.sh                 # 3 reps, seq-100B and pipe8-100B, no peers
#   bench/plugins.sh --reps 1        # quicker
#
# Arguments go to the kit's run.py. Results: bench/results/<date>-plugins.{json,md}
# and the micro-benchmark's output on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
KIT="$(cd "${BENCH_KIT:-$ROOT/../shared/bench}" && pwd)"
BERTH="$ROOT/target/release/berth"

bash "$ROOT/plugins/build.sh" >/dev/null
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --bin berth)
fi
[ "${BENCH_SKIP_SETUP:-0}" = 1 ] || env -u CARGO_TARGET_DIR bash "$KIT/setup.sh"

conf="$(mktemp /tmp/berth-bench-plugins.XXXXXX.toml)"
trap 'rm -f "$conf"' EXIT
cat >"$conf" <<TOML
[[plugins]]
name = "echo"
kind = "middleware"
path = "$ROOT/plugins/target/wasm32-wasip2/release/berth_plugin_test_echo_mw.wasm"
TOML

mkdir -p "$HERE/results"
status=0
BENCH_SKIP_SETUP=1 bash "$KIT/run.sh" \
  --tag plugins --out "$HERE/results" --no-peers \
  --scenarios seq-100B,pipe8-100B \
  --target "berth:streamable-http=$BERTH bridge --port {port} -- {backend_argv}" \
  --target "berth+wasm-mw:streamable-http=$BERTH bridge --config $conf --middleware echo --port {port} -- {backend_argv}" \
  "$@" || status=$?

echo
(cd "$ROOT" && cargo bench --bench plugin_host 2>/dev/null) || status=$?
exit "$status"
