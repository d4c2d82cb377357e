#!/usr/bin/env bash
# Runs each libFuzzer harness of tests/fuzz for a set time under ASan + UBSan.
#   scripts/fuzz.sh BUILD_DIR SECONDS [HARNESS...]
# Corpora grow in build/fuzz/corpus/<harness> (seeded by tests/fuzz/make_seeds.py and by the
# regression inputs in tests/fuzz/regressions/<harness>); a crashing input is written to
# build/fuzz/findings/ and fails the run. Prints executions per harness at the end.
set -euo pipefail
build=$1
seconds=$2
shift 2
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(image tensor_file metadata labels model package infer_request)
root=build/fuzz
mkdir -p "$root/findings" "$root/logs"
source "$(dirname "$0")/sanitizer-env.sh"
summary=()
failed=0
for harness in "${harnesses[@]}"; do
  corpus=$root/corpus/$harness
  mkdir -p "$corpus"
  regressions=tests/fuzz/regressions/$harness
  [ -d "$regressions" ] || regressions=
  log=$root/logs/$harness.log
  echo "fuzz: $harness for ${seconds}s (log: $log)"
  status=0
  # The harnesses that go through LibTorch's readers fuzz without leak checks, then replay
  # their whole corpus once with them: LeakSanitizer must unwind through LibTorch (built
  # without frame pointers) to tell its importer's own leaks (lsan.supp) from tsnative's, and
  # that slow unwinding costs 20x the executions. The others check every input as it runs.
  replay=0
  env=()
  extra=()
  case $harness in model | tensor_file | package)
    replay=1
    env=(ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}")
    extra=(-detect_leaks=0) ;; # libFuzzer's own per-input check too (10x slower without LSan)
  esac
  # -rss_limit_mb: an input that makes the process use gigabytes is a finding too. A single
  # malloc is judged by what it touches, not its size: LibTorch's zip reader allocates the
  # size a record declares before reading it, which in a release build costs address space
  # only, the read stopping at the end of the file (the same limits as ctest's replays).
  limits=(-timeout=30 -rss_limit_mb=3072 -malloc_limit_mb=16384)
  env "${env[@]}" "$build/fuzz_$harness" -max_total_time="$seconds" "${limits[@]}" \
    -print_final_stats=1 -artifact_prefix="$root/findings/$harness-" "${extra[@]}" \
    "$corpus" "$root/seeds/$harness" $regressions >"$log" 2>&1 || status=$?
  if [ "$status" -eq 0 ] && [ "$replay" -eq 1 ]; then
    echo "fuzz: $harness: its corpus once more, checking for leaks"
    env ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0" "$build/fuzz_$harness" -runs=0 \
      -artifact_prefix="$root/findings/$harness-" \
      "${limits[@]}" "$corpus" "$root/seeds/$harness" $regressions >>"$log" 2>&1 || status=$?
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ "$status" -ne 0 ]; then
    failed=1
    summary+=("$(printf '%-12s FAILED (exit %d): see %s' "$harness" "$status" "$log")")
    # The report and its stack, so that a CI log alone tells where it failed.
    awk '/^==[0-9]+==ERROR|runtime error:|terminate called/ {on = 1}
         on && n < 40 {print; n++}
         /^SUMMARY:/ {on = 0}' "$log"
    grep -E "Test unit written" "$log" | head -1 || true
  else
    summary+=("$(printf '%-12s %10s executions  %6s/s  corpus %s files' "$harness" \
      "${runs:-?}" "${rate:-?}" "$(find "$corpus" -type f | wc -l)")")
  fi
done
echo "fuzz: results (${seconds}s each, $(lscpu | sed -n 's/^Model name: *//p' | head -1))"
printf '  %s\n' "${summary[@]}"
exit $failed
