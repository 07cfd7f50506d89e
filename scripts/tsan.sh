#!/usr/bin/env bash
# mproc under ThreadSanitizer: a clang -fsanitize=thread build of the whole
# test suite, run under the fork and the spawn start methods, and of
# tests/tsan_driver.c (the suite calls mproc from one thread per process;
# the driver calls it from several: pool submitters with on_done callbacks,
# manager clients, mp_wait). The suite runs on the Criterion stand-in of
# tests/shim (MPROC_TEST_SHIM): Criterion's BoxFort arena collides with
# TSan's shadow memory.
#   scripts/tsan.sh [FILTER]   FILTER: a --filter glob, e.g. 'queue/*'
#                              (default '*': every test)
#   MPROC_TSAN_METHODS=spawn scripts/tsan.sh   one start method only
#   MPROC_TSAN_JOBS=N          tests run at once (default: the CPUs online;
#                              each test's output is printed whole as it ends)
# Kill-at-random tests kill 20 times, not 120-200 (MPROC_TEST_KILLS; each
# kill costs a child start, and TSan sees threads, not the processes the
# kills are about). The big transfers are in: at a load of 1-3 here the
# 256 MiB item took 44 s under fork, 18 s under spawn, within its 120 s
# timeout (an earlier run on a loaded machine saw it pass that timeout).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
filter=${1:-*}
build=build/tsan
cmake -S . -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS="-fsanitize=thread -g -O1" -DMPROC_BUILD_EXAMPLES=OFF \
  -DMPROC_BUILD_BENCH=OFF -DMPROC_TEST_SHIM=ON >/dev/null || exit 1
cmake --build "$build" --target mproc_tests mproc_tsan_driver || exit 1
# halt_on_error: a report in any process (a test, its children, the
# manager's server) ends that process with exitcode 66; the log is checked
# for reports too, for processes whose exit no test looks at.
# die_after_fork=0: with the fork start method, tests fork from processes
# that run threads (pool handlers, watchers, manager sessions).
# Thread leaks are not checked: a spawned manager server exits with
# finished session threads never joined (docs/RELIABILITY.md), harmless at
# exit.
export MPROC_TEST_KILLS=${MPROC_TEST_KILLS:-20}
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:die_after_fork=0:report_thread_leaks=0"
status=0
run() {
  local name=$1 log=$2
  shift 2
  local start=$SECONDS
  if ! timeout 3600 "$@" >"$log" 2>&1 || grep -q "WARNING: ThreadSanitizer" "$log"; then
    echo "tsan ($name): FAILED: $(tail -n 1 "$log") ($((SECONDS - start)) s)"
    grep -E -A40 "^\[(FAIL|CRASH|TIMEOUT)\]|WARNING: ThreadSanitizer" "$log" | head -400
    status=1
  else
    echo "tsan ($name): $(tail -n 1 "$log") ($((SECONDS - start)) s)"
  fi
}
for method in ${MPROC_TSAN_METHODS:-fork spawn}; do
  export MPROC_START_METHOD=$method
  run "suite, $method" "$build/tsan-suite-$method.log" \
    "$build/bin/mproc_tests" --jobs "${MPROC_TSAN_JOBS:-$(nproc)}" --filter "$filter"
  run "driver, $method" "$build/tsan-driver-$method.log" "$build/bin/mproc_tsan_driver"
done
exit $status
