#!/bin/bash
# Boot, run `/bin/sh -c 'echo hello; exit 3'` through the agent: the host
# must print exactly "hello" on stdout and exit 3.
. "$(dirname "$0")/vm_common.sh" "$1"
set +e
"$smrun" --kernel "$kernel" --console "$work/console" --timing -- /bin/sh -c 'echo hello; exit 3' \
	>"$work/out" 2>"$work/err"
rc=$?
set -e
cat "$work/err" >&2
if [ "$rc" != 3 ] || [ "$(cat "$work/out")" != hello ]; then
	echo "FAIL: rc=$rc stdout='$(cat "$work/out")' (want rc=3 stdout=hello)" >&2
	tail -n 30 "$work/console" >&2 || true
	exit 1
fi
echo "PASS: hello, exit 3"
