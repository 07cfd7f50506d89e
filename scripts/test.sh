#!/usr/bin/env bash
# The whole test suite: the native build under the fork and the spawn start
# methods, the same in portable-POSIX mode and under AddressSanitizer +
# UBSan, valgrind, TSan and fuzz passes, then the MinGW-w64 build under
# Wine. Prints each suite's summary.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh || exit 1
. scripts/wine-env.sh

failed=()
run_preset() {
  local preset=$1
  echo "=== $preset: configure and build"
  if ! cmake --preset "$preset" >/dev/null || ! cmake --build --preset "$preset"; then
    failed+=("$preset (build)")
    return
  fi
  echo "=== $preset: tests"
  ctest --preset "$preset" || failed+=("$preset")
}

run_preset native
# The POSIX backend limited to what macOS offers (no robust mutexes, no
# unnamed process-shared semaphores): the whole suite again.
run_preset portable
# Valgrind over the whole suite under fork and the child-start suites
# under spawn, TSan over the whole suite (fork and spawn) and a
# multi-threaded driver, each fuzz target for 60 s, two at once
# (docs/RELIABILITY.md: what each leaves out and why).
run_script() {
  local name=$1
  shift
  echo "=== $name"
  "$@" || failed+=("$name")
}
run_script valgrind nice bash scripts/valgrind.sh
run_script tsan nice bash scripts/tsan.sh
run_script fuzz nice bash scripts/fuzz.sh 60
run_preset asan
wine_start
trap wine_stop EXIT
run_preset mingw

echo "=== summary"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all suites passed"
