#!/usr/bin/env bash
# Builds and runs every libFuzzer target `fuzz_<name>` that has a seed corpus in
# tests/fuzz/corpus/<name>/, splitting ${FUZZ_SECONDS:-60} seconds between them.
# Each run works on a fresh copy of the seed corpus (the checked-in corpus is never written);
# crash inputs land in build-fuzz/fuzz-artifacts/<name>/. Exits non-zero if any target fails.
#
#   FUZZ_SECONDS=30 scripts/fuzz.sh          # all targets
#   scripts/fuzz.sh codec                    # only fuzz_codec
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
corpus_root="$root/tests/fuzz/corpus"
total_seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_BUILD_JOBS:-2}"

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
mkdir -p "$build"
# Always (re)configure: cheap when cached, and repairs a build dir whose last generate failed.
[[ -f "$build/CMakeCache.txt" ]] && generator=()
CXX=clang++ cmake -S "$root" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOAPGW_FUZZ=ON >"$build/fuzz-configure.log" 2>&1 || {
  cat "$build/fuzz-configure.log" >&2
  echo "fuzz.sh: configure failed" >&2
  exit 1
}

# Targets the build knows about (fuzz targets are only defined with COAPGW_FUZZ=ON).
known_targets="$(cmake --build "$build" --target help 2>/dev/null | grep -oE '\bfuzz_[A-Za-z0-9_]+' | sort -u || true)"

names=()
if (($# > 0)); then
  names=("$@")
else
  for dir in "$corpus_root"/*/; do
    [[ -d "$dir" ]] && names+=("$(basename "$dir")")
  done
fi

targets=()
for name in "${names[@]}"; do
  if [[ ! -d "$corpus_root/$name" ]]; then
    echo "fuzz.sh: no corpus folder tests/fuzz/corpus/$name" >&2
    exit 1
  fi
  if grep -qx "fuzz_$name" <<<"$known_targets"; then
    targets+=("$name")
  else
    echo "fuzz.sh: corpus/$name has no fuzz_$name target, skipped" >&2
  fi
done
if ((${#targets[@]} == 0)); then
  echo "fuzz.sh: nothing to fuzz" >&2
  exit 1
fi

build_targets=()
for name in "${targets[@]}"; do build_targets+=(--target "fuzz_$name"); done
cmake --build "$build" "${build_targets[@]}" -j"$jobs"

per_target=$((total_seconds / ${#targets[@]}))
((per_target < 1)) && per_target=1

failed=0
summary=()
for name in "${targets[@]}"; do
  binary="$(find "$build" -type f -perm -u+x -name "fuzz_$name" | head -n1)"
  work="$build/fuzz-work/$name"
  artifacts="$build/fuzz-artifacts/$name"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$artifacts"
  cp -a "$corpus_root/$name/." "$work/corpus/"
  echo "== fuzz_$name for ${per_target}s (corpus copy: $work/corpus)"
  status=0
  "$binary" -max_total_time="$per_target" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work/corpus" >"$work/log" 2>&1 || status=$?
  execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$work/log" | grep -oE '[0-9]+$' | tail -n1)"
  if ((status != 0)); then
    failed=1
    tail -n 40 "$work/log" >&2
    summary+=("fuzz_$name: FAILED (exit $status), executions ${execs:-?}, artifacts in $artifacts")
  else
    summary+=("fuzz_$name: ok, executions ${execs:-?}, corpus $(ls "$work/corpus" | wc -l) files")
  fi
done

printf '%s\n' "${summary[@]}"
exit "$failed"
