#!/usr/bin/env bash
# bench/scaling.sh — coapgw's multi-core scaling (issue 17, item 7); run by `bench/compare.sh --scaling`.
#
# Usage: bench/scaling.sh [--quick] [--coapgwd PATH] [--bench PATH] [--out FILE]
# Splits the machine: the first half of the CPUs for the server, the other half for the load
# (coapgw-bench with one process per load CPU). coapgwd runs with threads 1, 2, 4, ... up to the
# server half, pinned to exactly that many CPUs; libcoap's coap-server (one thread) runs once on
# one CPU under the same load. Workloads: plain CoAP and DTLS requests, closed loop, 100 sessions
# x 8 outstanding per server thread, answered 4.04 (`GET /x`, no routes). Writes a Markdown table
# with the machine named and the exact commands to FILE (default bench/RESULTS-scaling.md), which
# compare.sh copies into RESULTS.md. On a 2-CPU machine only threads 1 fits (one CPU for the load).
# Loopback only; every run is bounded by --duration.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GWD=$ROOT/build/daemon/coapgwd
BENCH=$ROOT/build/bench/coapgw-bench
OUT=$ROOT/bench/RESULTS-scaling.md
DUR=10
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) DUR=3 ;;
    --coapgwd) GWD=$2; shift ;;
    --bench) BENCH=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: $0 [--quick] [--coapgwd PATH] [--bench PATH] [--out FILE]" >&2; exit 1 ;;
  esac
  shift
done
for binary in "$GWD" "$BENCH"; do [[ -x $binary ]] || { echo "missing $binary" >&2; exit 1; }; done
for tool in coap-server-notls coap-server-openssl taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

CPUS=$(nproc)
SERVER_CPUS=$(( CPUS / 2 > 0 ? CPUS / 2 : 1 ))
LOAD_FIRST=$(( CPUS > 1 ? SERVER_CPUS : 0 ))
if (( LOAD_FIRST == CPUS - 1 )); then LOAD_CPUS=$LOAD_FIRST; else LOAD_CPUS="$LOAD_FIRST-$((CPUS - 1))"; fi
LOAD_PROCS=$(( CPUS - LOAD_FIRST ))
THREADS=()
for (( t = 1; t <= SERVER_CPUS; t *= 2 )); do THREADS+=("$t"); done
PORT=$((30000 + RANDOM % 20000))
WORK=$(mktemp -d /tmp/coapgw-scaling.XXXXXX)
SERVER_PID=""
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[scaling $(date +%T)] $*" >&2; }

wait_bound() {  # wait_bound PORT: a listening (unconnected) UDP socket is bound to PORT (ss, as compare.sh)
  for _ in $(seq 100); do
    [[ -n $(ss -Huln "sport = :$1") ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited" >&2; return 1; }
    sleep 0.1
  done
  echo "server did not bind port $1" >&2
  return 1
}
stop_server() {
  [[ -z $SERVER_PID ]] && return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cpu_list() { (( $1 == 1 )) && echo 0 || echo "0-$(($1 - 1))"; }

declare -A RPS=() CPU_US=()
declare -a COMMANDS=()
measure() {  # measure KEY KIND TARGET SESSIONS
  local flag=() extra=""
  [[ $2 == dtls ]] && { flag=(--dtls --handshake-timeout 10); extra="--dtls --handshake-timeout 10 "; }
  COMMANDS+=("taskset -c $LOAD_CPUS coapgw-bench --mode requests ${extra}--server $3 --devices $4 --outstanding 8 --rate 0 --duration $DUR --procs $LOAD_PROCS --source-base 127.0.9.1 --server-pid \$SERVER_PID")
  log "${COMMANDS[-1]}"
  local line
  line=$(taskset -c "$LOAD_CPUS" "$BENCH" --mode requests "${flag[@]}" --server "$3" --devices "$4" --outstanding 8 \
    --rate 0 --duration "$DUR" --procs "$LOAD_PROCS" --source-base 127.0.9.1 --server-pid "$SERVER_PID" \
    2>>"$WORK/bench.log" | grep '^RESULT' || true)
  log "${line:-no result}"
  RPS[$1]=$(sed -n 's/.* rps=\([^ ]*\).*/\1/p' <<<"$line")
  CPU_US[$1]=$(sed -n 's/.* cpu_us_per_req=\([^ ]*\).*/\1/p' <<<"$line")
}

for t in "${THREADS[@]}"; do
  cat > "$WORK/gw.yaml" <<YAML
threads: $t
log: { level: warn }
listen: { coap: ["127.0.0.1:$PORT"], coaps: ["127.0.0.1:$((PORT + 1))"], admin: "" }
dtls:
  psk: { hint: "coapgw", keys: [ { identity: "bench", key: "bench-secret" } ], keys_file: "" }
  max_handshakes: 1000
  max_handshakes_per_ip: 0
sessions: { max: 400000, idle_timeout: 900s }
routes: []
YAML
  for kind in plain dtls; do
    taskset -c "$(cpu_list "$t")" "$GWD" --config "$WORK/gw.yaml" > "$WORK/coapgwd.log" 2>&1 &
    SERVER_PID=$!
    wait_bound $((PORT + 1))
    target=127.0.0.1:$PORT
    [[ $kind == dtls ]] && target=127.0.0.1:$((PORT + 1))
    measure "coapgw.$kind.$t" "$kind" "$target" $((100 * t))
    stop_server
  done
done
for kind in plain dtls; do
  if [[ $kind == dtls ]]; then
    taskset -c 0 coap-server-openssl -A 127.0.0.1 -p "$PORT" -k bench-secret -h coapgw -v 0 > "$WORK/libcoap.log" 2>&1 &
    SERVER_PID=$!
    wait_bound $((PORT + 1))
    measure "libcoap.dtls" dtls "127.0.0.1:$((PORT + 1))" 100
  else
    taskset -c 0 coap-server-notls -A 127.0.0.1 -p "$PORT" -v 0 > "$WORK/libcoap.log" 2>&1 &
    SERVER_PID=$!
    wait_bound "$PORT"
    measure "libcoap.plain" plain "127.0.0.1:$PORT" 100
  fi
  stop_server
done

speedup() {  # speedup A B -> A/B with 2 decimals, "-" if not numbers
  python3 -c '
import sys
try:
    print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}x")
except (ValueError, ZeroDivisionError):
    print("-")' "$1" "$2"
}
{
  echo "## Multi-core scaling (\`bench/compare.sh --scaling\`, issue 17 item 7)"
  echo ""
  echo "- machine: $CPUS CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/ {print $2}') GB RAM, kernel $(uname -r); $(date -u +%F)"
  echo "- server on CPUs 0..threads-1, load (coapgw-bench, --procs $LOAD_PROCS) on CPUs $LOAD_CPUS;"
  echo "  100 sessions x 8 outstanding per server thread, closed loop, ${DUR}s, \`GET /x\` answered 4.04"
  echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo ""
  echo "| server | plain req/s | speed-up | plain CPU/req (us) | DTLS req/s | speed-up | DTLS CPU/req (us) |"
  echo "|---|---|---|---|---|---|---|"
  for t in "${THREADS[@]}"; do
    echo "| coapgw threads $t | ${RPS[coapgw.plain.$t]:--} | $(speedup "${RPS[coapgw.plain.$t]:-}" "${RPS[coapgw.plain.1]:-}") | ${CPU_US[coapgw.plain.$t]:--} | ${RPS[coapgw.dtls.$t]:--} | $(speedup "${RPS[coapgw.dtls.$t]:-}" "${RPS[coapgw.dtls.1]:-}") | ${CPU_US[coapgw.dtls.$t]:--} |"
  done
  echo "| libcoap coap-server (1 thread) | ${RPS[libcoap.plain]:--} | | ${CPU_US[libcoap.plain]:--} | ${RPS[libcoap.dtls]:--} | | ${CPU_US[libcoap.dtls]:--} |"
  echo ""
  if (( SERVER_CPUS < 2 )); then
    echo "Only threads 1 fits on this machine (one CPU for the server, one for the load): the speed-up"
    echo "columns need a machine with more CPUs; run this script there."
    echo ""
  fi
  echo '```'
  echo "coapgw:  taskset -c 0..threads-1 coapgwd --config gw.yaml  # threads T, routes [], sessions.max 400000"
  echo "libcoap: taskset -c 0 coap-server-notls|coap-server-openssl -A 127.0.0.1 -p PORT [-k bench-secret -h coapgw] -v 0"
  printf '%s\n' "${COMMANDS[@]}" | sort -u
  echo '```'
} > "$OUT"
log "wrote $OUT"
cat "$OUT"
