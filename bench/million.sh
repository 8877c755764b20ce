#!/usr/bin/env bash
# bench/million.sh — N DTLS devices arriving at once and held (issue 17, items 1-3), coapgw only.
#
# Usage: [CONCURRENCY=C] [SETUP_DEADLINE=S] [HS_TIMEOUT=T] bench/million.sh [DEVICES [MAX_HANDSHAKES [THREADS]]]
#        (defaults 1000000 4000 2; C = handshakes each bench process runs at once, default: 5,100
#        in flight over all processes (IN_FLIGHT), above the bound of 4,000 whatever DEVICES is;
#        S = seconds the devices have to get their sessions, default 1500; T = seconds per handshake
#        attempt, default 45)
# Starts coapgwd (sessions.max DEVICES + 10%, idle_timeout 1h, dtls.max_handshakes as given, no
# per-address bound: the devices share 21 loopback addresses) and `coapgw-bench --mode hold --cid`:
# every device is coapgw's own DTLS engine in the client role, which drops its SSL object once the
# first answer authenticates (lean, like the gateway), one UDP socket per device over as many
# processes as the 20,000-file limit needs, source addresses 127.3.0.1 + one per 50,000 devices.
# The bench opens all devices at once (--open-rate above what the server can take: a storm); a
# device whose handshake attempt is not done in T s (its flight retransmitted 1, 2, 4 ... s apart)
# or fails backs off (2 s doubling to 64 s, jittered) and starts over with a new ClientHello from
# another alias of its address, until the set-up deadline (RFC 6347; bench/retry_policy.hpp); a
# first GET not answered in 10 s is asked again on the session (a verify GET up to twice). Then it
# holds them 10 s and verifies every device on its session. At the end the devices go silently
# (--leave-open): their sessions stay. Every 5 s it prints the gateway's RSS and peak, the bench
# processes' RSS and the gateway's handshake counters and gauges; at the end the bench's set-up
# line (established / gave up / retries) and RESULT line, and the gateway's handshake, created and
# closed-session counters ("no device lost": a held session closed for any reason would show
# there). The gateway runs with OpenSSL on its own heap (COAPGW_CRYPTO_HEAP=0 turns that off, for
# comparison). Loopback only; bounded by the bench's own deadlines.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEVICES=${1:-1000000}
MAX_HS=${2:-4000}
THREADS=${3:-2}
GWD=${GWD:-$ROOT/build/daemon/coapgwd}
BENCH=${BENCH:-$ROOT/build/bench/coapgw-bench}
WORK=$(mktemp -d /tmp/coapgw-million-XXXXXX)
trap 'kill $GW_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$((30000 + RANDOM % 20000))
ADMIN=$((PORT + 1))
cat > "$WORK/gw.yaml" <<YAML
threads: $THREADS
log: { level: warn }
listen: { coap: [], coaps: ["127.0.0.1:$PORT"], admin: "127.0.0.1:$ADMIN", api: "" }
dtls:
  psk: { hint: "coapgw", keys: [ { identity: "bench", key: "bench-secret" } ], keys_file: "" }
  max_handshakes: $MAX_HS
  max_handshakes_per_ip: 0
sessions: { max: $((DEVICES + DEVICES / 10)), idle_timeout: 3600s }
routes: []
YAML
"$GWD" --config "$WORK/gw.yaml" > "$WORK/gw.log" 2>&1 &
GW_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
metric() { curl -fs "http://127.0.0.1:$ADMIN/metrics" | awk -v n="$1" -v l="${2:-}" '$1 ~ "^"n && index($1, l) {s += $2} END {printf "%d", s}'; }
kb() { local v; v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || true); echo "${v:-0}"; }
echo "coapgwd $(kb $GW_PID VmRSS) kB at start; threads $THREADS, dtls.max_handshakes $MAX_HS, $DEVICES devices"
# One process per (open-file hard limit - 64) devices, as coapgw-bench splits them.
PROCS=$(( (DEVICES + $(ulimit -Hn) - 65) / ($(ulimit -Hn) - 64) ))
CONCURRENCY=${CONCURRENCY:-$(( (${IN_FLIGHT:-5100} + PROCS - 1) / PROCS ))}
echo "bench: $PROCS processes x $CONCURRENCY handshakes at once"
START=$(date +%s)
"$BENCH" --mode hold --cid --server "127.0.0.1:$PORT" --devices "$DEVICES" --open-rate 1000000 \
  --concurrency "$CONCURRENCY" --handshake-timeout "${HS_TIMEOUT:-45}" --setup-deadline "${SETUP_DEADLINE:-1500}" --duration 10 --timeout 10 --leave-open --source-base 127.3.0.1 \
  --server-pid "$GW_PID" > "$WORK/bench.out" 2>&1 &
BENCH_PID=$!
while kill -0 $BENCH_PID 2>/dev/null; do
  sleep 5
  bench_kb=0
  for p in $(pgrep -P $BENCH_PID) $BENCH_PID; do bench_kb=$((bench_kb + $(kb "$p" VmRSS))); done
  echo "t=$(( $(date +%s) - START ))s gw_rss_kb=$(kb $GW_PID VmRSS) gw_peak_kb=$(kb $GW_PID VmHWM) bench_rss_kb=$bench_kb" \
       "ok=$(metric coapgw_dtls_handshakes_total 'result="ok"') rejected=$(metric coapgw_dtls_handshakes_total 'result="rejected"')" \
       "hvr=$(metric coapgw_dtls_hello_verify_requests_total) sessions=$(metric coapgw_sessions '{proto="dtls",state="established",type="server"}')" \
       "handshaking=$(metric coapgw_sessions '{proto="dtls",state="handshake",type="server"}')"
done
wait $BENCH_PID || true
grep -E '^(setup:|  set-up:|  hold:|RESULT)' "$WORK/bench.out" || tail -4 "$WORK/bench.out"
echo "end: t=$(( $(date +%s) - START ))s gw_rss_kb=$(kb $GW_PID VmRSS) gw_peak_kb=$(kb $GW_PID VmHWM)"
curl -fs "http://127.0.0.1:$ADMIN/metrics" |
  grep -E '^coapgw_(dtls_handshakes_total|dtls_hello_verify|sessions(_created_total|_closed_total)?\{proto="dtls"|bad_messages_total)' |
  grep -v ' 0$' || true
closed_all=$(metric coapgw_sessions_closed_total 'proto="dtls"')
closed_hs=$(( $(metric coapgw_sessions_closed_total 'reason="handshake_timeout"') + $(metric coapgw_sessions_closed_total 'reason="tls_failed"') ))
echo "dtls sessions closed during the run: $closed_all, of them $closed_hs handshakes that never completed;" \
     "established sessions closed: $((closed_all - closed_hs))"
dev_ok=$(sed -n 's/.* handshakes=\([0-9]*\) .*/\1/p' "$WORK/bench.out" | tail -1)
echo "handshakes completed: gateway $(metric coapgw_dtls_handshakes_total 'result="ok"'), devices ${dev_ok:-?}" \
     "(the difference: attempts a device had already given up when the gateway finished; it retried from another alias)"
