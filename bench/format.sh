#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Run the snapshot format benchmark (bench/format_bench.c) on a realistic
# synthetic 256 MiB guest memory image: 70% zero pages; code and text pages
# taken from this host's real binaries, libraries and headers; sparse
# struct-like pages; 2% random pages.
# Usage: bench/format.sh [BUILD_DIR] [format_bench options...]
#   BUILD_DIR defaults to ./build; the binary is BUILD_DIR/tests/format/format_bench
#   (build it with `make -C BUILD_DIR format_bench`). Options are passed
#   through, e.g. bench/format.sh build --frames 16,64,256,2048 --threads 2.
#   Set SM_BENCH_CORPUS=none to use generated code/text pages instead.
set -eu
B=${1:-build}
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
exec "$BIN" "$@"
