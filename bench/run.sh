#!/bin/bash
# The benchmark entry point: runs every bench/<area>.sh that exists, collects
# the rows they print and shows one table (and writes JSON) of medians and
# ratios against peers measured in the same run.
#
#   bench/run.sh [--out DIR] [AREA...]     (default: all areas, DIR=bench/out)
#
# Contract for bench/<area>.sh: run from the repository root with the project
# built in ./build; print one JSON object per line on stdout, each a row:
#   {"area": "format", "metric": "decompress", "unit": "MB/s", "value": 1234.5,
#    "n": 10, "peer": "zstd -d", "peer_value": 1100.0, "ratio": 1.12,
#    "better": "higher", "note": "per core"}
# value/peer_value are medians of n runs; ratio = value / peer_value; peer,
# peer_value, ratio and note may be null. Only stdout lines starting with '{'
# are rows; everything else the script prints is kept in DIR/AREA.log.
# A failing area is reported and the others still run.
set -uo pipefail
cd "$(dirname "$0")/.."

out=bench/out
areas=()
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=${2:?}; shift 2 ;;
	-h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) areas+=("$1"); shift ;;
	esac
done
if [ ${#areas[@]} -eq 0 ]; then
	for f in bench/*.sh; do
		a=$(basename "$f" .sh)
		case "$a" in run | plot | lib) ;; *) areas+=("$a") ;; esac
	done
fi
mkdir -p "$out"
# Areas that keep raw samples write them to $SM_BENCH_OUT/<area>.samples.json.
export SM_BENCH_OUT=$(realpath "$out")
rows="$out/rows.jsonl"
: > "$rows"
status=0
for a in "${areas[@]}"; do
	echo "bench: $a" >&2
	start=$(date +%s)
	if bash "bench/$a.sh" > "$out/$a.out" 2> "$out/$a.log"; then
		grep '^{' "$out/$a.out" > "$out/$a.jsonl" || true
		grep -v '^{' "$out/$a.out" >> "$out/$a.log" || true
		cat "$out/$a.jsonl" >> "$rows"
		echo "bench: $a done in $(( $(date +%s) - start )) s" >&2
	else
		echo "bench: $a FAILED (see $out/$a.log):" >&2
		tail -n 5 "$out/$a.log" | sed 's/^/  /' >&2
		status=1
	fi
done
python3 - "$rows" "$out/results.json" <<'PY'
import json, sys, platform, datetime
rows = []
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        rows.append(json.loads(line))
def fmt(v):
    if v is None: return "-"
    if isinstance(v, float): return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)
hdr = ["area", "metric", "ours", "unit", "n", "peer", "peer value", "ratio", "note"]
tab = [[r.get("area"), r.get("metric"), fmt(r.get("value")), r.get("unit") or "",
        fmt(r.get("n")), r.get("peer") or "-", fmt(r.get("peer_value")),
        fmt(r.get("ratio")), r.get("note") or ""] for r in rows]
w = [max(len(str(x)) for x in col) for col in zip(hdr, *tab)] if tab else [len(h) for h in hdr]
print("  ".join(h.ljust(n) for h, n in zip(hdr, w)))
for t in tab:
    print("  ".join(str(x).ljust(n) for x, n in zip(t, w)))
json.dump({"generated": datetime.datetime.utcnow().isoformat() + "Z",
           "host": platform.node(), "rows": rows}, open(sys.argv[2], "w"), indent=1)
PY
bash bench/plot.sh "$out" || echo "bench: plot failed (see above)" >&2
echo "bench: results in $out/results.json" >&2
exit $status
