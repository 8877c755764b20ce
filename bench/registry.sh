#!/usr/bin/env bash
# Device registry (issue 16): DTLS handshakes per second and server CPU per handshake with keys
# from local keys, from the registry with a cold cache (every handshake a new identity), and from
# the registry's cache (warm). coapgwd threads: 1 on core 0, coapgw-bench on core 1, the Python
# registry stub (bench/registry_stub.py) unpinned. Prints one RESULT line per case.
#   bench/registry.sh [SECONDS]     default 10
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
GWD=$BUILD_DIR/daemon/coapgwd
BENCH=$BUILD_DIR/bench/coapgw-bench
SECONDS_EACH=${1:-10}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

python3 "$ROOT/bench/registry_stub.py" > "$WORK/registry.out" 2> "$WORK/registry.err" &
for _ in $(seq 50); do grep -q PORT "$WORK/registry.out" 2>/dev/null && break; sleep 0.1; done
REG_PORT=$(awk '/PORT/ {print $2}' "$WORK/registry.out")

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# $1: "local" or "registry"
start_gateway() {
  PORT=$(free_port)
  {
    echo "threads: 1"
    echo "log: { level: warn }"
    echo "listen: { coap: [], coaps: [\"127.0.0.1:$PORT\"], admin: \"\", api: \"\" }"
    echo "dtls:"
    echo "  psk:"
    if [ "$1" = local ]; then
      echo "    keys: [ { identity: bench, key: bench-secret } ]"
    else
      echo "    keys: []"
      echo "    lookup: { url: \"http://127.0.0.1:$REG_PORT/psk/{identity}\", timeout: 2s, cache_ttl: 10m }"
    fi
    echo "  max_handshakes: 2000"
    echo "routes: []"
  } > "$WORK/gw.yaml"
  taskset -c 0 "$GWD" --config "$WORK/gw.yaml" > "$WORK/gw.log" 2>&1 &
  GW_PID=$!
  sleep 0.5
}

run_bench() {  # $1: label, then bench options
  local label=$1
  shift
  echo -n "$label: "
  taskset -c 1 "$BENCH" --mode handshake --dtls --server "127.0.0.1:$PORT" --devices 64 \
    --duration "$SECONDS_EACH" --server-pid "$GW_PID" "$@" 2>/dev/null | grep "^RESULT"
}

start_gateway local
run_bench local
kill "$GW_PID"; wait "$GW_PID" || true

start_gateway registry
run_bench registry_cold --identities 10000000
# Warm: identities 0..999, all looked up (and cached) by the cold run, which began at 0.
run_bench registry_warm --identities 1000
kill "$GW_PID"; wait "$GW_PID" || true
