#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Run the snapshot format benchmark (bench/format_bench.c) on a realistic
# synthetic 256 MiB guest memory image: 70% zero pages; code and text pages
# taken from this host's real binaries, libraries and headers; sparse
# struct-like pages; 2% random pages.
# Usage: bench/format.sh [BUILD_DIR] [format_bench options...]
#   BUILD_DIR defaults to $SM_BUILD, else ./build; the binary is BUILD_DIR/tests/format/format_bench
#   (build it with `make -C BUILD_DIR format_bench`). Options are passed
#   through, e.g. bench/format.sh build --frames 16,64,256,2048 --threads 2.
#   Set SM_BENCH_CORPUS=none to use generated code/text pages instead.
set -eu
B=${1:-${SM_BUILD:-build}}
[ $# -gt 0 ] && shift
BIN=$B/tests/format/format_bench
[ -x "$BIN" ] || { echo "format.sh: $BIN not built (make -C $B format_bench)" >&2; exit 125; }
echo "host: $(uname -r), $(nproc) CPUs,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)   zstd: $(pkg-config --modversion libzstd 2>/dev/null || echo ?)"
CORPUS=${SM_BENCH_CORPUS:-${TMPDIR:-/tmp}/format_bench.corpus}
if [ "$CORPUS" != none ]; then
	if [ ! -s "$CORPUS" ]; then
		{
			find /usr/bin /usr/lib/x86_64-linux-gnu -maxdepth 1 -type f -size +16k \
				2>/dev/null | LC_ALL=C sort | xargs cat 2>/dev/null | head -c 64M
			find /usr/include /usr/share/perl* -type f -name '*.[hp]*' 2>/dev/null |
				LC_ALL=C sort | xargs cat 2>/dev/null | head -c 32M
		} >"$CORPUS"
	fi
	set -- --corpus "$CORPUS" "$@"
fi
# Human-readable table to stderr; rows for bench/run.sh on stdout: our
# default frame size (16 KiB) against zstd itself in the same run: `zstd -3`
# of the whole raw image for size, and zstd's in-process benchmark on the
# same non-zero pages in 16 KiB blocks for decompression speed.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" --save-image "$tmp/mem.raw" "$@" >"$tmp/table"
cat "$tmp/table" >&2
raw_bytes=$(stat -c %s "$tmp/mem.raw")
zstd -q -3 -T1 -f "$tmp/mem.raw" -o "$tmp/mem.zst"
zst_bytes=$(stat -c %s "$tmp/mem.zst")
# zstd's own in-process benchmark on the same non-zero pages, cut in the same
# 16 KiB blocks as our frames: the library's speed limit on this data.
python3 -c '
import sys
src, dst = open(sys.argv[1], "rb"), open(sys.argv[2], "wb")
z = bytes(4096)
while True:
    p = src.read(4096)
    if not p: break
    if p != z: dst.write(p)' "$tmp/mem.raw" "$tmp/nonzero.raw"
zbench=$(zstd -b3 -i3 -B16384 "$tmp/nonzero.raw" 2>&1 | tr '\r' '\n' | grep 'MB/s,' | tail -n1)
dmed=$(echo "$zbench" | sed -n 's/.*MB\/s, *\([0-9.]*\) MB\/s.*/\1/p')
python3 - "$tmp/table" "$raw_bytes" "$zst_bytes" "$dmed" <<'PY'
import json, sys
table, raw, zst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dmed = float(sys.argv[4]) if sys.argv[4] else None
nonzero_mb = None
row = None
for line in open(table):
    f = line.split()
    if line.startswith("image:") and "non-zero" in line:
        # "... N non-zero (P%, X MB)"
        import re
        m = re.search(r"non-zero \(([0-9.]+)%, ([0-9.]+) MB\)", line)
        nonzero_mb = float(m.group(2))
        zero_share = 100.0 - float(m.group(1))
    if f and f[0] == "16" and len(f) >= 12:
        row = f
if row is None:
    sys.exit("format.sh: no 16 KiB row in the benchmark output")
snap = int(row[1])
decomp = float(row[6])
def r(metric, unit, value, peer=None, pv=None, better=None, note=None):
    print(json.dumps({"area": "format", "metric": metric, "unit": unit, "value": value, "n": 1,
                      "peer": peer, "peer_value": pv,
                      "ratio": round(value / pv, 3) if pv else None, "better": better,
                      "note": note}))
r("snapshot_size", "MB", round(snap / 1e6, 2), "zstd -3 of the raw image", round(zst / 1e6, 2),
  "lower", f"{raw/2**20:.0f} MiB synthetic guest memory, {zero_share:.0f}% zero pages")
r("memory_compression_ratio", "x", round(raw / snap, 2), "zstd -3 of the raw image",
  round(raw / zst, 2), "higher", "raw bytes / stored bytes")
r("zero_page_share", "%", round(zero_share, 1))
# zstd CLI decompression: MB of non-zero pages per second (comparable units).
r("decompress_per_core", "MB/s", decomp, "zstd -b3 -B16384 (same pages)",
  dmed or None, "higher",
  "MB of non-zero pages per second of one core; 16 KiB frames")
r("page_read_p50", "us", float(row[8]), None, None, "lower", "random page, warm file")
r("page_read_p99", "us", float(row[9]), None, None, "lower", "random page, warm file")
r("compress_per_core", "MB/s", float(row[4]), None, None, "higher", "zstd level 3")
PY
