#!/usr/bin/env bash
# bench/compare.sh — coapgwd against libcoap's coap-server, same machine, same workloads, one run.
#
# Builds Release, then for each workload starts coapgwd (threads: 1) and then libcoap's
# coap-server-notls / coap-server-openssl, each pinned to core 0, drives it with coapgw-bench
# pinned to core 1, stops the server by PID, and writes bench/RESULTS.md (tables with both
# servers, the ratio coapgw/libcoap, and the exact commands).
#
# Usage: bench/compare.sh [--quick] [--no-build] [--coapgwd PATH] [--bench PATH] [--out FILE]
#   --quick      smaller sizes and shorter windows (< 3 min); default run < 20 min
#   --no-build   use existing binaries (default paths: build/daemon/coapgwd, build/bench/coapgw-bench)
# Every request is `GET /x`: neither server has that resource, so both answer 4.04 from their
# own request path without application work (coapgwd runs with routes: []).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
QUICK=0
BUILD=1
GWD=""
BENCH=""
OUT=$ROOT/bench/RESULTS.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --coapgwd) GWD=$2; shift ;;
    --bench) BENCH=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: $0 [--quick] [--no-build] [--coapgwd PATH] [--bench PATH] [--out FILE]" >&2; exit 1 ;;
  esac
  shift
done
GWD=${GWD:-$BUILD_DIR/daemon/coapgwd}
BENCH=${BENCH:-$BUILD_DIR/bench/coapgw-bench}

if [[ $BUILD -eq 1 ]]; then
  "$ROOT/scripts/install-deps.sh"
  # GCC 12 at -O3 reports a false -Wrestrict inside libstdc++ for lib/coap/option.cpp.
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS="${COMPARE_CXXFLAGS:--Wno-error=restrict}" >/dev/null
  cmake --build "$BUILD_DIR" --target coapgwd coapgw-bench -j"$(nproc)"
fi
for binary in "$GWD" "$BENCH"; do [[ -x $binary ]] || { echo "missing $binary" >&2; exit 1; }; done
for tool in coap-server-notls coap-server-openssl taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

# ---- sizes ------------------------------------------------------------------------------------
if [[ $QUICK -eq 1 ]]; then
  DUR=3; REQ_DEVICES=50; HS_SLOTS=32; PLAIN_IDLE=(10000); DTLS_IDLE=5000; HELD=10000
else
  DUR=10; REQ_DEVICES=100; HS_SLOTS=64; PLAIN_IDLE=(10000 100000); DTLS_IDLE=10000; HELD=100000
fi
OFFERED=100000   # requests/s offered in the request workloads
K=8              # CON GETs outstanding per session
GW_COAP=127.0.0.1:25683
GW_COAPS=127.0.0.1:25684
LC_PORT=25700    # libcoap: plain on 25700, DTLS on 25701
LC_COAP=127.0.0.1:25700
LC_COAPS=127.0.0.1:25701
PSK_ID=bench
PSK_KEY=bench-secret

WORK=$(mktemp -d /tmp/coapgw-compare.XXXXXX)
SERVER_PID=""
HOLD_PID=""
cleanup() {
  [[ -n $HOLD_PID ]] && kill "$HOLD_PID" 2>/dev/null || true
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

log() { echo "[compare $(date +%T)] $*" >&2; }

port_bound() {  # port_bound PORT: the UDP port appears in /proc/net/udp
  grep -q ":$(printf '%04X' "$1") " /proc/net/udp
}
wait_bound() {
  for _ in $(seq 100); do
    port_bound "$1" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited" >&2; return 1; }
    sleep 0.1
  done
  echo "server did not bind port $1" >&2
  return 1
}

SERVER_CMD=""
start_coapgw() {  # start_coapgw SESSIONS_MAX
  cat > "$WORK/gw.yaml" <<YAML
threads: 1
log: { level: warn }
listen: { coap: ["$GW_COAP"], coaps: ["$GW_COAPS"], admin: "" }
dtls:
  psk: { hint: "coapgw", keys: [ { identity: "$PSK_ID", key: "$PSK_KEY" } ], keys_file: "" }
  max_handshakes: 1000
sessions: { max: $1, idle_timeout: 900s }
routes: []
YAML
  SERVER_CMD="taskset -c 0 $GWD --config gw.yaml  # gw.yaml: threads 1, routes [], sessions.max $1 (see compare.sh)"
  taskset -c 0 "$GWD" --config "$WORK/gw.yaml" > "$WORK/coapgwd.log" 2>&1 &
  SERVER_PID=$!
  wait_bound "${GW_COAPS##*:}"
}
start_libcoap() {  # start_libcoap plain|dtls
  if [[ $1 == dtls ]]; then
    SERVER_CMD="taskset -c 0 coap-server-openssl -A 127.0.0.1 -p $LC_PORT -k $PSK_KEY -h coapgw -v 0"
    taskset -c 0 coap-server-openssl -A 127.0.0.1 -p "$LC_PORT" -k "$PSK_KEY" -h coapgw -v 0 > "$WORK/libcoap.log" 2>&1 &
    SERVER_PID=$!
    wait_bound $((LC_PORT + 1))
  else
    SERVER_CMD="taskset -c 0 coap-server-notls -A 127.0.0.1 -p $LC_PORT -v 0"
    taskset -c 0 coap-server-notls -A 127.0.0.1 -p "$LC_PORT" -v 0 > "$WORK/libcoap.log" 2>&1 &
    SERVER_PID=$!
    wait_bound "$LC_PORT"
  fi
}
stop_server() {
  [[ -z $SERVER_PID ]] && return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

LAST=""
run_bench() {  # run_bench ARGS... ; sets LAST to the RESULT line, appends the command to COMMANDS
  local cmd="taskset -c 1 coapgw-bench $* --server-pid \$SERVER_PID"
  COMMANDS+=("$cmd")
  log "$cmd"
  LAST=$(taskset -c 1 "$BENCH" "$@" --server-pid "$SERVER_PID" 2>>"$WORK/bench.log" | grep '^RESULT' || true)
  log "${LAST:-no result}"
}
val() {  # val KEY LINE
  sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}
ratio() {  # ratio A B -> A/B with 2 decimals, "-" if not numbers
  /usr/bin/python3 -c '
import sys
try:
    a, b = float(sys.argv[1]), float(sys.argv[2])
    print(f"{a / b:.2f}" if b else "-")
except ValueError:
    print("-")' "$1" "$2"
}

declare -a COMMANDS=()
declare -A R=()   # R[workload.server] = RESULT line
declare -A CMD=() # CMD[workload.server] = server command
SECTIONS=()

# ---- workloads -------------------------------------------------------------------------------
plain_requests() {  # plain_requests SERVER TARGET
  run_bench --mode requests --server "$2" --devices "$REQ_DEVICES" --outstanding "$K" --rate "$OFFERED" --duration "$DUR"
  R[plain_req.$1]=$LAST
}
dtls_requests() {
  run_bench --mode requests --dtls --server "$2" --devices "$REQ_DEVICES" --outstanding "$K" --rate "$OFFERED" --duration "$DUR"
  R[dtls_req.$1]=$LAST
}
dtls_handshakes() {
  run_bench --mode handshake --dtls --server "$2" --devices "$HS_SLOTS" --duration "$DUR" --source-base 127.0.2.1
  R[dtls_hs.$1]=$LAST
}
plain_idle() {  # plain_idle SERVER TARGET N
  run_bench --mode hold --server "$2" --devices "$3" --open-rate 20000 --duration 2 --concurrency 500 --source-base 127.0.3.1
  R[plain_idle_$3.$1]=$LAST
}
dtls_idle() {
  run_bench --mode hold --dtls --server "$2" --devices "$DTLS_IDLE" --open-rate 4000 --duration 2 --source-base 127.0.4.1
  R[dtls_idle.$1]=$LAST
}
# CPU per DTLS request with 10 sessions, then again while HELD idle DTLS sessions are held open
# by a second bench process (no keep-alive during the window, so every server cycle is counted).
dtls_held() {  # dtls_held SERVER TARGET
  run_bench --mode requests --dtls --server "$2" --devices 10 --outstanding "$K" --rate 20000 --duration "$DUR" --source-base 127.0.5.1
  R[held_10.$1]=$LAST
  local hold_duration=$((DUR + 20))
  local hold_cmd="taskset -c 1 coapgw-bench --mode hold --dtls --server $2 --devices $HELD --open-rate 5000 --duration $hold_duration --source-base 127.0.6.1 --server-pid \$SERVER_PID &"
  COMMANDS+=("$hold_cmd")
  log "$hold_cmd"
  taskset -c 1 "$BENCH" --mode hold --dtls --server "$2" --devices "$HELD" --open-rate 5000 \
    --duration "$hold_duration" --source-base 127.0.6.1 --server-pid "$SERVER_PID" > "$WORK/hold.out" 2>>"$WORK/bench.log" &
  HOLD_PID=$!
  local limit=$((HELD / 2000 + 150))
  for _ in $(seq $((limit * 10))); do
    grep -q HOLD_READY "$WORK/hold.out" 2>/dev/null && break
    kill -0 "$HOLD_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "$(grep HOLD_READY "$WORK/hold.out" || echo 'hold did not get ready')"
  run_bench --mode requests --dtls --server "$2" --devices 10 --outstanding "$K" --rate 20000 --duration "$DUR" --source-base 127.0.5.1
  R[held_many.$1]=$LAST
  wait "$HOLD_PID" || true
  HOLD_PID=""
  R[held_hold.$1]=$(grep '^RESULT' "$WORK/hold.out" || true)
  log "${R[held_hold.$1]}"
}

workload() {  # workload NAME SERVER-KIND FUNCTION ARGS... (runs it against both servers)
  local name=$1 kind=$2 fn=$3
  shift 3
  log "== $name: coapgw"
  start_coapgw 400000
  CMD[$name.coapgw]=$SERVER_CMD
  local target=$GW_COAP
  [[ $kind == dtls ]] && target=$GW_COAPS
  "$fn" coapgw "$target" "$@"
  stop_server
  log "== $name: libcoap"
  start_libcoap "$kind"
  CMD[$name.libcoap]=$SERVER_CMD
  target=$LC_COAP
  [[ $kind == dtls ]] && target=$LC_COAPS
  "$fn" libcoap "$target" "$@"
  stop_server
}

START=$(date +%s)
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
COMMANDS=(); workload plain_req plain plain_requests; C_PLAIN_REQ=("${COMMANDS[@]}")
COMMANDS=(); workload dtls_req dtls dtls_requests; C_DTLS_REQ=("${COMMANDS[@]}")
COMMANDS=(); workload dtls_hs dtls dtls_handshakes; C_DTLS_HS=("${COMMANDS[@]}")
C_PLAIN_IDLE=()
for n in "${PLAIN_IDLE[@]}"; do
  COMMANDS=(); workload "plain_idle_$n" plain plain_idle "$n"; C_PLAIN_IDLE+=("${COMMANDS[@]}")
done
COMMANDS=(); workload dtls_idle dtls dtls_idle; C_DTLS_IDLE=("${COMMANDS[@]}")
COMMANDS=(); workload held dtls dtls_held; C_HELD=("${COMMANDS[@]}")
ELAPSED=$(( $(date +%s) - START ))

# ---- RESULTS.md ------------------------------------------------------------------------------
row() {  # row LABEL KEY WORKLOAD [better: low|high]
  local a b
  a=$(val "$2" "${R[$3.coapgw]:-}")
  b=$(val "$2" "${R[$3.libcoap]:-}")
  echo "| $1 | ${a:--} | ${b:--} | $(ratio "${a:-x}" "${b:-x}") |"
}
table_head() { echo "| metric | coapgw | libcoap | coapgw / libcoap |"; echo "|---|---:|---:|---:|"; }
commands() {  # commands WORKLOAD CMD...
  local w=$1; shift
  echo ""
  echo "Commands (server pinned to core 0, load to core 1):"
  echo '```'
  echo "coapgw:  ${CMD[$w.coapgw]:-}"
  echo "libcoap: ${CMD[$w.libcoap]:-}"
  local c
  for c in "$@"; do echo "$c"; done
  echo '```'
}

{
  echo "# coapgw vs libcoap: side-by-side results"
  echo ""
  echo "Generated by \`bench/compare.sh$([[ $QUICK -eq 1 ]] && echo ' --quick')\` on $(date -u '+%Y-%m-%d %H:%M UTC') in ${ELAPSED}s."
  echo ""
  echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/ {print $2}') GB RAM, kernel $(uname -r)"
  echo "- load average at start: $LOAD_AT_START (the machine may be shared; figures are noisy when it is)"
  echo "- coapgwd: $("$GWD" --version 2>&1 | head -1) (Release, threads: 1, routes: [])"
  echo "- libcoap: $(coap-server-notls -? 2>&1 | sed -n 's/^coap-server-notls \(v[^ ]*\).*/\1/p' | head -1), $(coap-server-openssl -? 2>&1 | grep 'TLS Library' | head -1 | sed 's/^ *//')"
  echo "- OpenSSL: $(openssl version)"
  echo "- request: CON \`GET /x\`, answered 4.04 by both servers (no such resource; no application work)."
  echo "  CPU figures are the server's utime+stime from /proc/PID/stat over the measured window,"
  echo "  divided by the requests (or handshake cycles) answered in it; 10 ms tick resolution."
  echo "- ratio column: coapgw / libcoap (below 1 = coapgw uses less / is lower)."
  echo ""
  echo "## Plain CoAP requests, $OFFERED/s offered ($REQ_DEVICES sessions x $K outstanding, ${DUR}s)"
  echo ""
  table_head
  row "answered requests/s" rps plain_req
  row "server CPU per request (us)" cpu_us_per_req plain_req
  row "server CPU (% of one core)" server_cpu_pct plain_req
  row "latency p50 (us)" p50_us plain_req
  row "latency p99 (us)" p99_us plain_req
  row "latency max (us)" max_us plain_req
  row "timeouts" timeouts plain_req
  commands plain_req "${C_PLAIN_REQ[@]}"
  echo ""
  echo "## DTLS (PSK-AES128-CCM8) requests, $OFFERED/s offered ($REQ_DEVICES sessions x $K outstanding, ${DUR}s)"
  echo ""
  table_head
  row "answered requests/s" rps dtls_req
  row "server CPU per request (us)" cpu_us_per_req dtls_req
  row "server CPU (% of one core)" server_cpu_pct dtls_req
  row "latency p50 (us)" p50_us dtls_req
  row "latency p99 (us)" p99_us dtls_req
  row "timeouts" timeouts dtls_req
  commands dtls_req "${C_DTLS_REQ[@]}"
  echo ""
  echo "## DTLS handshakes ($HS_SLOTS parallel: cookie exchange, PSK handshake, one GET, close_notify; ${DUR}s)"
  echo ""
  table_head
  row "handshake cycles/s" hs_per_s dtls_hs
  row "server CPU per handshake cycle (us)" cpu_us_per_hs dtls_hs
  row "server CPU (% of one core)" server_cpu_pct dtls_hs
  row "cycle latency p50 (us)" p50_us dtls_hs
  row "cycle latency p99 (us)" p99_us dtls_hs
  row "handshake failures" handshake_failures dtls_hs
  commands dtls_hs "${C_DTLS_HS[@]}"
  echo ""
  echo "## Memory per idle plain CoAP session (server RSS growth / sessions opened)"
  echo ""
  table_head
  for n in "${PLAIN_IDLE[@]}"; do
    row "$n sessions: bytes per session" rss_per_session_b "plain_idle_$n"
    row "$n sessions: opened" opened "plain_idle_$n"
    row "$n sessions: answering after the hold" verified "plain_idle_$n"
  done
  commands "plain_idle_${PLAIN_IDLE[0]}" "${C_PLAIN_IDLE[@]}"
  echo ""
  echo "## Memory per established DTLS session ($DTLS_IDLE sessions)"
  echo ""
  table_head
  row "bytes per session" rss_per_session_b dtls_idle
  row "opened" opened dtls_idle
  row "answering after the hold (same session, no new handshake)" verified dtls_idle
  commands dtls_idle "${C_DTLS_IDLE[@]}"
  echo ""
  echo "## DTLS CPU per request: 10 sessions, then 10 sessions while $HELD idle DTLS sessions are held"
  echo ""
  table_head
  row "10 sessions: server CPU per request (us)" cpu_us_per_req held_10
  row "10 sessions: answered requests/s" rps held_10
  row "with $HELD held: server CPU per request (us)" cpu_us_per_req held_many
  row "with $HELD held: answered requests/s" rps held_many
  row "with $HELD held: p99 latency (us)" p99_us held_many
  row "held sessions opened" opened held_hold
  row "held sessions answering at the end" verified held_hold
  row "held: server RSS per session (bytes)" rss_per_session_b held_hold
  for s in coapgw libcoap; do
    a=$(val cpu_us_per_req "${R[held_many.$s]:-}"); b=$(val cpu_us_per_req "${R[held_10.$s]:-}")
    echo "| $s: CPU per request with $HELD held / with 10 | $(ratio "${a:-x}" "${b:-x}") | | |"
  done
  commands held "${C_HELD[@]}"
  echo ""
  echo "## Raw RESULT lines"
  echo ""
  echo '```'
  for k in $(printf '%s\n' "${!R[@]}" | sort); do echo "$k: ${R[$k]}"; done
  echo '```'
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "wrote $OUT in ${ELAPSED}s"
