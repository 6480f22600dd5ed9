#!/usr/bin/env bash
# The binary a user downloads: a release build whose debug information (line
# tables of berth's own crates, see [profile.release]) is split off into
# `berth.debug` beside it. The binary keeps a `.gnu_debuglink` to that file,
# so Rust's backtraces, gdb and addr2line find function names and lines when
# it is present; without it the binary runs the same. Fails when the binary
# is over the 40 MiB download budget.
#
#   bash scripts/dist.sh [out-dir]     (default target/dist)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/dist}
budget=$((40 * 1024 * 1024))

cargo build --release --locked --bin berth
mkdir -p "$out"
rm -f "$out/berth" "$out/berth.debug"
objcopy --only-keep-debug target/release/berth "$out/berth.debug"
# The link names the file only; debuggers look beside the binary.
(cd "$out" && objcopy --strip-all --add-gnu-debuglink=berth.debug \
  "$OLDPWD/target/release/berth" berth)
chmod 0755 "$out/berth"

size=$(stat -c %s "$out/berth")
debug=$(stat -c %s "$out/berth.debug")
awk -v s="$size" -v d="$debug" 'BEGIN {
  printf "berth: %d bytes (%.1f MiB, budget 40 MiB); berth.debug: %.1f MiB\n", s, s / 1048576, d / 1048576 }'
readelf --string-dump=.gnu_debuglink "$out/berth" | grep -q berth.debug \
  || { echo "no .gnu_debuglink in $out/berth" >&2; exit 1; }
"$out/berth" --version >/dev/null
if [ "$size" -gt "$budget" ]; then
  echo "berth is over its 40 MiB download budget" >&2
  exit 1
fi
