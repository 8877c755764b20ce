#!/usr/bin/env bash
# Instructions per answered request inside coapgwd, counted by valgrind's callgrind. Instruction
# counts do not depend on what else the machine is doing, so this compares two builds fairly on a
# shared, noisy 2-core machine where timings do not (see bench/RESULTS.md for how it is used).
#
# Usage: bench/instructions.sh SERVER COAPGW_BENCH [plain|dtls|cid] [SECONDS] [RATE]
# cid: DTLS whose devices negotiate an RFC 9146 Connection ID (coapgw-bench --cid, coapgw's engine
# as the client); with REBIND=S in the environment each device also moves to a new source port
# every S seconds (--rebind S), so the figure includes finding sessions by CID and moving them.
# SERVER is coapgwd, or libcoap's coap-server-openssl for the same workload side by side (it
# listens on the plain port and, with the bench's PSK, on plain port + 1 for DTLS).
# The daemon runs with threads: 1 under callgrind; instrumentation is switched on only for the
# load window (for dtls the window also holds the 10 handshakes of the bench's devices). The
# bench sends GET /x at RATE requests/s (default 1500) from 10 devices, 4 outstanding each, and
# the answer is 4.04 (no route), so the number is the cost of the receive, parse, dedup, session,
# answer and send path. Bounded: SECONDS (default 10) plus start-up and stop.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gwd=$1
bench=$2
proto=${3:-plain}
seconds=${4:-10}
rate=${5:-1500}
dir=$(mktemp -d)
pid=""
cleanup() {
  stop_pid "$pid"
  if [[ -n ${KEEP_CALLGRIND:-} ]]; then cp "$dir/cg.out" "$KEEP_CALLGRIND"; fi
  rm -rf "$dir"
}
trap cleanup EXIT
read -r coap_port coaps_port < <(free_udp_ports 2)
bench_config "$dir/gw.yaml" 1 "$coap_port" "$coaps_port"
server_command "$gwd" "$dir/gw.yaml" "$coap_port"
coaps_port=${SERVER_DTLS_PORT:-$coaps_port}
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" \
  "${SERVER_CMD[@]}" > "$dir/gwd.log" 2>&1 &
pid=$!
wait_udp_bound "$coaps_port" "$pid" "$dir/gwd.log"
args=(--mode requests --devices 10 --outstanding 4 --duration "$seconds" --rate "$rate" --timeout 5
      --handshake-timeout 60 --source-base 127.0.0.1)
if [[ $proto == dtls ]]; then args+=(--dtls --server "127.0.0.1:$coaps_port" --source-port-base 14000)
elif [[ $proto == cid ]]; then
  args+=(--cid --server "127.0.0.1:$coaps_port" --source-port-base 14000)
  if [[ -n ${REBIND:-} ]]; then args+=(--rebind "$REBIND"); fi
else args+=(--server "127.0.0.1:$coap_port" --source-port-base 13000); fi
callgrind_control -i on "$pid" > /dev/null 2>&1
line=$("$bench" "${args[@]}" 2>/dev/null | grep '^RESULT')
callgrind_control -i off "$pid" > /dev/null 2>&1
kill "$pid"; wait "$pid" || true; pid=""
responses=$(sed -n 's/.* responses=\([0-9]*\).*/\1/p' <<<"$line")
ir=$(callgrind_total "$dir/cg.out")
echo "$line"
echo "INSTRUCTIONS proto=$proto${REBIND:+ rebind=$REBIND} responses=$responses instructions=$ir per_request=$(( ir / (responses > 0 ? responses : 1) ))"
