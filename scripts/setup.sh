#!/usr/bin/env bash
# Installs what building, testing and the demo need (Debian/Ubuntu), once:
# packages already present are not installed again.
set -euo pipefail

packages=(
  cmake ninja-build gcc clang pkg-config
  libcriterion-dev libssl-dev
  gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 g++ wine64 wine
  python3 valgrind
  libzmq3-dev gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: toolchains ready ($(cmake --version | head -n1), $(gcc --version | head -n1), $(x86_64-w64-mingw32-gcc --version | head -n1))"
