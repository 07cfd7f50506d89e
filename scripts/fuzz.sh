#!/usr/bin/env bash
# Builds the libFuzzer targets (clang) and runs each for the given seconds
# (default 60: the bounded CI run; 3600 for a long one) from its seed
# corpus in fuzz/corpus/<target>, as many targets at once as there are
# CPUs (MPROC_FUZZ_JOBS=N to choose; each target is one process): five
# targets of 60 s take 3 minutes on 2 CPUs. What a run finds is kept in
# build/fuzz/corpus-<target>; a crash leaves build/fuzz/crash-* and fails.
# Skips (exit 0) where clang has no libFuzzer.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${1:-60}
jobs=${MPROC_FUZZ_JOBS:-$(nproc)}
build=build/fuzz
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { (void)d; (void)n; return 0; }' |
    clang -x c -fsanitize=fuzzer - -o /tmp/mproc-fuzz-probe.$$ 2>/dev/null; then
  echo "fuzz: clang with libFuzzer not found; skipped"
  exit 0
fi
rm -f /tmp/mproc-fuzz-probe.$$
cmake -S . -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DMPROC_FUZZ=ON -DMPROC_BUILD_TESTS=OFF \
  -DMPROC_BUILD_EXAMPLES=OFF -DMPROC_BUILD_BENCH=OFF >/dev/null || exit 1
targets=(handshake frames manager launch export)
cmake --build "$build" --target "${targets[@]/#/fuzz_}" || exit 1
# One target, its verdict in fuzz-<target>.status for the summary.
fuzz_one() {
  local t=$1
  mkdir -p "$build/corpus-$t"
  # In the build directory: crash files land there, and fuzz_export's
  # by-name references stay away from anything of the user's.
  (cd "$build" && ASAN_OPTIONS=detect_leaks=1 "bin/fuzz_$t" -max_total_time="$secs" \
    -timeout=20 -rss_limit_mb=1024 "corpus-$t" "$root/fuzz/corpus/$t" >"fuzz-$t.log" 2>&1)
  echo $? >"$build/fuzz-$t.status"
}
rm -f "$build"/fuzz-*.status
start=$SECONDS
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait
status=0
failed=0
for t in "${targets[@]}"; do
  if [ "$(cat "$build/fuzz-$t.status" 2>/dev/null)" = 0 ]; then
    echo "fuzz_$t: $(grep -E '^#[0-9]+.*(DONE|pulse)' "$build/fuzz-$t.log" | tail -n 1)"
  else
    echo "fuzz_$t: FAILED (log: $build/fuzz-$t.log)"
    tail -n 30 "$build/fuzz-$t.log"
    status=1
    failed=$((failed + 1))
  fi
done
echo "fuzz: ${#targets[@]} targets, $secs s each, $jobs at once: $((${#targets[@]} - failed)) passed, $failed failed ($((SECONDS - start)) s)"
exit $status
