#!/usr/bin/env bash
# Benchmarks `berth bridge` with the shared MCP proxy kit (../shared/bench),
# in the same run as the kit's rows (direct stdio floor, client ceiling and,
# unless --no-peers, the peers), so that every row sees the same machine load.
#
#   bench/run.sh                      # build berth (release), 3 reps, peers + berth (~35 min)
#   bench/run.sh --quick              # 1 rep, short runs: smoke test
#   bench/run.sh --reps 1 --no-peers  # stdio floor + client ceiling + berth only
#
# Every argument is passed to the kit's run.py (--reps, --quick, --no-peers,
# --only, --scenarios, --duration, --tag, ...). Results: bench/results/<date>-<tag>.json
# and .md (tag defaults to "berth"); the proxy logs of this run are copied
# from the kit's results/logs/<date>/ to bench/results/logs/<date>/.
#
# Environment: BENCH_KIT (default ../shared/bench), BENCH_SKIP_BUILD=1 to use
# the existing target/release/berth, BENCH_SKIP_SETUP=1 to skip the kit's
# setup.sh (peers into the kit's .deps cache, load generator build).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
KIT="$(cd "${BENCH_KIT:-$ROOT/../shared/bench}" && pwd)"
BERTH="$ROOT/target/release/berth"
# berth's own build honours CARGO_TARGET_DIR only if it is the default one,
# since the template below names target/release/berth.
if [ -n "${CARGO_TARGET_DIR:-}" ] && [ "$(realpath -m "$CARGO_TARGET_DIR")" != "$ROOT/target" ]; then
  echo "bench/run.sh: CARGO_TARGET_DIR=$CARGO_TARGET_DIR is not $ROOT/target; unset it" >&2
  exit 2
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "bench/run.sh: cargo build --release --bin berth" >&2
  (cd "$ROOT" && cargo build --release --bin berth)
fi
[ -x "$BERTH" ] || { echo "bench/run.sh: $BERTH missing" >&2; exit 1; }

# The kit's setup.sh builds its load generator with `cargo build
# --manifest-path`; an inherited CARGO_TARGET_DIR would put it where run.py
# does not look. Its peers go to the kit's own (git-ignored) .deps cache and
# are only checked when already installed.
if [ "${BENCH_SKIP_SETUP:-0}" != 1 ]; then
  env -u CARGO_TARGET_DIR bash "$KIT/setup.sh"
fi

mkdir -p "$HERE/results"
marker="$(mktemp /tmp/berth-bench-start.XXXXXX)"
trap 'rm -f "$marker"' EXIT

# No shell runs the template: the measured pid is berth itself.
# Later --tag/--out in "$@" win over these defaults (argparse: last one wins).
status=0
BENCH_SKIP_SETUP=1 bash "$KIT/run.sh" \
  --tag berth --out "$HERE/results" \
  --target "berth=$BERTH bridge --port {port} -- {backend_argv}" \
  "$@" || status=$?

# run.py always writes proxy logs under the kit's results/logs/<date>/:
# copy those written by this run next to our results.
if [ -d "$KIT/results/logs" ]; then
  while IFS= read -r -d '' f; do
    rel="${f#"$KIT/results/logs/"}"
    mkdir -p "$HERE/results/logs/$(dirname "$rel")"
    cp -p "$f" "$HERE/results/logs/$rel"
  done < <(find "$KIT/results/logs" -type f -newer "$marker" -print0)
  echo "bench/run.sh: proxy logs of this run copied to $HERE/results/logs/" >&2
fi
exit "$status"
