#!/usr/bin/env bash
# The API reference: Doxygen over include/ (and the docs/ pages) into
# build/docs/html. Fails when Doxygen warns, e.g. on an undocumented public
# function.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! command -v doxygen >/dev/null; then
  echo "docs: installing doxygen"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends doxygen >/dev/null
fi
export MPROC_DOCS_OUT="$root/build/docs"
MPROC_VERSION=$(sed -n 's/^#define MPROC_VERSION_STRING "\(.*\)"$/\1/p' include/mproc/version.h)
export MPROC_VERSION
rm -rf "$MPROC_DOCS_OUT"
mkdir -p "$MPROC_DOCS_OUT"
echo "docs: doxygen $(doxygen --version), mproc $MPROC_VERSION"
doxygen docs/Doxyfile
log="$MPROC_DOCS_OUT/warnings.log"
# queue.h and manager.h do not carry Doxygen comments yet: warnings about
# them are shown, not fatal. Every other warning fails the run.
pending='include/mproc/(queue|manager)\.h:'
if [ -s "$log" ]; then
  n_pending=$(grep -Ec "$pending" "$log" || true)
  [ "$n_pending" -eq 0 ] || echo "docs: $n_pending warning(s) in queue.h / manager.h (not fatal)"
  if grep -Evq "$pending" "$log"; then
    grep -Ev "$pending" "$log" >&2
    echo "docs: warnings above" >&2
    exit 1
  fi
fi
echo "docs: build/docs/html/index.html"
