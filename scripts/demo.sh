#!/usr/bin/env bash
# Builds mproc and runs the examples: natively, then the Windows build
# under Wine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
. scripts/wine-env.sh

echo "=== building (native)"
cmake --preset native >/dev/null
cmake --build --preset native >/dev/null
for ex in build/native/bin/example_*; do
  echo "=== $(basename "$ex") (native, start method: ${MPROC_START_METHOD:-fork})"
  "$ex"
done

echo "=== building (Windows, MinGW-w64)"
cmake --preset mingw >/dev/null
cmake --build --preset mingw >/dev/null
wine_start
trap wine_stop EXIT
for ex in build/mingw/bin/example_*.exe; do
  echo "=== $(basename "$ex") (Windows under Wine, spawn)"
  wine "$ex"
done
