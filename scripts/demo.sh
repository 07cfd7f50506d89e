#!/usr/bin/env bash
# Builds mproc and runs the examples: natively, then the Windows build
# under Wine. Says what it is doing as it goes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
echo "=== checking the tools (installs missing packages once)"
bash scripts/setup.sh
. scripts/wine-env.sh

# Builds a preset, showing progress every 20 steps and any compiler output.
build() {
  local preset=$1
  echo "=== configuring ($preset)"
  cmake --preset "$preset" >/dev/null
  echo "=== building ($preset)"
  cmake --build --preset "$preset" | awk '
    /^\[[0-9]+\/[0-9]+\]/ {
      split(substr($1, 2, length($1) - 2), n, "/")
      if (n[1] > 0 && (n[1] % 20 == 0 || n[1] == n[2])) { print "    " n[1] " of " n[2] " build steps done"; fflush() }
      next
    }
    { print; fflush() }'
}

build native
for ex in build/native/bin/example_*; do
  echo "=== $(basename "$ex") (native, start method: ${MPROC_START_METHOD:-fork})"
  "$ex"
done

build mingw
echo "=== starting Wine"
wine_start
trap wine_stop EXIT
for ex in build/mingw/bin/example_*.exe; do
  echo "=== $(basename "$ex") (Windows under Wine, spawn)"
  wine "$ex"
done
echo "=== demo done"
