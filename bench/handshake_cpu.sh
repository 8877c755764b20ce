#!/usr/bin/env bash
# Server CPU per DTLS PSK handshake cycle, coapgwd beside libcoap's coap-server-openssl, repeated
# (issue 17, item 5). The workload and the commands are those of bench/compare.sh's handshake table:
# server pinned to core 0, `coapgw-bench --mode handshake --dtls --devices 64 --duration 10` pinned
# to core 1, CPU time of the server process from --server-pid. Each repetition runs every server
# once, one after the other, so that the machine's load hits all of them alike.
#
# Usage: bench/handshake_cpu.sh [--reps N] [--duration S] COAPGWD [COAPGWD...]
#   Several coapgwd binaries (e.g. a build before a change and one after) are measured in turn,
#   then libcoap. Prints one line per run and a summary (mean, min, max; ratio to libcoap's mean).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=${BENCH:-$ROOT/build/bench/coapgw-bench}
REPS=3
DUR=10
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --reps) REPS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    *) echo "usage: $0 [--reps N] [--duration S] COAPGWD [COAPGWD...]" >&2; exit 1 ;;
  esac
  shift
done
[[ $# -ge 1 ]] || { echo "usage: $0 [--reps N] [--duration S] COAPGWD [COAPGWD...]" >&2; exit 1; }
GW_PORT=25784
LC_PORT=25800  # libcoap: DTLS on 25801
WORK=$(mktemp -d /tmp/coapgw-hscpu.XXXXXX)
PID=""
cleanup() {
  stop_pid "$PID"
  rm -rf "$WORK"
}
trap cleanup EXIT
bench_config "$WORK/gw.yaml" 1 $((GW_PORT - 1)) "$GW_PORT" "  max_handshakes: 1000" \
  "sessions: { max: 400000, idle_timeout: 900s }"
one() {  # one NAME PORT COMMAND...: prints NAME cpu_us_per_hs cycles failures
  local name=$1 port=$2
  shift 2
  taskset -c 0 "$@" > "$WORK/server.log" 2>&1 &
  PID=$!
  wait_udp_bound "$port" "$PID" "$WORK/server.log"
  local line
  line=$(taskset -c 1 "$BENCH" --mode handshake --dtls --server "127.0.0.1:$port" --devices 64 --duration "$DUR" \
    --source-base 127.0.2.1 --server-pid "$PID" 2>/dev/null | grep '^RESULT' || true)
  # User and kernel CPU of the server since its start (clock ticks; start-up is a few ms of it).
  local user_ticks sys_ticks
  read -r user_ticks sys_ticks < <(awk '{print $14, $15}' "/proc/$PID/stat")
  stop_pid "$PID"
  PID=""
  local cpu cycles failures split
  cpu=$(sed -n 's/.* cpu_us_per_hs=\([^ ]*\).*/\1/p' <<<"$line")
  cycles=$(sed -n 's/.* cycles=\([^ ]*\).*/\1/p' <<<"$line")
  failures=$(sed -n 's/.* handshake_failures=\([^ ]*\).*/\1/p' <<<"$line")
  split=$(/usr/bin/python3 -c '
import os, sys
hz, u, s, n = os.sysconf("SC_CLK_TCK"), int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3] or 0)
print(f"user_us_per_hs={u / hz * 1e6 / n:.1f} sys_us_per_hs={s / hz * 1e6 / n:.1f}" if n else "-")' \
    "$user_ticks" "$sys_ticks" "${cycles:-0}")
  echo "RUN $name cpu_us_per_hs=${cpu:--} cycles=${cycles:--} failures=${failures:--} $split"
}
{
  for rep in $(seq "$REPS"); do
    i=0
    for gwd in "$@"; do
      i=$((i + 1))
      one "coapgwd#$i" "$GW_PORT" "$gwd" --config "$WORK/gw.yaml"
    done
    one libcoap $((LC_PORT + 1)) coap-server-openssl -A 127.0.0.1 -p "$LC_PORT" -k bench-secret -h coapgw -v 0
  done
} | tee "$WORK/runs"
i=0
for gwd in "$@"; do i=$((i + 1)); echo "coapgwd#$i = $gwd"; done
/usr/bin/python3 - "$WORK/runs" <<'PY'
import re, sys, collections
runs = collections.OrderedDict()
split = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.match(r"RUN (\S+) cpu_us_per_hs=([\d.]+)", line)
    if m:
        runs.setdefault(m.group(1), []).append(float(m.group(2)))
        u = re.search(r"user_us_per_hs=([\d.]+) sys_us_per_hs=([\d.]+)", line)
        if u:
            split[m.group(1)].append((float(u.group(1)), float(u.group(2))))
lib = runs.get("libcoap")
lib_mean = sum(lib) / len(lib) if lib else None
for name, xs in runs.items():
    mean = sum(xs) / len(xs)
    ratio = f" ratio_to_libcoap={mean / lib_mean:.2f}" if lib_mean and name != "libcoap" else ""
    us = split.get(name)
    where = (f" user={sum(u for u, _ in us) / len(us):.1f} kernel={sum(k for _, k in us) / len(us):.1f}") if us else ""
    print(f"SUMMARY {name} runs={' '.join(f'{x:.1f}' for x in xs)} mean={mean:.1f} min={min(xs):.1f} max={max(xs):.1f}{ratio}{where}")
PY
