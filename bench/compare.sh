#!/usr/bin/env bash
# bench/compare.sh — coapgwd against libcoap's coap-server, same machine, same workloads, one run.
#
# Builds Release, then for each workload starts coapgwd (threads: 1) and then libcoap's
# coap-server-notls / coap-server-openssl, each pinned to core 0, drives it with coapgw-bench
# pinned to core 1, stops the server by PID, and writes bench/RESULTS.md (tables with both
# servers, the ratio coapgw/libcoap, and the exact commands).
#
# Usage: bench/compare.sh [--quick] [--long-hold] [--keys] [--scaling] [--million] [--quiet-traffic] [--render-only]
#                         [--no-build] [--coapgwd PATH] [--bench PATH] [--out FILE]
#   --quick       smaller sizes and shorter windows (< 3 min); default run < 20 min
#   --long-hold   only the 10-minute hold of 100,000 DTLS sessions with keep-alive (~13 min, coapgw
#                 only); its figures go to bench/RESULTS-long-hold.state and into RESULTS.md
#   --render-only rewrite RESULTS.md from the figures of the last run (bench/RESULTS.state)
#   --no-build    use existing binaries (default paths: build/daemon/coapgwd, build/bench/coapgw-bench)
#   --keys        only the PSK keys-file figures (issue 17): bench/keys_memory.py at 200,000 and
#                 1,000,000 keys (RSS per key, load and reload time, CoAP pings during the reloads;
#                 ~1 min); the figures are in bench/NOTES.md, "A million PSK keys"
#   --scaling     only the multi-core table (bench/scaling.sh, issue 17 item 7): coapgwd threads 1, 2,
#                 4, ... on half the CPUs with the load on the other half, libcoap beside; writes
#                 bench/RESULTS-scaling.md, which the full run copies into RESULTS.md (~1 min per row)
#   --million     only the storm (bench/million.sh, issue 17 items 1-3): 1,000,000 DTLS devices
#                 arriving at once at coapgwd (threads 2), then 20,000 at libcoap's coap-server-openssl
#                 (what it can take), each retrying until its set-up deadline, held and verified;
#                 writes bench/RESULTS-million.md (bench/million_report.sh), which the full run copies
#                 into RESULTS.md (~15 min here; --quick: 100,000 and 5,000)
#   --quiet-traffic only the two plain request workloads (100 x 8 and 10 x 4), both servers, one round
#                 (~50 s; RESULTS.md is not touched): prints the CPU per request of each and the ratio
#                 10 x 4 / 100 x 8; bench/NOTES.md, "Cheaper quiet traffic", has three rounds of it
# Besides the side-by-side workloads, coapgw alone: threads 2 vs 1, sessions.max below the offered
# count (eviction, checked on the admin /metrics), and forwarding to a local nginx (`return 200`,
# Debian's nginx-light) compared with nginx measured directly by wrk. bench/NOTES.md (hand-written
# observations and the profile) is copied into RESULTS.md.
# Every request is `GET /x`: neither server has that resource, so both answer 4.04 from their
# own request path without application work (coapgwd runs with routes: []).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
QUICK=0
LONG=0
QUIET_ONLY=0
KEYS=0
SCALING=0
MILLION=0
RENDER_ONLY=0
BUILD=1
GWD=""
BENCH=""
OUT=$ROOT/bench/RESULTS.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --long-hold) LONG=1 ;;
    --keys) KEYS=1 ;;
    --scaling) SCALING=1 ;;
    --million) MILLION=1 ;;
    --quiet-traffic) QUIET_ONLY=1 ;;
    --render-only) RENDER_ONLY=1; BUILD=0 ;;
    --no-build) BUILD=0 ;;
    --coapgwd) GWD=$2; shift ;;
    --bench) BENCH=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: $0 [--quick] [--long-hold] [--keys] [--scaling] [--million] [--quiet-traffic] [--render-only] [--no-build] [--coapgwd PATH] [--bench PATH] [--out FILE]" >&2; exit 1 ;;
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
if [[ $KEYS -eq 1 ]]; then
  exec python3 "$ROOT/bench/keys_memory.py" --coapgwd "$GWD" 200000 1000000
fi
if [[ $SCALING -eq 1 ]]; then
  exec "$ROOT/bench/scaling.sh" $([[ $QUICK -eq 1 ]] && echo --quick) --coapgwd "$GWD" --bench "$BENCH"
fi
if [[ $MILLION -eq 1 ]]; then
  command -v coap-server-openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y libcoap3-bin >/dev/null
  storm_gw=1000000 storm_libcoap=20000
  [[ $QUICK -eq 1 ]] && { storm_gw=100000; storm_libcoap=5000; }
  GWD=$GWD BENCH=$BENCH STATE=$ROOT/bench/RESULTS-million-coapgw.state "$ROOT/bench/million.sh" "$storm_gw" 1000 2
  GWD=$GWD BENCH=$BENCH SERVER=libcoap IN_FLIGHT=4000 SETUP_DEADLINE=180 STATE=$ROOT/bench/RESULTS-million-libcoap.state \
    "$ROOT/bench/million.sh" "$storm_libcoap"
  "$ROOT/bench/million_report.sh" "$ROOT/bench/RESULTS-million-coapgw.state" "$ROOT/bench/RESULTS-million-libcoap.state" \
    > "$ROOT/bench/RESULTS-million.md"
  cat "$ROOT/bench/RESULTS-million.md"
  exit 0
fi
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  # Forwarding workload: a fast local HTTP upstream and a load tool to measure it directly.
  DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light wrk >/dev/null
fi
for binary in "$GWD" "$BENCH"; do [[ -x $binary ]] || { echo "missing $binary" >&2; exit 1; }; done
for tool in coap-server-notls coap-server-openssl taskset nginx wrk curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

# ---- sizes ------------------------------------------------------------------------------------
if [[ $QUICK -eq 1 ]]; then
  DUR=3; REQ_DEVICES=50; HS_SLOTS=32; PLAIN_IDLE=(10000); DTLS_IDLE=5000; HELD=10000
  EVICT_MAX=5000; EVICT_EXTRA=1000
else
  DUR=10; REQ_DEVICES=100; HS_SLOTS=64; PLAIN_IDLE=(10000 100000); DTLS_IDLE=10000; HELD=100000
  EVICT_MAX=50000; EVICT_EXTRA=10000
fi
LONG_SESSIONS=100000; LONG_SECONDS=600; LONG_KEEPALIVE=60   # --long-hold
GW_ADMIN=127.0.0.1:25690
UPSTREAM_PORT=25800  # nginx for the forwarding workload
OFFERED=100000   # requests/s offered in the request workloads
K=8              # CON GETs outstanding per session
QUIET_DEVICES=10; QUIET_K=4   # quiet traffic (issue 17, item 6): few sessions, few outstanding, same offer
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
NGINX_PID=""
cleanup() {
  [[ -n $HOLD_PID ]] && kill "$HOLD_PID" 2>/dev/null || true
  [[ -n $NGINX_PID ]] && kill "$NGINX_PID" 2>/dev/null || true
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

log() { echo "[compare $(date +%T)] $*" >&2; }

port_bound() {  # port_bound PORT: an unconnected UDP socket is bound to PORT. Asked of the kernel with a
  # filter (ss), not read from /proc/net/udp: that file lists every socket of the machine (slow beside a
  # million-session bench), and a load tool's socket whose source or destination port is PORT is no server.
  [[ -n $(ss -Huln "sport = :$1") ]]
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
start_coapgw() {  # start_coapgw SESSIONS_MAX [THREADS [CPUS [ADMIN [ROUTES]]]]
  local threads=${2:-1} cpus=${3:-0} admin=${4:-} routes=${5:-[]}
  cat > "$WORK/gw.yaml" <<YAML
threads: $threads
log: { level: warn }
listen: { coap: ["$GW_COAP"], coaps: ["$GW_COAPS"], admin: "$admin" }
dtls:
  psk: { hint: "coapgw", keys: [ { identity: "$PSK_ID", key: "$PSK_KEY" } ], keys_file: "" }
  max_handshakes: 1000
sessions: { max: $1, idle_timeout: 900s }
routes: $routes
YAML
  local note="threads $threads, routes $routes, sessions.max $1"
  [[ -n $admin ]] && note+=", admin $admin"
  SERVER_CMD="taskset -c $cpus $GWD --config gw.yaml  # gw.yaml: $note (see compare.sh)"
  taskset -c "$cpus" "$GWD" --config "$WORK/gw.yaml" > "$WORK/coapgwd.log" 2>&1 &
  SERVER_PID=$!
  wait_bound "${GW_COAPS##*:}"
}
metric() {  # metric NAME [LABEL-SUBSTRING]: sum of the samples of NAME on coapgwd's admin /metrics
  curl -s --max-time 5 "http://$GW_ADMIN/metrics" | awk -v name="$1" -v want="${2:-}" '
    ($1 == name || index($1, name "{") == 1) && index($1, want) { sum += $NF } END { printf "%d\n", sum }'
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

verdict() {  # verdict VALUE OP LIMIT -> met / not met / not measured
  /usr/bin/python3 -c '
import sys
try:
    v, op, lim = float(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    print("met" if (v <= lim if op == "<=" else v >= lim if op == ">=" else v == lim if op == "==" else v > lim) else "**not met**")
except ValueError:
    print("not measured")' "$1" "$2" "$3"
}
sub() {  # sub A B -> A-B, "-" if not numbers
  /usr/bin/python3 -c '
import sys
try:
    print(f"{float(sys.argv[1]) - float(sys.argv[2]):.0f}")
except ValueError:
    print("-")' "$1" "$2"
}
kv() {  # kv KEY "k=v k=v": value of KEY in a space-separated k=v string
  sed -n "s/.*\(^\| \)$1=\([^ ]*\).*/\2/p" <<<"$2"
}

declare -a COMMANDS=()
declare -A R=()   # R[workload.server] = RESULT line
declare -A CMD=() # CMD[workload.server] = server command
declare -A E=()   # eviction figures from /metrics
declare -A L=()   # long-hold figures
C_THREADS=(); C_EVICT=(); C_FWD=(); C_PLAIN_QUIET=()
STATE=${OUT%.md}.state
LONG_STATE=$(dirname "$OUT")/RESULTS-long-hold.state

# ---- workloads -------------------------------------------------------------------------------
plain_requests() {  # plain_requests SERVER TARGET
  run_bench --mode requests --server "$2" --devices "$REQ_DEVICES" --outstanding "$K" --rate "$OFFERED" --duration "$DUR"
  R[plain_req.$1]=$LAST
}
# The same offer from 10 sessions x 4 outstanding: each wake-up of the server finds a few datagrams,
# so what a wake-up costs (epoll, the recvmmsg/sendmmsg calls, waking the load tool) is paid by fewer
# requests than at 100 x 8.
plain_quiet() {
  run_bench --mode requests --server "$2" --devices "$QUIET_DEVICES" --outstanding "$QUIET_K" --rate "$OFFERED" --duration "$DUR"
  R[plain_quiet.$1]=$LAST
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
  local hold_duration=$((2 * DUR + 25))  # requests, then handshakes, while the sessions are held
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
  run_bench --mode handshake --dtls --server "$2" --devices "$HS_SLOTS" --duration "$DUR" --source-base 127.0.2.1
  R[held_hs.$1]=$LAST
  wait "$HOLD_PID" || true
  HOLD_PID=""
  R[held_hold.$1]=$(grep '^RESULT' "$WORK/hold.out" || true)
  log "${R[held_hold.$1]}"
}

# ---- coapgw-only workloads ---------------------------------------------------------------------
# threads: 2 vs threads: 1. Both servers may use both cores (taskset -c 0,1) and so does the load
# (taskset -c 0,1): with two workers pinned to core 0 the second one could not run at all.
threads_compare() {
  local t kind
  for t in 1 2; do
    for kind in plain dtls; do
      log "== threads $t: $kind"
      start_coapgw 400000 "$t" 0,1
      CMD[thr_$kind.$t]=$SERVER_CMD
      local target=$GW_COAP flag=()
      [[ $kind == dtls ]] && { target=$GW_COAPS; flag=(--dtls); }
      [[ $kind == dtls ]] && flag+=(--handshake-timeout 10)  # a lost flight costs 10 s, not 30
      local cmd="taskset -c 0,1 coapgw-bench --mode requests ${flag[*]} --server $target --devices $REQ_DEVICES --outstanding $K --rate $OFFERED --duration $DUR --server-pid \$SERVER_PID"
      C_THREADS+=("$cmd")
      log "$cmd"
      R[thr_$kind.$t]=$(taskset -c 0,1 "$BENCH" --mode requests "${flag[@]}" --server "$target" --devices "$REQ_DEVICES" \
        --outstanding "$K" --rate "$OFFERED" --duration "$DUR" --server-pid "$SERVER_PID" 2>>"$WORK/bench.log" | grep '^RESULT' || true)
      log "${R[thr_$kind.$t]:-no result}"
      stop_server
    done
  done
}

# sessions.max below the offered count: EVICT_EXTRA plain sessions opened first (held, never
# contacted again), then EVICT_MAX more; the first ones must be the evicted ones, counted, and the
# last EVICT_MAX must answer on their existing session (sessions_created_total does not grow).
eviction() {
  log "== eviction: sessions.max $EVICT_MAX, $((EVICT_MAX + EVICT_EXTRA)) offered"
  start_coapgw "$EVICT_MAX" 1 0 "$GW_ADMIN"
  CMD[evict]=$SERVER_CMD
  local first_cmd="taskset -c 1 coapgw-bench --mode hold --server $GW_COAP --devices $EVICT_EXTRA --open-rate 20000 --concurrency 500 --duration 40 --verify-from $EVICT_EXTRA --source-base 127.0.7.1 &"
  local second_cmd="taskset -c 1 coapgw-bench --mode hold --server $GW_COAP --devices $EVICT_MAX --open-rate 20000 --concurrency 500 --duration 5 --source-base 127.0.8.1 --server-pid \$SERVER_PID"
  C_EVICT=("$first_cmd" "$second_cmd")
  log "$first_cmd"
  taskset -c 1 "$BENCH" --mode hold --server "$GW_COAP" --devices "$EVICT_EXTRA" --open-rate 20000 --concurrency 500 \
    --duration 40 --verify-from "$EVICT_EXTRA" --source-base 127.0.7.1 > "$WORK/evict1.out" 2>>"$WORK/bench.log" &
  HOLD_PID=$!
  for _ in $(seq 600); do
    grep -q HOLD_READY "$WORK/evict1.out" 2>/dev/null && break
    kill -0 "$HOLD_PID" 2>/dev/null || break
    sleep 0.1
  done
  E[created_first]=$(metric coapgw_sessions_created_total)
  log "$second_cmd"
  taskset -c 1 "$BENCH" --mode hold --server "$GW_COAP" --devices "$EVICT_MAX" --open-rate 20000 --concurrency 500 \
    --duration 5 --source-base 127.0.8.1 --server-pid "$SERVER_PID" > "$WORK/evict2.out" 2>>"$WORK/bench.log" &
  local second=$!
  for _ in $(seq 600); do
    grep -q HOLD_READY "$WORK/evict2.out" 2>/dev/null && break
    kill -0 "$second" 2>/dev/null || break
    sleep 0.1
  done
  E[created_open]=$(metric coapgw_sessions_created_total)
  E[evicted_open]=$(metric coapgw_sessions_closed_total 'reason="evicted"')
  E[active_open]=$(metric coapgw_sessions)
  wait "$second" || true
  E[created_end]=$(metric coapgw_sessions_created_total)
  E[evicted_end]=$(metric coapgw_sessions_closed_total 'reason="evicted"')
  E[closed_end]=$(metric coapgw_sessions_closed_total)
  R[evict.coapgw]=$(grep '^RESULT' "$WORK/evict2.out" || true)
  log "eviction: ${E[*]} ${R[evict.coapgw]:-no result}"
  wait "$HOLD_PID" || true
  HOLD_PID=""
  stop_server
}

# Forwarding to a local HTTP upstream (issue 5 item 8): nginx answering `return 200 "ok"`, first
# measured directly with wrk, then through coapgw (route /api -> nginx, GET /api/x), one request
# in flight (added latency) and 64 in flight (throughput).
start_nginx() {
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UPSTREAM_PORT; location / { return 200 "ok"; } }
}
NGINX
  taskset -c 0 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -e "$WORK/nginx/error.log" &
  NGINX_PID=$!
  for _ in $(seq 50); do
    grep -q ":$(printf '%04X' "$UPSTREAM_PORT") 00000000:0000 0A" /proc/net/tcp && return 0
    sleep 0.1
  done
  echo "nginx did not listen" >&2
  return 1
}
wrk_result() {  # wrk_result CONNECTIONS -> "rps=.. p50_us=.. p99_us=.."
  taskset -c 1 wrk -t1 -c"$1" -d"${DUR}s" --latency "http://127.0.0.1:$UPSTREAM_PORT/api/x" 2>&1 | /usr/bin/python3 -c '
import re, sys
text = sys.stdin.read()
def us(v, unit): return float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
q = {m.group(1): us(m.group(2), m.group(3)) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
p50, p99 = q.get("50", 0), q.get("99", 0)
print(f"rps={float(rps.group(1)):.0f} p50_us={p50:.0f} p99_us={p99:.0f}" if rps else "rps=- p50_us=- p99_us=-")' \
    || echo "rps=- p50_us=- p99_us=-"
}
forwarding() {
  log "== forwarding: nginx on 127.0.0.1:$UPSTREAM_PORT"
  start_nginx
  local c
  for c in 1 64; do
    C_FWD+=("taskset -c 1 wrk -t1 -c$c -d${DUR}s --latency http://127.0.0.1:$UPSTREAM_PORT/api/x")
    R[fwd_direct_$c]=$(wrk_result "$c")
    log "direct c=$c: ${R[fwd_direct_$c]}"
  done
  start_coapgw 400000 1 0 "" "[ { prefix: \"/api\", upstream: \"http://127.0.0.1:$UPSTREAM_PORT\", timeout: 5s, max_in_flight: 1024 } ]"
  CMD[fwd]=$SERVER_CMD
  # One session may not reuse a message id within EXCHANGE_LIFETIME (247 s): closed loop it would
  # wrap its 65,536 ids in ~10 s, so the single-request run is offered 5,000/s.
  run_bench --mode requests --server "$GW_COAP" --path api/x --devices 1 --outstanding 1 --rate 5000 --duration "$DUR" --source-base 127.0.9.1
  R[fwd_gw_1]=$LAST
  run_bench --mode requests --server "$GW_COAP" --path api/x --devices 8 --outstanding 8 --duration "$DUR" --source-base 127.0.9.1
  R[fwd_gw_64]=$LAST
  C_FWD+=("${COMMANDS[@]}")
  stop_server
  kill "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=""
}

# --long-hold: LONG_SESSIONS DTLS sessions held LONG_SECONDS with a keep-alive GET per session every
# LONG_KEEPALIVE s, then each verified on its existing session (no new handshake: the gateway's
# sessions_created_total and handshakes must not grow after the sessions are open).
long_hold() {
  log "== long hold: $LONG_SESSIONS DTLS sessions, ${LONG_SECONDS}s, keep-alive every ${LONG_KEEPALIVE}s"
  start_coapgw 400000 1 0 "$GW_ADMIN"
  L[server]=$SERVER_CMD
  L[cmd]="taskset -c 1 coapgw-bench --mode hold --dtls --server $GW_COAPS --devices $LONG_SESSIONS --open-rate 5000 --keepalive $LONG_KEEPALIVE --duration $LONG_SECONDS --source-base 127.0.10.1 --server-pid \$SERVER_PID"
  log "${L[cmd]}"
  taskset -c 1 "$BENCH" --mode hold --dtls --server "$GW_COAPS" --devices "$LONG_SESSIONS" --open-rate 5000 \
    --keepalive "$LONG_KEEPALIVE" --duration "$LONG_SECONDS" --source-base 127.0.10.1 --server-pid "$SERVER_PID" \
    > "$WORK/long.out" 2>>"$WORK/bench.log" &
  HOLD_PID=$!
  for _ in $(seq 3000); do
    grep -q HOLD_READY "$WORK/long.out" 2>/dev/null && break
    kill -0 "$HOLD_PID" 2>/dev/null || break
    sleep 0.1
  done
  L[created_open]=$(metric coapgw_sessions_created_total)
  L[handshakes_open]=$(metric coapgw_dtls_handshakes_total)
  wait "$HOLD_PID" || true
  HOLD_PID=""
  L[created_end]=$(metric coapgw_sessions_created_total)
  L[handshakes_end]=$(metric coapgw_dtls_handshakes_total)
  L[closed_end]=$(metric coapgw_sessions_closed_total)
  L[result]=$(grep '^RESULT' "$WORK/long.out" || true)
  L[date]=$(date -u '+%Y-%m-%d %H:%M UTC')
  L[load]=$(cut -d' ' -f1-3 /proc/loadavg)
  log "long hold: ${L[*]}"
  stop_server
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

if [[ $QUIET_ONLY -eq 1 ]]; then
  COMMANDS=(); workload plain_req plain plain_requests
  COMMANDS=(); workload plain_quiet plain plain_quiet
  for w in plain_req plain_quiet; do for s in coapgw libcoap; do echo "$w.$s: ${R[$w.$s]:-}"; done; done
  for s in coapgw libcoap; do
    a=$(val cpu_us_per_req "${R[plain_quiet.$s]:-}"); b=$(val cpu_us_per_req "${R[plain_req.$s]:-}")
    echo "QUIET $s cpu_us_per_req ${REQ_DEVICES}x$K=$b ${QUIET_DEVICES}x$QUIET_K=$a ratio=$(ratio "${a:-x}" "${b:-x}")"
  done
  exit 0
fi
if [[ $LONG -eq 1 ]]; then
  long_hold
  declare -p L > "$LONG_STATE"
  log "wrote $LONG_STATE"
  [[ -f $STATE ]] || exit 0
  RENDER_ONLY=1
fi
if [[ $RENDER_ONLY -eq 1 ]]; then
  # shellcheck disable=SC1090
  source "$STATE"
else
  START=$(date +%s)
  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  COMMANDS=(); workload plain_req plain plain_requests; C_PLAIN_REQ=("${COMMANDS[@]}")
  COMMANDS=(); workload plain_quiet plain plain_quiet; C_PLAIN_QUIET=("${COMMANDS[@]}")
  COMMANDS=(); workload dtls_req dtls dtls_requests; C_DTLS_REQ=("${COMMANDS[@]}")
  COMMANDS=(); workload dtls_hs dtls dtls_handshakes; C_DTLS_HS=("${COMMANDS[@]}")
  C_PLAIN_IDLE=()
  for n in "${PLAIN_IDLE[@]}"; do
    COMMANDS=(); workload "plain_idle_$n" plain plain_idle "$n"; C_PLAIN_IDLE+=("${COMMANDS[@]}")
  done
  COMMANDS=(); workload dtls_idle dtls dtls_idle; C_DTLS_IDLE=("${COMMANDS[@]}")
  COMMANDS=(); workload held dtls dtls_held; C_HELD=("${COMMANDS[@]}")
  COMMANDS=(); threads_compare
  COMMANDS=(); eviction
  COMMANDS=(); forwarding
  ELAPSED=$(( $(date +%s) - START ))
  GEN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  declare -p R CMD E QUICK DUR REQ_DEVICES HS_SLOTS PLAIN_IDLE DTLS_IDLE HELD EVICT_MAX EVICT_EXTRA \
    ELAPSED LOAD_AT_START GEN_DATE C_PLAIN_REQ C_PLAIN_QUIET C_DTLS_REQ C_DTLS_HS C_PLAIN_IDLE C_DTLS_IDLE C_HELD \
    C_THREADS C_EVICT C_FWD > "$STATE"
fi
[[ -f $LONG_STATE ]] && source "$LONG_STATE"

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
  echo "Generated by \`bench/compare.sh$([[ $QUICK -eq 1 ]] && echo ' --quick')\` on $GEN_DATE in ${ELAPSED}s (figures kept in $(basename "$STATE"); \`--render-only\` rewrites this file from them)."
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
  echo "## Plain CoAP requests, quiet: $OFFERED/s offered ($QUIET_DEVICES sessions x $QUIET_K outstanding, ${DUR}s)"
  echo ""
  table_head
  row "answered requests/s" rps plain_quiet
  row "server CPU per request (us)" cpu_us_per_req plain_quiet
  row "server CPU (% of one core)" server_cpu_pct plain_quiet
  row "latency p50 (us)" p50_us plain_quiet
  row "latency p99 (us)" p99_us plain_quiet
  row "timeouts" timeouts plain_quiet
  for s in coapgw libcoap; do
    a=$(val cpu_us_per_req "${R[plain_quiet.$s]:-}"); b=$(val cpu_us_per_req "${R[plain_req.$s]:-}")
    echo "| $s: CPU per request at $QUIET_DEVICES x $QUIET_K / at $REQ_DEVICES x $K | $(ratio "${a:-x}" "${b:-x}") | | |"
  done
  commands plain_quiet ${C_PLAIN_QUIET[@]+"${C_PLAIN_QUIET[@]}"}
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
  echo "## DTLS handshakes while $HELD idle DTLS sessions are held ($HS_SLOTS parallel, ${DUR}s)"
  echo ""
  table_head
  row "handshake cycles/s" hs_per_s held_hs
  row "server CPU per handshake cycle (us)" cpu_us_per_hs held_hs
  row "handshake failures" handshake_failures held_hs
  echo ""
  echo "Same run and commands as the table above (the handshake line is the last bench command there)."
  echo ""
  echo "## Memory per established DTLS session at $HELD sessions (the held sessions above)"
  echo ""
  table_head
  row "bytes per session (RSS growth / sessions opened)" rss_per_session_b held_hold
  row "sessions opened (of $HELD offered)" opened held_hold
  row "answering at the end on the same session" verified held_hold
  row "server RSS with all sessions open (kB)" rss_open_kb held_hold
  echo ""
  echo "The hold line of the commands above (\`--mode hold --dtls --devices $HELD\`, procs chosen by the file limit)."
  echo ""
  echo "## coapgw threads: 2 vs threads: 1 (requests, $OFFERED/s offered, $REQ_DEVICES sessions x $K, ${DUR}s)"
  echo ""
  echo "Server and load both on cores 0,1 (not pinned apart: two workers need two cores)."
  echo ""
  echo "| metric | threads: 1 | threads: 2 | 2 / 1 |"
  echo "|---|---:|---:|---:|"
  for kind in plain dtls; do
    for m in "answered requests/s:rps" "server CPU per request (us):cpu_us_per_req" "server CPU (% of one core):server_cpu_pct" "latency p50 (us):p50_us" "latency p99 (us):p99_us" "timeouts:timeouts"; do
      a=$(val "${m#*:}" "${R[thr_$kind.1]:-}"); b=$(val "${m#*:}" "${R[thr_$kind.2]:-}")
      echo "| $kind: ${m%%:*} | ${a:--} | ${b:--} | $(ratio "${b:-x}" "${a:-x}") |"
    done
  done
  echo ""
  echo '```'
  echo "threads 1: ${CMD[thr_plain.1]:-}"
  echo "threads 2: ${CMD[thr_plain.2]:-}"
  for c in "${C_THREADS[@]}"; do echo "$c"; done
  echo '```'
  echo ""
  echo "## sessions.max below the offered count (coapgw, plain CoAP)"
  echo ""
  echo "sessions.max $EVICT_MAX; first $EVICT_EXTRA sessions opened and left idle, then $EVICT_MAX more; the last $EVICT_MAX verified."
  echo ""
  echo "| metric | value | expected |"
  echo "|---|---:|---:|"
  echo "| sessions_created_total after the first $EVICT_EXTRA | ${E[created_first]:--} | $EVICT_EXTRA |"
  echo "| sessions_created_total after all $((EVICT_MAX + EVICT_EXTRA)) opened | ${E[created_open]:--} | $((EVICT_MAX + EVICT_EXTRA)) |"
  echo "| sessions_closed_total{reason=\"evicted\"} then | ${E[evicted_open]:--} | $EVICT_EXTRA |"
  echo "| coapgw_sessions (open) then | ${E[active_open]:--} | $EVICT_MAX |"
  echo "| last $EVICT_MAX: opened / answering on their session at the end | $(val opened "${R[evict.coapgw]:-}") / $(val verified "${R[evict.coapgw]:-}") | $EVICT_MAX / $EVICT_MAX |"
  echo "| sessions_created_total after verification | ${E[created_end]:--} | $((EVICT_MAX + EVICT_EXTRA)) (no growth) |"
  echo "| sessions_closed_total{reason=\"evicted\"} at the end | ${E[evicted_end]:--} | $EVICT_EXTRA |"
  echo "| sessions_closed_total (any reason) at the end | ${E[closed_end]:--} | $EVICT_EXTRA |"
  echo ""
  echo '```'
  echo "coapgw: ${CMD[evict]:-}"
  for c in "${C_EVICT[@]}"; do echo "$c"; done
  echo "curl -s http://$GW_ADMIN/metrics  # after each phase: coapgw_sessions_created_total, coapgw_sessions_closed_total{reason=\"evicted\"}, coapgw_sessions"
  echo '```'
  echo ""
  echo "## Forwarding to a local HTTP upstream (coapgw route /api -> nginx \`return 200 \"ok\"\`)"
  echo ""
  echo "nginx-light (Debian), one worker on core 0 beside coapgwd; measured directly with wrk (HTTP/1.1 keep-alive),"
  echo "through coapgw with coapgw-bench (CON GET /api/x, 2.05 expected), load on core 1, ${DUR}s each."
  echo ""
  echo "Through coapgw, 1 in flight is offered 5,000/s: one session must not reuse a message id within"
  echo "EXCHANGE_LIFETIME, and closed loop it would wrap its 65,536 ids in about 10 s."
  echo ""
  echo "| metric | nginx direct (wrk) | through coapgw | added by coapgw |"
  echo "|---|---:|---:|---:|"
  for c in 1 64; do
    for m in "requests/s:rps" "latency p50 (us):p50_us" "latency p99 (us):p99_us"; do
      a=$(kv "${m#*:}" "${R[fwd_direct_$c]:-}"); b=$(val "${m#*:}" "${R[fwd_gw_$c]:-}")
      added=$(sub "${b:-x}" "${a:-x}"); [[ ${m#*:} == rps ]] && added="-"
      echo "| $c in flight: ${m%%:*} | ${a:--} | ${b:--} | $added |"
    done
    echo "| $c in flight: coapgw CPU per forwarded request (us) | | $(val cpu_us_per_req "${R[fwd_gw_$c]:-}") | |"
    echo "| $c in flight: 2.xx answers / all answers / timeouts | | $(val r2xx "${R[fwd_gw_$c]:-}") / $(val responses "${R[fwd_gw_$c]:-}") / $(val timeouts "${R[fwd_gw_$c]:-}") | |"
  done
  echo ""
  echo '```'
  echo "coapgw: ${CMD[fwd]:-}"
  for c in "${C_FWD[@]}"; do echo "$c"; done
  echo '```'
  echo ""
  echo "## 10-minute hold: $LONG_SESSIONS DTLS sessions, keep-alive every ${LONG_KEEPALIVE}s (\`bench/compare.sh --long-hold\`)"
  echo ""
  if [[ -n ${L[result]:-} ]]; then
    echo "Run on ${L[date]} (load average at the end ${L[load]}); coapgw only (libcoap holds ~13,000 DTLS sessions, see above)."
    echo ""
    echo "| metric | coapgw |"
    echo "|---|---:|"
    echo "| sessions opened | $(val opened "${L[result]}") |"
    echo "| keep-alives answered / failed | $(val keepalives "${L[result]}") / $(val keepalive_failures "${L[result]}") |"
    echo "| verified on their session at the end / failed | $(val verified "${L[result]}") / $(val verify_failures "${L[result]}") |"
    echo "| sessions_created_total when open / at the end | ${L[created_open]} / ${L[created_end]} |"
    echo "| dtls_handshakes_total when open / at the end | ${L[handshakes_open]} / ${L[handshakes_end]} |"
    echo "| sessions_closed_total at the end | ${L[closed_end]} |"
    echo "| server CPU per keep-alive/verify request (us) | $(val cpu_us_per_req "${L[result]}") |"
    echo "| server RSS per session (bytes) | $(val rss_per_session_b "${L[result]}") |"
    echo "| hold window (s) | $(val window_s "${L[result]}") |"
    echo ""
    echo '```'
    echo "coapgw: ${L[server]}"
    echo "${L[cmd]}"
    echo "${L[result]}"
    echo '```'
  else
    echo "Not run yet: \`bench/compare.sh --no-build --long-hold\`."
  fi
  echo ""
  echo "## Targets (issues 7 and 8)"
  echo ""
  t_plain=$(ratio "$(val cpu_us_per_req "${R[plain_req.coapgw]:-}")" "$(val cpu_us_per_req "${R[plain_req.libcoap]:-}")")
  t_dtls=$(ratio "$(val cpu_us_per_req "${R[dtls_req.coapgw]:-}")" "$(val cpu_us_per_req "${R[dtls_req.libcoap]:-}")")
  t_hs=$(ratio "$(val cpu_us_per_hs "${R[dtls_hs.coapgw]:-}")" "$(val cpu_us_per_hs "${R[dtls_hs.libcoap]:-}")")
  t_hs_held=$(ratio "$(val cpu_us_per_hs "${R[held_hs.coapgw]:-}")" "$(val cpu_us_per_hs "${R[dtls_hs.libcoap]:-}")")
  t_quiet=$(ratio "$(val cpu_us_per_req "${R[plain_quiet.coapgw]:-}")" "$(val cpu_us_per_req "${R[plain_req.coapgw]:-}")")
  t_held=$(ratio "$(val cpu_us_per_req "${R[held_many.coapgw]:-}")" "$(val cpu_us_per_req "${R[held_10.coapgw]:-}")")
  last_idle=${PLAIN_IDLE[${#PLAIN_IDLE[@]}-1]}
  t_idle=$(val rss_per_session_b "${R[plain_idle_$last_idle.coapgw]:-}")
  t_dmem=$(val rss_per_session_b "${R[held_hold.coapgw]:-}")
  t_thr_p=$(ratio "$(val rps "${R[thr_plain.2]:-}")" "$(val rps "${R[thr_plain.1]:-}")")
  t_thr_d=$(ratio "$(val rps "${R[thr_dtls.2]:-}")" "$(val rps "${R[thr_dtls.1]:-}")")
  long_ok=x
  if [[ -n ${L[result]:-} ]]; then
    long_ok=$(( $(val verified "${L[result]}") == LONG_SESSIONS && ${L[created_end]} == ${L[created_open]} ? 1 : 0 ))
  fi
  evict_ok=$(( ${E[evicted_end]:-0} == EVICT_EXTRA && ${E[created_end]:-0} == ${E[created_open]:-1} && $(val verified "${R[evict.coapgw]:-}" || echo 0)0 == ${EVICT_MAX}0 ? 1 : 0 ))
  echo "| target | limit | measured | verdict |"
  echo "|---|---:|---:|---|"
  echo "| plain CPU per request vs libcoap | <= 0.40x | ${t_plain}x | $(verdict "$t_plain" "<=" 0.4) |"
  echo "| plain CPU per request, $QUIET_DEVICES x $QUIET_K / $REQ_DEVICES x $K (issue 17, item 6) | <= 1.20x | ${t_quiet}x | $(verdict "$t_quiet" "<=" 1.2) |"
  echo "| DTLS CPU per request vs libcoap | <= 0.40x | ${t_dtls}x | $(verdict "$t_dtls" "<=" 0.4) |"
  echo "| CPU per handshake vs libcoap | <= 0.60x | ${t_hs}x | $(verdict "$t_hs" "<=" 0.6) |"
  echo "| CPU per handshake with $HELD held vs libcoap (empty table) | <= 0.60x | ${t_hs_held}x | $(verdict "$t_hs_held" "<=" 0.6) |"
  echo "| DTLS CPU per request, $HELD held / 10 sessions | <= 1.10x | ${t_held}x | $(verdict "$t_held" "<=" 1.1) |"
  echo "| idle plain session, $last_idle sessions | <= 300 B | ${t_idle:--} B | $(verdict "${t_idle:-x}" "<=" 300) |"
  echo "| established DTLS session, $HELD sessions | <= 1024 B | ${t_dmem:--} B | $(verdict "${t_dmem:-x}" "<=" 1024) |"
  echo "| $LONG_SESSIONS DTLS sessions held 10 min, all answering, no re-handshake | all | $(val verified "${L[result]:-}")${L[result]:+ of $LONG_SESSIONS} | $(verdict "$long_ok" "==" 1) |"
  echo "| sessions.max: evicted = excess, oldest first, survivors on their session | exact | evicted ${E[evicted_end]:--} of $EVICT_EXTRA, verified $(val verified "${R[evict.coapgw]:-}") | $(verdict "$evict_ok" "==" 1) |"
  echo "| threads 2 serve more than threads 1 (answered/s, plain / DTLS) | > 1.00x | ${t_thr_p}x / ${t_thr_d}x | $(verdict "$t_thr_p" ">" 1) / $(verdict "$t_thr_d" ">" 1) |"
  echo ""
  for part in RESULTS-scaling.md RESULTS-million.md; do
    if [[ -f $ROOT/bench/$part ]]; then
      cat "$ROOT/bench/$part"
      echo ""
    fi
  done
  if [[ -f $ROOT/bench/NOTES.md ]]; then
    cat "$ROOT/bench/NOTES.md"
    echo ""
  fi
  echo "## Raw RESULT lines"
  echo ""
  echo '```'
  for k in $(printf '%s\n' "${!R[@]}" | sort); do echo "$k: ${R[$k]}"; done
  echo '```'
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "wrote $OUT in ${ELAPSED}s"
