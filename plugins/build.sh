#!/usr/bin/env bash
# Builds berth's plugins and test guests as WebAssembly components and
# prints the paths of the .wasm files.
#
#   plugins/build.sh            release build of the whole plugins workspace
#   plugins/build.sh -p NAME    extra cargo arguments are passed on
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

cargo build --release --target wasm32-wasip2 --workspace "$@"

shopt -s nullglob
for wasm in "$PWD"/target/wasm32-wasip2/release/*.wasm; do
    echo "$wasm"
done
