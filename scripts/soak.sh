#!/usr/bin/env bash
# Soak test (not part of CI): a mixed load of locks, shared values, queues,
# pipes and a pool across 8 processes with random kills, for the given
# minutes under each start method, checking invariants and that memory and
# descriptor counts stay flat (tests/soak.c says which). Prints a summary.
# Usage: scripts/soak.sh [minutes per start method, default 5] [seed]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
minutes=${1:-5}
seed=${2:-$(date +%s)}
cmake --preset native >/dev/null && cmake --build --preset native --target mproc_soak || exit 1
status=0
for method in fork spawn; do
  MPROC_START_METHOD=$method nice build/native/bin/mproc_soak "$minutes" "$seed" || status=1
done
# Nothing of mproc's left in /dev/shm that no process holds (the same
# check as the suite's last test).
cmake --build --preset native --target mproc_tests >/dev/null || exit 1
if MPROC_DEVSHM_STRICT=1 build/native/bin/mproc_tests --filter 'devshm/*' >/dev/null 2>&1; then
  echo "soak: nothing left behind in /dev/shm"
else
  echo "soak: mproc objects left behind in /dev/shm"
  status=1
fi
exit $status
