#!/usr/bin/env bash
# bench.smoke: starts coapgwd on free loopback ports, runs one second of plain and one second of
# DTLS requests with coapgw-bench against it, then one second of DTLS with Connection IDs whose
# devices rebind every 0.2 s (threads: 2, so a rebound device may land on the other worker), and
# checks that requests were answered (and, with rebinding, that none was lost and devices moved).
# Usage: smoke.sh COAPGWD COAPGW_BENCH   (bounded: < 10 s)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gwd=$1
bench=$2
dir=$(mktemp -d)
pid=""
cleanup() {
  stop_pid "$pid"
  rm -rf "$dir"
}
trap cleanup EXIT

read -r coap_port coaps_port < <(free_udp_ports 2)
bench_config "$dir/gw.yaml" 2 "$coap_port" "$coaps_port"
"$gwd" --config "$dir/gw.yaml" > "$dir/gwd.log" 2>&1 &
pid=$!

wait_udp_bound "$coaps_port" "$pid" "$dir/gwd.log"

# Source addresses of our own in 127.0.0.0/8: two smoke runs at once (several builds on one machine)
# must not collide on the bench's fixed source ports.
src="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).1"

check() {  # check NAME RESULT-LINE: some answers, no errors
  local name=$1 line=$2
  echo "$name: $line"
  local responses errors
  responses=$(sed -n 's/.* responses=\([0-9]*\).*/\1/p' <<<"$line")
  errors=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
  [[ ${responses:-0} -gt 0 && ${errors:-1} -eq 0 ]] || { echo "$name failed"; exit 1; }
}
plain=$("$bench" --mode requests --server "127.0.0.1:$coap_port" --devices 4 --outstanding 2 \
          --duration 1 --server-pid "$pid" --source-base "$src" 2>/dev/null | grep '^RESULT')
check plain "$plain"
dtls=$("$bench" --mode requests --dtls --server "127.0.0.1:$coaps_port" --devices 4 --outstanding 2 \
         --duration 1 --handshake-timeout 5 --server-pid "$pid" --source-base "$src" --source-port-base 12000 2>/dev/null | grep '^RESULT')
check dtls "$dtls"
cid=$("$bench" --mode requests --cid --rebind 0.2 --server "127.0.0.1:$coaps_port" --devices 4 --outstanding 1 \
        --rate 400 --duration 1 --timeout 2 --handshake-timeout 5 --source-base "$src" --source-port-base 12100 \
        2>/dev/null | grep '^RESULT')
check cid "$cid"
rebinds=$(sed -n 's/.* rebinds=\([0-9]*\).*/\1/p' <<<"$cid")
timeouts=$(sed -n 's/.* timeouts=\([0-9]*\).*/\1/p' <<<"$cid")
[[ ${rebinds:-0} -gt 0 && ${timeouts:-1} -eq 0 ]] || { echo "cid with rebinding failed"; exit 1; }
echo "bench.smoke passed"
