#!/bin/sh
# ctest's runner for a Windows test program under Wine:
#   wine-run.sh <wine> <seconds> <program.exe> [args...]
# The program's output goes through a file, not straight into ctest's pipe:
# ctest waits until every holder of its pipe has closed it, so a single
# Windows process left behind (a test's grandchild, a Wine service started
# on the way) would hold the run until ctest's timeout even though the
# program itself finished. Here the run ends when the program does; any
# process of the program still alive after that is reported and killed, so
# a leak shows up in the log instead of as a mysterious hang.
wine=$1
limit=$2
shift 2
exe=$(basename "$1")
log=$(mktemp "${TMPDIR:-/tmp}/wine-run.XXXXXX")
trap 'rm -f "$log"' EXIT
timeout -k 10 "$limit" "$wine" "$@" >"$log" 2>&1 </dev/null &
pid=$!
tail -n +1 -f --pid="$pid" "$log"
wait "$pid"
rc=$?
[ "$rc" -eq 124 ] && echo "wine-run: $exe did not finish in $limit s; killed"
# Only this program's processes: matched by its full path, as Unix sees it
# and as Wine shows it (Z:\dir\prog.exe), so other runs are left alone.
unix=$(cd "$(dirname "$1")" && pwd)/$exe
win=$(printf '%s' "$unix" | tr / '\\')
win="Z:$win"
for p in $(pgrep -f "$exe"); do
  args=$( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
  case $args in
    *wine-run.sh*) continue ;;
    "$unix"* | "$win"*) ;;
    *) continue ;;
  esac
  printf 'wine-run: left running after %s ended, killed now: %s %s\n' "$exe" "$p" "$args"
  kill -9 "$p" 2>/dev/null
done
exit "$rc"
