#!/usr/bin/env bash
# Instructions per DTLS handshake cycle inside the server, counted by valgrind's callgrind (issue 17,
# item 5). A cycle is what `coapgw-bench --mode handshake` does: ClientHello, HelloVerifyRequest,
# ClientHello with cookie, the PSK handshake (PSK-AES128-CCM8), one GET /x answered 4.04, close_notify.
# Instruction counts do not depend on the load of this shared machine, so they compare two builds
# (or coapgwd and libcoap) fairly where CPU timings move by 10-20% between runs.
#
# Usage: bench/handshake_instructions.sh SERVER COAPGW_BENCH [SECONDS] [SLOTS]
# SERVER is coapgwd (threads: 1) or libcoap's coap-server-openssl (same PSK, DTLS on port + 1).
# Instrumentation is on only for the load window. Bounded: SECONDS (default 10) plus start and stop.
# KEEP_CALLGRIND=FILE keeps the callgrind output (callgrind_annotate FILE for the functions).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gwd=$1
bench=$2
seconds=${3:-10}
slots=${4:-8}
dir=$(mktemp -d)
pid=""
cleanup() {
  stop_pid "$pid"
  if [[ -n ${KEEP_CALLGRIND:-} && -f $dir/cg.out ]]; then cp "$dir/cg.out" "$KEEP_CALLGRIND"; fi
  rm -rf "$dir"
}
trap cleanup EXIT
read -r coap_port coaps_port < <(free_udp_ports 2)
bench_config "$dir/gw.yaml" 1 "$coap_port" "$coaps_port" "  max_handshakes: 1000"
server_command "$gwd" "$dir/gw.yaml" "$coap_port"
coaps_port=${SERVER_DTLS_PORT:-$coaps_port}
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" \
  "${SERVER_CMD[@]}" > "$dir/gwd.log" 2>&1 &
pid=$!
wait_udp_bound "$coaps_port" "$pid" "$dir/gwd.log"
callgrind_control -i on "$pid" > /dev/null 2>&1
line=$("$bench" --mode handshake --dtls --server "127.0.0.1:$coaps_port" --devices "$slots" \
  --duration "$seconds" --timeout 5 --handshake-timeout 60 --source-base 127.0.2.1 2>/dev/null | grep '^RESULT')
callgrind_control -i off "$pid" > /dev/null 2>&1
kill "$pid"; wait "$pid" || true; pid=""
cycles=$(sed -n 's/.* cycles=\([0-9]*\).*/\1/p' <<<"$line")
ir=$(callgrind_total "$dir/cg.out")
echo "$line"
echo "INSTRUCTIONS server=$(basename "$gwd") cycles=$cycles instructions=$ir per_cycle=$(( ir / (cycles > 0 ? cycles : 1) ))"
