#!/bin/bash
# Plot of restore latency distributions, ours vs peers, from the raw samples
# that bench areas write when SM_BENCH_OUT is set (DIR/<area>.samples.json).
# Every list of numbers under a key ending in "_ms" becomes one box with its
# samples drawn over it (log scale). Draws DIR/restore.png with gnuplot.
#
#   bench/plot.sh [DIR]           (default bench/out)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-bench/out}
command -v gnuplot >/dev/null || { echo "plot: gnuplot not installed (gnuplot-nox)" >&2; exit 1; }
shopt -s nullglob
files=("$dir"/*.samples.json)
[ ${#files[@]} -gt 0 ] || { echo "plot: no $dir/*.samples.json (run areas with SM_BENCH_OUT=$dir)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# data: per series index, min, quartiles, max; points: jittered samples; labels
python3 - "$work" "${files[@]}" <<'PY'
import json, os, random, sys
work, files = sys.argv[1], sys.argv[2:]
random.seed(1)
series = []
for f in sorted(files):
    area = os.path.basename(f)[:-len(".samples.json")]
    s = json.load(open(f))
    if not isinstance(s, dict):
        continue
    for key, v in s.items():
        if (key.endswith("_ms") and isinstance(v, list) and v
                and all(isinstance(x, (int, float)) for x in v)):
            series.append((f"{area}: {key[:-3]}", v))
if not series:
    sys.exit("plot: no latency samples (keys ending in _ms) in " + ", ".join(files))
def q(v, f):  # linear-interpolated quantile
    v = sorted(v)
    i = (len(v) - 1) * f
    lo = int(i)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (i - lo)
with open(work + "/data", "w") as d, open(work + "/points", "w") as p:
    for n, (_, v) in enumerate(series, 1):
        # x, min, q1, median, q3, max
        d.write(f"{n} {min(v)} {q(v, .25)} {q(v, .5)} {q(v, .75)} {max(v)}\n")
        for x in v:
            p.write(f"{n + random.uniform(-0.15, 0.15):.3f} {x}\n")
with open(work + "/labels", "w") as l:
    l.write(", ".join(f'"{name} (n={len(v)})" {n}' for n, (name, v) in enumerate(series, 1)))
with open(work + "/count", "w") as c:
    c.write(str(len(series)))
PY
n=$(cat "$work/count")
if gnuplot -e 'set terminal pngcairo' 2>/dev/null; then term="pngcairo size 1400,650 font 'sans,10'"
else term="png size 1400,650"; fi
gnuplot <<GP
set terminal $term
set output '$dir/restore.png'
set title 'Restore latency: supermachine vs peers (emulated KVM host; lower is better)'
set ylabel 'milliseconds (log scale)'
set logscale y
set grid ytics
set xrange [0.5:$n + 0.5]
set xtics rotate by -20 ($(cat "$work/labels"))
set style fill solid 0.25 border -1
set bmargin 8
set rmargin 24
set termoption noenhanced
unset key
plot '$work/data' using 1:3:2:6:5:(0.5):1 with candlesticks whiskerbars lc variable lw 1, \
     '$work/data' using 1:4:4:4:4:(0.5) with candlesticks lc rgb 'black' lw 2, \
     '$work/points' using 1:2 with points pt 7 ps 0.6 lc rgb '#333333'
GP
echo "plot: wrote $dir/restore.png" >&2
