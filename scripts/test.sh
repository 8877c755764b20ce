#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. missing Debian packages installed (build deps and test peers);
#   2. Release build of everything in build/, then every test through ctest
#      (unit tests and the integration tests against the real coapgwd; among them
#      integration.scaleout.*: three gateways behind a real nginx, and the deployment files
#      checked: `promtool check rules`, the Kubernetes manifests, the dashboard's metric names);
#   3. AddressSanitizer + UndefinedBehaviorSanitizer Debug build in build-asan/:
#      the unit tests, then the integration tests once more against the ASan/UBSan
#      coapgwd (ctest there points $COAPGWD at build-asan/daemon/coapgwd; the
#      harness fails a test whose daemon wrote a sanitizer report);
#   4. ThreadSanitizer build in build-tsan/ (-DCOAPGW_TSAN=ON) of the daemon and the
#      unit tests whose code crosses threads, run with those unit tests and the
#      integration tests that cross threads in the daemon (admin pages, metrics,
#      reload, shutdown and drain, persist/restore, DTLS sessions on two workers,
#      forwarding to upstreams);
#   5. scripts/fuzz.sh for a bounded time (FUZZ_SECONDS, default 60) if present.
# Stops at the first failing stage and prints one summary line at the end, with
# the seconds each stage took.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs="${JOBS:-$(nproc)}"
export FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
start=$(date +%s)
stage_start=$start
stage="install-deps"
times=""
fuzz_note="fuzz ${FUZZ_SECONDS}s"
begin() {  # begin <stage>: closes the previous stage's timing
  local now
  now=$(date +%s)
  times+="${times:+, }${stage} $(( now - stage_start ))s"
  stage="$1"
  stage_start=$now
}
on_exit() {
  local rc=$?
  local took=$(( $(date +%s) - start ))
  if [[ $rc -eq 0 ]]; then
    echo "test.sh: PASS (release build + ctest, asan/ubsan unit + integration tests, tsan tests, ${fuzz_note}) in ${took}s"
    echo "test.sh: stage times: ${times}"
  else
    echo "test.sh: FAIL at stage '${stage}' (exit ${rc}) after ${took}s (${times})" >&2
  fi
}
trap on_exit EXIT

scripts/install-deps.sh

begin "release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"${jobs}"

begin "ctest (unit + integration)"
ctest --test-dir build --output-on-failure -j2

begin "asan/ubsan build"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCOAPGW_SANITIZE=ON
cmake --build build-asan -j"${jobs}"

begin "asan/ubsan unit tests"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir build-asan --output-on-failure -j2 -E '^integration\.'

# The same integration tests against the sanitized daemon: any report aborts it (a
# non-zero exit the harness checks at stop) and is also looked for on its stderr.
begin "asan/ubsan integration tests"
# (packaging tests check the release binary's files and libraries, not behaviour).
ctest --test-dir build-asan --output-on-failure -j2 -R '^integration\.' -E '^integration\.packaging\.'
unset ASAN_OPTIONS UBSAN_OPTIONS

# ThreadSanitizer: the daemon (workers, admin thread, reload and shutdown from the
# main thread, the restored-session pool) and the unit tests that start threads.
tsan_units=(test_admin test_metrics test_server test_upstream test_common test_transport)
tsan_integration='^integration\.(admin\.Admin|ops\..*|persist\.Persist|secrets\.Secrets|dtls\.Psk|forwarding\..*|hardening_revocation\..*|downlink\..*|cid\..*|tickets\..*|stream\..*|registry\.(RegistryLookup|Bans|RateLimit)|downlink_group\..*|observe_relay\..*|downlink_persist\..*)$'
begin "tsan build"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOAPGW_TSAN=ON
# coapgw-cid-client: the CID tests hand records between workers (a posted message per record).
cmake --build build-tsan -j"${jobs}" --target coapgwd coapgw-cid-client "${tsan_units[@]}"

begin "tsan tests"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:exitcode=66}"
for unit in "${tsan_units[@]}"; do
  echo "test.sh: ${unit} under ThreadSanitizer"
  "build-tsan/tests/unit/${unit#test_}/${unit}" --gtest_brief=1
done
ctest --test-dir build-tsan --output-on-failure -j2 -R "${tsan_integration}"
unset TSAN_OPTIONS

begin "fuzz"
if [[ -x scripts/fuzz.sh ]]; then
  scripts/fuzz.sh
elif [[ -f scripts/fuzz.sh ]]; then
  bash scripts/fuzz.sh
else
  fuzz_note="fuzz skipped: no scripts/fuzz.sh"
  echo "test.sh: ${fuzz_note}"
fi
begin "done"
