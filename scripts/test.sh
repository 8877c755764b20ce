#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. missing Debian packages installed (build deps and test peers);
#   2. Release build of everything in build/, then every test through ctest
#      (unit tests and the integration tests against the real coapgwd);
#   3. AddressSanitizer + UndefinedBehaviorSanitizer Debug build in build-asan/,
#      unit tests only (integration tests are all named integration.*);
#   4. scripts/fuzz.sh for a bounded time (FUZZ_SECONDS, default 60) if present.
# Stops at the first failing stage and prints one summary line at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs="${JOBS:-$(nproc)}"
export FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
start=$(date +%s)
stage="install-deps"
fuzz_note="fuzz ${FUZZ_SECONDS}s"
on_exit() {
  local rc=$?
  local took=$(( $(date +%s) - start ))
  if [[ $rc -eq 0 ]]; then
    echo "test.sh: PASS (release build + ctest, asan/ubsan unit tests, ${fuzz_note}) in ${took}s"
  else
    echo "test.sh: FAIL at stage '${stage}' (exit ${rc}) after ${took}s" >&2
  fi
}
trap on_exit EXIT

scripts/install-deps.sh

stage="release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"${jobs}"

stage="ctest (unit + integration)"
ctest --test-dir build --output-on-failure -j2

stage="asan/ubsan build"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCOAPGW_SANITIZE=ON
cmake --build build-asan -j"${jobs}"

stage="asan/ubsan unit tests"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir build-asan --output-on-failure -j2 -E '^integration\.'

stage="fuzz"
if [[ -x scripts/fuzz.sh ]]; then
  scripts/fuzz.sh
elif [[ -f scripts/fuzz.sh ]]; then
  bash scripts/fuzz.sh
else
  fuzz_note="fuzz skipped: no scripts/fuzz.sh"
  echo "test.sh: ${fuzz_note}"
fi
stage="done"
