#!/bin/bash
# Two concurrent execs both complete. Each one registers itself and waits
# until the other has registered too, so they can only finish if the agent
# really runs them at the same time.
. "$(dirname "$0")/vm_common.sh" "$1"
cmd='mkdir -p /tmp/p; touch /tmp/p/$$; i=0
while [ "$(ls /tmp/p | wc -l)" -lt 2 ]; do
	i=$((i + 1)); [ $i -gt 600 ] && { echo timeout; exit 9; }; sleep 0.05
done; echo ok'
set +e
"$smrun" --kernel "$kernel" --console "$work/console" --parallel 2 -- /bin/sh -c "$cmd" \
	>"$work/out" 2>"$work/err"
rc=$?
set -e
cat "$work/err" >&2
if [ "$rc" != 0 ] || [ "$(cat "$work/out")" != "$(printf 'ok\nok')" ]; then
	echo "FAIL: rc=$rc stdout='$(cat "$work/out")' (want two 'ok' lines)" >&2
	tail -n 30 "$work/console" >&2 || true
	exit 1
fi
echo "PASS: two concurrent execs completed"
