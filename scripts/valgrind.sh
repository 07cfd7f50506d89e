#!/usr/bin/env bash
# Valgrind memcheck over a chosen part of the suite (the whole one takes
# over an hour under valgrind here): the fault-injection suite, the suites
# that move objects between processes as blobs (export, shm), with the
# fork start method, and the launch suite with spawn (its children run
# under valgrind too). The pipe suite is left out for time (2 min more:
# 64 MiB and 10,000-message transfers); run it with
# MPROC_VALGRIND_MORE='pipe/*' scripts/valgrind.sh. Fails on any memcheck error or any block
# definitely lost, in the test processes and in every child they start.
# Suppressions: scripts/valgrind.supp (each one says why).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=build/native/bin/mproc_tests
[ -x "$bin" ] || { echo "valgrind: build the native preset first"; exit 1; }
logs=build/native/valgrind
rm -rf "$logs"
mkdir -p "$logs"
status=0
nrun=0
run() {
  local method=$1 filter=$2
  echo "=== valgrind: $filter ($method)"
  MPROC_START_METHOD=$method valgrind --trace-children=yes --leak-check=full \
    --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --suppressions=scripts/valgrind.supp --log-file="$logs/%p.log" -q \
    "$bin" --jobs 1 --filter "$filter" >"$logs/run-$nrun.txt" 2>&1
  local rc=$?
  grep -E -A3 "^\[(FAIL|====)\]|Assertion|\[SKIP\]|Timeout|timed out" "$logs/run-$nrun.txt"
  [ "$rc" -eq 0 ] || status=1
  nrun=$((nrun + 1))
}
run fork 'faults/*'
run fork 'export/*'
run fork 'shm/*'
run spawn 'launch/*'
for f in ${MPROC_VALGRIND_MORE:-}; do run fork "$f"; done
# valgrind does not know pidfd_open (syscall 434) and says so on every
# child start: mproc then falls back to its waitid watcher, a case worth
# running. Everything else in a log is a finding.
findings=$(cat "$logs"/*.log 2>/dev/null | grep -v -e "unhandled amd64-linux syscall: 434" \
  -e "You may be able to write your own handler" -e "README_MISSING_SYSCALL_OR_IOCTL" \
  -e "Nevertheless we consider this a bug" -e "valgrind.org/support/bug_reports" || true)
if [ -n "$findings" ]; then
  echo "$findings" | head -n 200
  echo "valgrind: FINDINGS (logs in $logs)"
  status=1
else
  echo "valgrind: no errors, nothing definitely lost ($(ls "$logs" | wc -l) processes checked)"
fi
exit $status
