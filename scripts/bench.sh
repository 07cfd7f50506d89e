#!/usr/bin/env bash
# Builds mproc-bench and runs every workload against its raw floor and its
# peers (CPython multiprocessing, ZeroMQ), then writes the results as JSON
# and a bar chart of the ratios (gnuplot, SVG and PNG).
#
#   scripts/bench.sh                 full run (a few minutes), into docs/perf/
#   scripts/bench.sh --quick         about 30 s, into build/bench/
#   scripts/bench.sh --wine --quick  the Windows build under Wine (ratios only)
#   scripts/bench.sh --out DIR ...   other arguments go to mproc-bench
#                                    (--only NAME, --reps N, --no-peers)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
wine=0
out=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; args+=(--quick) ;;
    --wine) wine=1 ;;
    --out) out="$2"; shift ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ -z "$out" ]; then
  if [ "$quick" = 1 ] || [ "$wine" = 1 ]; then out=build/bench; else out=docs/perf; fi
fi
mkdir -p "$out"
tag=$([ "$wine" = 1 ] && echo windows || echo native)
json="$out/results-$tag.json"

# The native preset is RelWithDebInfo (-O2): optimised, as numbers need.
echo "bench: building mproc-bench ($tag)"
if [ "$wine" = 1 ]; then
  cmake --preset mingw >/dev/null
  cmake --build --preset mingw --target mproc_bench >/dev/null
  export WINEPREFIX="${WINEPREFIX:-$HOME/.cache/mproc-wine}"
  # shellcheck source=scripts/wine-env.sh
  . scripts/wine-env.sh
  wine_start
  run=(wine build/mingw/bin/mproc-bench.exe)
else
  cmake --preset native >/dev/null
  cmake --build --preset native --target mproc_bench >/dev/null
  run=(build/native/bin/mproc-bench)
fi

echo "bench: running (progress below; results in $json)"
start=$(date +%s)
# Progress goes to stderr, one line per workload and peer.
"${run[@]}" --json "${args[@]}" | tr -d '\r' >"$json"
echo "bench: done in $(( $(date +%s) - start )) s"

# A table of the results and the chart's data.
python3 - "$json" "$out/ratios-$tag.dat" "$out/peers-$tag.dat" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("\n%-10s %-14s %12s %12s %10s  %s" % ("workload", "unit", "mproc", "raw", "mproc/raw", "target"))
with open(sys.argv[2], "w") as dat:
    for w in r["workloads"]:
        if w.get("skipped"):
            print("%-10s skipped: %s" % (w["name"], w.get("skip_reason", "not available on this platform")))
            continue
        t = "%s %.2f %s" % (w["target_op"], w["target"], "PASS" if w["pass"] else "MISS") if "target" in w else "-"
        print("%-10s %-14s %12.4g %12.4g %10.3f  %s" % (w["name"], w["unit"], w["mproc"]["median"],
              w["raw"]["median"], w["ratio"]["median"], t))
        dat.write('"%s" %.6g %.6g %.6g %.6g\n' % (w["name"], w["ratio"]["median"], w["ratio"]["min"],
                  w["ratio"]["max"], w.get("target", 0)))
peers = r.get("peers", [])
if peers:
    print("\n%-24s %-9s %12s %12s %11s" % ("peer", "vs", "peer", "mproc", "mproc/peer"))
with open(sys.argv[3], "w") as dat:
    for p in peers:
        if "skipped" in p:
            print("%-24s %-9s skipped: %s" % (p["name"], p["workload"], p["skipped"]))
        elif "ratio" in p:
            print("%-24s %-9s %12.4g %12.4g %11.3f" % (p["name"], p["workload"], p["median"], p["mproc"], p["ratio"]))
            lower = p["unit"].startswith(("us/", "ms/"))
            dat.write('"%s" %.6g\n' % (p["name"], 1 / p["ratio"] if lower else p["ratio"]))
        else:
            print("%-24s %-9s %12.4g  (no mproc %s in this build)" % (p["name"], p["workload"], p["median"], p["workload"]))
PY

if ! command -v gnuplot >/dev/null; then
  echo "bench: gnuplot not found (scripts/setup.sh installs it): no chart"
  exit 0
fi
for fmt in svg png; do
  term=$([ "$fmt" = svg ] && echo "svg size 900,480 dynamic" || echo "png size 900,480")
  gnuplot <<GP
set terminal $term
set output "$out/ratios-$tag.$fmt"
set title "mproc / raw OS floor (median, bars: min-max; marks: target) - $tag"
set style fill solid 0.6
set boxwidth 0.6
set yrange [0:*]
set grid y
set xtics rotate by -30
set ylabel "ratio of the metric, mproc / raw"
plot "$out/ratios-$tag.dat" using 0:2:xtic(1) with boxes title "mproc/raw", \
     "" using 0:2:3:4 with yerrorbars lc rgb "black" pt 0 notitle, \
     "" using 0:(\$5 > 0 ? \$5 : 1/0) with points pt 7 ps 1.2 lc rgb "red" title "target", \
     1 with lines dt 2 lc rgb "gray" title "= raw"
GP
  if [ -s "$out/peers-$tag.dat" ]; then
    gnuplot <<GP
set terminal $term
set output "$out/peers-$tag.$fmt"
set title "How many times faster mproc is than each peer (log scale) - $tag"
set style fill solid 0.6
set boxwidth 0.6
set logscale y
set grid y
set xtics rotate by -30
set ylabel "mproc speed / peer speed"
plot "$out/peers-$tag.dat" using 0:2:xtic(1) with boxes title "speed-up", \
     1 with lines dt 2 lc rgb "gray" title "= peer"
GP
  fi
done
echo "bench: charts in $out/ratios-$tag.svg/.png and $out/peers-$tag.svg/.png"
