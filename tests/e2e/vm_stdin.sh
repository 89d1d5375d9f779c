#!/bin/bash
# 1 MiB of random bytes piped to `cat` in the guest come back byte-exact.
. "$(dirname "$0")/vm_common.sh" "$1"
head -c 1048576 /dev/urandom >"$work/in"
set +e
"$smrun" --kernel "$kernel" --console "$work/console" -- cat <"$work/in" >"$work/out" 2>"$work/err"
rc=$?
set -e
cat "$work/err" >&2
if [ "$rc" != 0 ] || ! cmp "$work/in" "$work/out"; then
	echo "FAIL: rc=$rc, $(stat -c %s "$work/out") bytes back of 1048576" >&2
	tail -n 30 "$work/console" >&2 || true
	exit 1
fi
echo "PASS: 1 MiB through cat, byte-exact ($(sha256sum <"$work/out" | cut -c1-16))"
