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
[ ${#harnesses[@]} -gt 0 ] || harnesses=(image tensor_file metadata labels model)
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
  # libFuzzer's leak check after each input that mallocs more than it frees scans the whole
  # heap, LibTorch's included: 10x slower for the harnesses that go through LibTorch's readers.
  # Their leaks are still checked once, when the run ends.
  extra=()
  case $harness in model | tensor_file) extra=(-detect_leaks=0) ;; esac
  # -rss_limit_mb: an input that makes the process use gigabytes is a finding too. A single
  # malloc is judged by what it touches, not its size: LibTorch's zip reader allocates the
  # size a record declares before reading it, which in a release build costs address space
  # only, the read stopping at the end of the file (the same limits as ctest's replays).
  "$build/fuzz_$harness" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=3072 \
    -malloc_limit_mb=16384 \
    -print_final_stats=1 -artifact_prefix="$root/findings/$harness-" "${extra[@]}" \
    "$corpus" "$root/seeds/$harness" $regressions >"$log" 2>&1 || status=$?
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
