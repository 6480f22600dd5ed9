#!/usr/bin/env bash
# Memory of berth per idle workload: berth's own RSS (VmRSS of the berth
# process from /proc, not its children) with no workload, with one, and with
# N stdio workloads (`exec:///bin/cat`), all running, no MCP session open.
# Health pings are off (`[proxy] health_interval_secs = 0`), so nothing
# touches the workloads while they are measured.
#
#   bench/idle_rss.sh            # N=50
#   N=200 bench/idle_rss.sh
#
# Environment: N (default 50), SETTLE (seconds to wait before each reading,
# default 2), BENCH_SKIP_BUILD=1 (use the existing target/release/berth).
# Prints a Markdown table on stdout; progress on stderr. All traffic is on
# 127.0.0.1; state and configuration live in a temporary directory that is
# removed at the end (workloads deleted, berth stopped).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BERTH="$ROOT/target/release/berth"
N="${N:-50}"
SETTLE="${SETTLE:-2}"

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --bin berth) >&2
fi
[ -x "$BERTH" ] || { echo "idle_rss.sh: $BERTH missing" >&2; exit 1; }

log() { echo "idle_rss: $*" >&2; }

TMP="$(mktemp -d /tmp/berth-idle-rss.XXXXXX)"
mkdir -p "$TMP/state" "$TMP/config/berth"
cat > "$TMP/config/berth/berth.toml" <<'EOF'
[proxy]
health_interval_secs = 0
EOF
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
API="http://127.0.0.1:$PORT/api/v1beta"
BERTH_PID=""
CREATED=()

cleanup() {
  set +e
  if [ -n "$BERTH_PID" ] && kill -0 "$BERTH_PID" 2>/dev/null; then
    if [ "${#CREATED[@]}" -gt 0 ]; then
      log "deleting ${#CREATED[@]} workloads"
      for w in "${CREATED[@]}"; do
        curl -s -o /dev/null -X DELETE "$API/workloads/$w"
      done
      # deletes are asynchronous (202): wait until they are gone
      for _ in $(seq 1 300); do
        left=0
        for w in "${CREATED[@]}"; do
          code="$(curl -s -o /dev/null -w '%{http_code}' "$API/workloads/$w")"
          [ "$code" = 404 ] || left=$((left + 1))
        done
        [ "$left" = 0 ] && break
        sleep 0.2
      done
      [ "$left" = 0 ] || log "WARNING: $left workloads not deleted"
    fi
    log "stopping berth (pid $BERTH_PID)"
    kill -TERM "$BERTH_PID"
    for _ in $(seq 1 150); do kill -0 "$BERTH_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$BERTH_PID" 2>/dev/null && { log "berth did not stop, SIGKILL"; kill -KILL "$BERTH_PID"; }
    wait "$BERTH_PID" 2>/dev/null
  fi
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# kB of a /proc/<pid>/status field
field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
children_rss() { # summed VmRSS of berth's descendants (informational)
  python3 - "$1" <<'EOF'
import os, sys
root = int(sys.argv[1]); stack = [root]; seen = {root}; total = 0; n = 0
while stack:
    p = stack.pop()
    try: tasks = os.listdir("/proc/%d/task" % p)
    except OSError: continue
    for t in tasks:
        try: kids = open("/proc/%d/task/%s/children" % (p, t)).read().split()
        except OSError: continue
        for c in map(int, kids):
            if c in seen: continue
            seen.add(c); stack.append(c); n += 1
            try:
                for line in open("/proc/%d/status" % c):
                    if line.startswith("VmRSS:"): total += int(line.split()[1])
            except OSError: pass
print(n, total)
EOF
}
declare -A RSS THREADS FDS KIDS KIDS_RSS
sample() { # label
  sleep "$SETTLE"
  RSS[$1]="$(field "$BERTH_PID" VmRSS)"
  THREADS[$1]="$(field "$BERTH_PID" Threads)"
  FDS[$1]="$(ls "/proc/$BERTH_PID/fd" | wc -l)"
  read -r KIDS[$1] KIDS_RSS[$1] < <(children_rss "$BERTH_PID")
  log "$1: VmRSS ${RSS[$1]} KiB, ${THREADS[$1]} threads, ${FDS[$1]} fds, ${KIDS[$1]} child processes"
}

create() { # name
  local code
  code="$(curl -s -o "$TMP/create.out" -w '%{http_code}' "$API/workloads" \
    -H 'content-type: application/json' -d "{\"name\":\"$1\",\"image\":\"exec:///bin/cat\"}")"
  if [ "$code" != 201 ]; then
    log "create $1: HTTP $code: $(cat "$TMP/create.out")"
    exit 1
  fi
  CREATED+=("$1")
}
wait_running() { # names...
  local deadline=$((SECONDS + 60)) w st
  for w in "$@"; do
    while :; do
      st="$(curl -s "$API/workloads/$w/status" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))' 2>/dev/null || true)"
      [ "$st" = running ] && break
      if [ "$st" = error ] || [ "$SECONDS" -ge "$deadline" ]; then
        log "$w is '$st', not running"; exit 1
      fi
      sleep 0.1
    done
  done
}

log "berth serve on 127.0.0.1:$PORT, state in $TMP"
XDG_STATE_HOME="$TMP/state" XDG_CONFIG_HOME="$TMP/config" RUST_LOG="${RUST_LOG:-info}" \
  "$BERTH" serve --host 127.0.0.1 --port "$PORT" > "$TMP/berth.log" 2>&1 &
BERTH_PID=$!
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 204 ] && break
  kill -0 "$BERTH_PID" 2>/dev/null || { log "berth exited:"; cat "$TMP/berth.log" >&2; exit 1; }
  sleep 0.1
done
curl -s "$API/workloads" >/dev/null
sample before

create w1
wait_running w1
sample one

for i in $(seq 2 "$N"); do create "w$i"; done
names=(); for i in $(seq 1 "$N"); do names+=("w$i"); done
wait_running "${names[@]}"
sample all

per_all=$(awk -v a="${RSS[all]}" -v b="${RSS[before]}" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }')
per_marg=$(awk -v a="${RSS[all]}" -v b="${RSS[one]}" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / (n - 1) }')
verdict=$(awk -v x="$per_all" 'BEGIN { print (x <= 2048 ? "met" : "NOT met") }')

cat <<EOF
berth idle RSS, $N stdio workloads (exec:///bin/cat), no sessions, health pings off ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)

| state | berth VmRSS KiB | threads | open fds | child processes | children RSS KiB (info) |
|---|---:|---:|---:|---:|---:|
| no workload | ${RSS[before]} | ${THREADS[before]} | ${FDS[before]} | ${KIDS[before]} | ${KIDS_RSS[before]} |
| 1 workload running | ${RSS[one]} | ${THREADS[one]} | ${FDS[one]} | ${KIDS[one]} | ${KIDS_RSS[one]} |
| $N workloads running | ${RSS[all]} | ${THREADS[all]} | ${FDS[all]} | ${KIDS[all]} | ${KIDS_RSS[all]} |

| per idle workload | KiB |
|---|---:|
| (RSS with $N − RSS with none) / $N | $per_all |
| (RSS with $N − RSS with 1) / $((N - 1)) (marginal, first-use costs excluded) | $per_marg |

Target ≤ 2 MiB (2048 KiB) per idle workload: $verdict.
EOF
