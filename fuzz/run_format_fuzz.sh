#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Build the snapshot-reader fuzzer with clang (libFuzzer + ASan + UBSan) and
# run it for a bounded time over the committed seed corpus.
# Usage: fuzz/run_format_fuzz.sh [SECONDS] [BUILD_DIR]
#   SECONDS    how long to fuzz (default 60)
#   BUILD_DIR  where to build and keep the working corpus (default: a temp dir)
# Exit status: 0 no crash, non-zero on a build failure or any crash/report
# (the reproducer is left in BUILD_DIR as crash-*, leak-*, timeout-* or oom-*).
set -eu
SECS=${1:-60}
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${2:-}
if [ -z "$OUT" ]; then
	OUT=$(mktemp -d /tmp/sm-fuzz-format-XXXXXX)
fi
mkdir -p "$OUT/corpus"
CC=${CC:-}
if [ -z "$CC" ]; then
	for c in clang-14 clang; do
		if command -v $c >/dev/null 2>&1; then CC=$c; break; fi
	done
fi
[ -n "$CC" ] || { echo "run_format_fuzz: clang not found" >&2; exit 125; }

$CC -std=gnu11 -g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-I"$SRC/include" -I"$SRC" \
	"$SRC/fuzz/format_reader_fuzz.c" "$SRC"/format/*.c "$SRC/common/error.c" \
	-lzstd -ljansson -lpthread -o "$OUT/format_reader_fuzz"

cd "$OUT"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
./format_reader_fuzz -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 \
	-timeout=10 -print_final_stats=1 "$OUT/corpus" "$SRC/fuzz/corpus/format"
