# bench/lib.sh — what the bench scripts share: free ports, waiting for a server's UDP port, stopping
# it, and reading callgrind's total. Sourced (`source "$(dirname "$0")/lib.sh"`), not run.

# free_udp_ports N: N loopback UDP ports that were free a moment ago (bound and released; another
# binder may take one first, which is unlikely on loopback), on one line.
free_udp_ports() {
  /usr/bin/python3 -c '
import socket, sys
s = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' "$1"
}

# wait_udp_bound PORT PID [LOG]: waits (at most 30 s) until a socket not connected to any peer is
# bound to UDP PORT (a server's, not a client's whose source or destination port happens to be
# PORT). Fails, printing LOG, if PID exits first.
wait_udp_bound() {
  local port=$1 pid=$2 log=${3:-}
  for _ in $(seq 300); do
    ss -Hunl "sport = :$port" | grep -q . && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "server (pid $pid) exited before binding port $port" >&2
      [[ -n $log && -f $log ]] && cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "server (pid $pid) did not bind port $port in 30 s" >&2
  return 1
}

# stop_pid PID: stops a process this script started and reaps it; no error if it is gone.
stop_pid() {
  [[ -n ${1:-} ]] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# callgrind_total FILE: the instructions a callgrind output file counted.
callgrind_total() {
  local ir
  ir=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$1" | head -1)
  [[ -z $ir ]] && ir=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$1" | head -1)
  echo "${ir:-0}"
}

# bench_config FILE THREADS COAP_PORT COAPS_PORT [LINE...]: a coapgwd config for the bench's devices
# (PSK identity "bench", key "bench-secret", no routes: GET /x is answered 4.04, no admin or API
# listener); each LINE is added after the dtls.psk line (indent it by two for a dtls key).
bench_config() {
  local file=$1 threads=$2 coap=$3 coaps=$4
  shift 4
  {
    echo "threads: $threads"
    echo "log: { level: warn }"
    echo "listen: { coap: [\"127.0.0.1:$coap\"], coaps: [\"127.0.0.1:$coaps\"], admin: \"\", api: \"\" }"
    echo "dtls:"
    echo "  psk: { hint: \"coapgw\", keys: [ { identity: \"bench\", key: \"bench-secret\" } ], keys_file: \"\" }"
    printf '%s\n' "$@"
    echo "routes: []"
  } > "$file"
}

# server_command SERVER CONFIG COAP_PORT: SERVER_CMD, the command line that starts SERVER: coapgwd
# with CONFIG, or libcoap's coap-server-* with the bench's PSK (it serves DTLS on COAP_PORT + 1:
# SERVER_DTLS_PORT says which port DTLS is on, "" for coapgwd, whose CONFIG says).
server_command() {
  if [[ $(basename "$1") == coap-server* ]]; then
    SERVER_CMD=("$1" -A 127.0.0.1 -p "$3" -k bench-secret -h coapgw -v 0)
    SERVER_DTLS_PORT=$(( $3 + 1 ))
  else
    SERVER_CMD=("$1" --config "$2")
    SERVER_DTLS_PORT=""
  fi
}
