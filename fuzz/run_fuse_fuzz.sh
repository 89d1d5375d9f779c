#!/bin/sh
# Build the FUSE server fuzz target with clang (libFuzzer + ASan + UBSan) and
# run it for SECONDS (default 60) over the seed corpus in fuzz/corpus/fuse.
# New inputs go to a scratch corpus under $SM_FUZZ_DIR (default /tmp); the
# checked-in seeds are only read. Exits non-zero on any crash or leak.
set -eu
secs=${1:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
work=${SM_FUZZ_DIR:-${TMPDIR:-/tmp}/sm-fuse-fuzz-$(id -u)}
cc=${CC:-}
if [ -z "$cc" ]; then
	for c in clang-14 clang; do
		if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
	done
fi
if [ -z "$cc" ]; then
	echo "run_fuse_fuzz: clang not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
	exit 1
fi
mkdir -p "$work/corpus"
"$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-missing-field-initializers -Wno-unknown-warning-option \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$src/include" -I"$src" \
	"$src/fuzz/fuse_fuzz.c" "$src"/fuse/*.c "$src/common/error.c" -lpthread \
	-o "$work/fuse_fuzz"
cd "$work"
exec ./fuse_fuzz -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=70000 \
	-print_final_stats=1 "$work/corpus" "$src/fuzz/corpus/fuse"
