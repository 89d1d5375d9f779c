#!/bin/bash
# Snapshot of a 2-vCPU, 128 MiB guest: both CPUs are online after restore
# and run work (two busy loops at once), the memory size is
# what was baked, and the guest clock moves forward.
. "$(dirname "$0")/snap_common.sh" "$1"
fail() {
	echo "FAIL: $*" >&2
	cat "$work"/err* >&2 2>/dev/null || true
	exit 1
}
"$smrun" --kernel "$kernel" --console "$work/bake-console" --cpus 2 --mem 128 \
	--snapshot-out "$snap" >"$work/bake-out" 2>"$work/bake-err" || {
	cat "$work/bake-err" >&2
	fail "bake"
}
"$smsnap" dump "$snap" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["metadata"]["vcpus"] == 2 and d["metadata"]["memory_size"] == 128 << 20, d["metadata"]
assert sorted(s["instance"] for s in d["sections"] if s["type"] == "vcpu") == [0, 1], d["sections"]
' || fail "metadata"
cmd='grep -c ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/online
grep MemTotal /proc/meminfo | awk "{print (\$2 > 64000 && \$2 <= 131072) ? \"mem ok\" : \"mem \" \$2}"
a=$(cat /proc/uptime | cut -d" " -f1); sleep 1; b=$(cat /proc/uptime | cut -d" " -f1)
awk -v a=$a -v b=$b "BEGIN{print (b - a >= 0.9 && b - a < 5) ? \"clock ok\" : \"clock \" (b - a)}"
(i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo loop1) &
(i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo loop2) &
wait'
out=$("$smrestore" "$snap" --console "$work/console" -- /bin/sh -c "$cmd" 2>"$work/err1") ||
	fail "restore rc=$?"
want=$(printf '2\n0-1\nmem ok\nclock ok')
[ "$(echo "$out" | head -n 4)" = "$want" ] || fail "got: $out"
[ "$(echo "$out" | tail -n 2 | sort | tr '\n' ' ')" = "loop1 loop2 " ] || fail "loops: $out"
echo "PASS: snap_smp (2 vCPUs online after restore, memory and clock right)"
