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
gwd=$1
bench=$2
seconds=${3:-10}
slots=${4:-8}
dir=$(mktemp -d)
pid=""
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [[ -n ${KEEP_CALLGRIND:-} && -f $dir/cg.out ]]; then cp "$dir/cg.out" "$KEEP_CALLGRIND"; fi
  rm -rf "$dir"
}
trap cleanup EXIT
read -r coap_port coaps_port < <(/usr/bin/python3 -c '
import socket
s = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
cat > "$dir/gw.yaml" <<YAML
threads: 1
log: { level: warn }
listen: { coap: ["127.0.0.1:$coap_port"], coaps: ["127.0.0.1:$coaps_port"], admin: "", api: "" }
dtls:
  psk: { hint: "coapgw", keys: [ { identity: "bench", key: "bench-secret" } ], keys_file: "" }
  max_handshakes: 1000
routes: []
YAML
if [[ $(basename "$gwd") == coap-server* ]]; then
  coaps_port=$((coap_port + 1))
  server=("$gwd" -A 127.0.0.1 -p "$coap_port" -k bench-secret -h coapgw -v 0)
else
  server=("$gwd" --config "$dir/gw.yaml")
fi
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" \
  "${server[@]}" > "$dir/gwd.log" 2>&1 &
pid=$!
hex=$(printf '%04X' "$coaps_port")
for _ in $(seq 300); do
  grep -q ":$hex " /proc/net/udp && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/gwd.log"; exit 1; }
  sleep 0.1
done
callgrind_control -i on "$pid" > /dev/null 2>&1
line=$("$bench" --mode handshake --dtls --server "127.0.0.1:$coaps_port" --devices "$slots" \
  --duration "$seconds" --timeout 5 --handshake-timeout 60 --source-base 127.0.2.1 2>/dev/null | grep '^RESULT')
callgrind_control -i off "$pid" > /dev/null 2>&1
kill "$pid"; wait "$pid" || true; pid=""
cycles=$(sed -n 's/.* cycles=\([0-9]*\).*/\1/p' <<<"$line")
ir=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$dir/cg.out" | head -1)
[[ -z $ir ]] && ir=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$dir/cg.out" | head -1)
echo "$line"
echo "INSTRUCTIONS server=$(basename "$gwd") cycles=$cycles instructions=$ir per_cycle=$(( ir / (cycles > 0 ? cycles : 1) ))"
