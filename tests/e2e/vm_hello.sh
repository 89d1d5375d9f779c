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

# The command starts with default signal dispositions: the agent ignores
# SIGPIPE itself, which exec would pass on (shell pipelines rely on it).
"$smrun" --kernel "$kernel" --console "$work/console2" --no-stdin -- \
	grep SigIgn /proc/self/status >"$work/out2" 2>"$work/err2" || {
	cat "$work/err2" >&2
	echo "FAIL: grep SigIgn" >&2
	exit 1
}
if [ "$(tr -d ' \t' <"$work/out2")" != SigIgn:0000000000000000 ]; then
	echo "FAIL: the command inherited ignored signals: $(cat "$work/out2")" >&2
	exit 1
fi
echo "PASS: no signal ignored in the command"
