#!/usr/bin/env bash
# bench/million_report.sh — renders the storm figures of bench/million.sh (STATE= files) as the
# markdown section that bench/compare.sh copies into RESULTS.md.
# Usage: bench/million_report.sh COAPGW_STATE [LIBCOAP_STATE] > bench/RESULTS-million.md
set -euo pipefail
declare -A G L
load() {  # load FILE ARRAY: key=value lines into an associative array
  local -n into=$2
  [[ -f $1 ]] || return 0
  while IFS='=' read -r k v; do [[ -n $k ]] && into[$k]=$v; done < "$1"
}
load "$1" G
load "${2:-}" L
num() { [[ ${1:-} =~ ^[0-9]+$ ]] && sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<< "$1" || echo "${1:--}"; }
mb() { [[ ${1:-} =~ ^[0-9]+$ ]] && awk -v k="$1" 'BEGIN {printf "%.1f MB", k / 1024}' || echo -; }
per() { [[ ${1:-} =~ ^[0-9]+$ && ${2:-} =~ ^[1-9][0-9]*$ ]] && awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", a * 1024 / b}' || echo -; }
row() { echo "| $1 | $2 | $3 |"; }
echo "## A million DTLS devices arriving at once (\`bench/compare.sh --million\`, issue 17, items 1-3)"
echo ""
echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/ {print $2}') GB RAM; coapgw run ${G[date]:--}, libcoap run ${L[date]:--}"
echo "- every device opens at once (a storm), retries per RFC 6347 (new ClientHello after a back-off"
echo "  of 2 s doubling to 64 s) until the set-up deadline, is held 10 s, then verified on its"
echo "  session with one GET (asked up to three times); \`bench/million.sh\` (its header says how)"
echo ""
echo "| figure | coapgw (threads ${G[threads]:--}, \`dtls.max_handshakes\` $(num "${G[max_handshakes]:-}")) | libcoap 4.3.1 \`coap-server-openssl\` |"
echo "|---|---:|---:|"
row "devices offered / handshakes in flight (bench processes)" "$(num "${G[devices]:-}") / $(num "${G[in_flight]:-}") (${G[procs]:--})" "$(num "${L[devices]:-}") / $(num "${L[in_flight]:-}") (${L[procs]:--})"
row "established (handshake + first GET answered)" "**$(num "${G[opened]:-}")**" "$(num "${L[opened]:-}")"
row "gave up at the set-up deadline" "$(num "${G[gave_up]:-}")" "$(num "${L[gave_up]:-}")"
row "set-up time, rate (all devices done, or the deadline)" "${G[setup_s]:--} s, $(num "${G[setup_rate]:-}")/s" "${L[setup_s]:--} s, $(num "${L[setup_rate]:-}")/s"
row "new ClientHellos after a back-off / GETs asked again" "$(num "${G[retries]:-}") / $(num "${G[resends]:-}")" "$(num "${L[retries]:-}") / $(num "${L[resends]:-}")"
row "HelloVerifyRequests / refused at the bound" "$(num "${G[hvr]:-}") / $(num "${G[rejected]:-}")" "- / -"
row "verify pass after the hold (failed)" "**$(num "${G[verified]:-}")** ($(num "${G[verify_failures]:-}"))" "$(num "${L[verified]:-}") ($(num "${L[verify_failures]:-}"))"
row "established sessions closed during the run" "**$(num "${G[closed_established]:-}")**" "-"
row "server RSS at start / at the end" "$(mb "${G[rss_start_kb]:-}") / $(mb "${G[rss_end_kb]:-}")" "$(mb "${L[rss_start_kb]:-}") / $(mb "${L[rss_end_kb]:-}")"
row "server memory per established session (RSS growth / established)" "**${G[per_session_b]:--} B**" "${L[per_session_b]:--} B"
row "server peak RSS (VmHWM)" "$(mb "${G[peak_kb]:-}")" "$(mb "${L[peak_kb]:-}")"
row "server CPU for the whole run" "${G[server_cpu_s]:--} s" "${L[server_cpu_s]:--} s"
[[ -n ${G[stop_s]:-}${L[stop_s]:-} ]] &&
  row "server stop with every session held (SIGTERM to exit)" "${G[stop_s]:--} s" "${L[stop_s]:--} s"
row "bench RSS, all processes, at most (per device)" "$(mb "${G[bench_peak_kb]:-}") ($(per "${G[bench_peak_kb]:-}" "${G[devices]:-}") B)" "$(mb "${L[bench_peak_kb]:-}") ($(per "${L[bench_peak_kb]:-}" "${L[devices]:-}") B)"
row "datagrams the server's sockets dropped (full receive buffers: \`ss -m\` d)" "$(num "${G[server_drops]:-}")" "$(num "${L[server_drops]:-}")"
echo ""
echo '```'
echo "bench/compare.sh --million   # = the two runs below, then this table (bench/million_report.sh)"
echo "STATE=bench/RESULTS-million-coapgw.state bench/million.sh ${G[devices]:-1000000} ${G[max_handshakes]:-4000} ${G[threads]:-2}"
echo "SERVER=libcoap IN_FLIGHT=${L[in_flight]:-4000} SETUP_DEADLINE=180 STATE=bench/RESULTS-million-libcoap.state bench/million.sh ${L[devices]:-20000}"
[[ -n ${G[cmd]:-} ]] && echo "# coapgw:  ${G[cmd]}"
[[ -n ${L[cmd]:-} ]] && echo "# libcoap: ${L[cmd]}"
echo '```'
