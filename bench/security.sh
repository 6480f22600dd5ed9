#!/usr/bin/env bash
# The cost of a protected proxy: `berth bridge` without protections and
# with authentication (a JWT checked against a JWKS on loopback) +
# authorization (a Cedar policy) + audit (one JSON line per request), in
# one run of the shared kit (streamable HTTP, seq-100B and pipe8-100B, no
# peers). The token comes from examples/test_issuer.rs; the kit's
# `header=` option sends it on every request.
#
#   bench/security.sh                 # 3 reps
#   bench/security.sh --reps 1        # quicker
#
# Arguments go to the kit's run.py. Results: bench/results/<date>-security.{json,md}
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
KIT="$(cd "${BENCH_KIT:-$ROOT/../shared/bench}" && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BERTH="$TARGET_DIR/release/berth"

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --bin berth --example test_issuer)
fi
[ "${BENCH_SKIP_SETUP:-0}" = 1 ] || env -u CARGO_TARGET_DIR bash "$KIT/setup.sh"

work="$(mktemp -d /tmp/berth-bench-security.XXXXXX)"
issuer_pid=""
cleanup() { [ -n "$issuer_pid" ] && kill "$issuer_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
"$TARGET_DIR/release/examples/test_issuer" berth-bench bench >"$work/issuer.out" &
issuer_pid=$!
for _ in $(seq 50); do grep -q '^TOKEN=' "$work/issuer.out" 2>/dev/null && break; sleep 0.1; done
ISSUER="$(sed -n 's/^ISSUER=//p' "$work/issuer.out")"
JWKS="$(sed -n 's/^JWKS=//p' "$work/issuer.out")"
TOKEN="$(sed -n 's/^TOKEN=//p' "$work/issuer.out")"
[ -n "$TOKEN" ] || { echo "the test issuer did not start" >&2; exit 1; }

cat >"$work/protect.json" <<JSON
{
  "oidc": {"issuer": "$ISSUER", "audience": "berth-bench", "jwks_url": "$JWKS"},
  "authz_config": {"version": "1.0", "type": "cedarv1", "cedar": {"policies": [
    "permit(principal == Client::\"bench\", action == Action::\"call_tool\", resource == Tool::\"echo\");"
  ]}},
  "audit_config": {}
}
JSON

mkdir -p "$HERE/results"
BENCH_SKIP_SETUP=1 bash "$KIT/run.sh" \
  --tag security --out "$HERE/results" --no-peers \
  --scenarios seq-100B,pipe8-100B \
  --target "berth:streamable-http=$BERTH bridge --port {port} -- {backend_argv}" \
  --target "berth+authn+authz+audit:streamable-http;header=Authorization: Bearer $TOKEN=$BERTH bridge --protect $work/protect.json --audit-dir $work/audit --port {port} -- {backend_argv}" \
  "$@"
echo "audit lines written: $(cat "$work"/audit/*.audit.jsonl 2>/dev/null | wc -l)"
# The kit writes the rerun command, token included, into the results.
sed -i "s/$TOKEN/<token from examples\/test_issuer>/g" "$HERE"/results/*-security.md "$HERE"/results/*-security.json
