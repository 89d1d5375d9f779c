#!/bin/bash
# A damaged snapshot is refused with exit 125 and a clear message, and never
# runs: a flipped byte in the vCPU state, in the vmstate record, in the
# header; a truncated file; a file that is not a snapshot; a missing file.
# smsnap verify finds the damage too. The intact snapshot still restores.
. "$(dirname "$0")/snap_common.sh" "$1"
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
bake
offset() { # offset TYPE: file offset of the first section of TYPE
	"$smsnap" dump "$snap" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print([s["offset"] for s in d["sections"] if s["type"] == sys.argv[1]][0])' "$1"
}
flip() { # flip SRC DST OFFSET: copy SRC to DST with the byte at OFFSET inverted
	python3 - "$1" "$2" "$3" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[int(sys.argv[3])] ^= 0xff
open(sys.argv[2], "wb").write(data)
PY
}
expect_refused() { # expect_refused NAME FILE PATTERN
	set +e
	"$smrestore" "$2" -- /bin/echo SHOULD-NOT-RUN >"$work/out" 2>"$work/err"
	local rc=$?
	set -e
	[ "$rc" = 125 ] || fail "$1: rc=$rc (want 125); stderr: $(cat "$work/err")"
	grep -q SHOULD-NOT-RUN "$work/out" && fail "$1: the command ran"
	grep -Eqi "$3" "$work/err" || fail "$1: unclear message: $(cat "$work/err")"
	echo "ok: $1 refused: $(head -c 200 "$work/err")"
}
vcpu=$(offset vcpu)
vmst=$(offset vmstate)
flip "$snap" "$work/bad-vcpu" $((vcpu + 40))
flip "$snap" "$work/bad-vmstate" $((vmst + 20))
flip "$snap" "$work/bad-header" 0
head -c $(($(stat -c %s "$snap") / 2)) "$snap" >"$work/bad-trunc"
head -c 100000 /dev/urandom >"$work/bad-random"
expect_refused "vcpu byte flipped" "$work/bad-vcpu" 'snapshot.*(checksum|crc|damaged)'
expect_refused "vmstate byte flipped" "$work/bad-vmstate" 'snapshot.*(checksum|crc|damaged)'
expect_refused "header byte flipped" "$work/bad-header" 'snapshot'
expect_refused "truncated" "$work/bad-trunc" 'snapshot'
expect_refused "not a snapshot" "$work/bad-random" 'snapshot'
expect_refused "missing file" "$work/nonexistent" 'snapshot.*(No such file|cannot open)'
for f in bad-vcpu bad-vmstate bad-header bad-trunc; do
	set +e
	"$smsnap" verify "$work/$f" >/dev/null 2>&1
	rc=$?
	set -e
	[ "$rc" = 1 ] || fail "smsnap verify $f: rc=$rc (want 1)"
done
echo "ok: smsnap verify reports the damage"
[ ! -d "$SM_CACHE/memory" ] || [ -z "$(ls "$SM_CACHE/memory" | grep -v '^m1-' || true)" ] ||
	fail "temporary memory images left: $(ls "$SM_CACHE/memory")"
out=$("$smrestore" "$snap" -- /bin/echo intact) || fail "intact snapshot did not restore"
[ "$out" = intact ] || fail "intact restore printed '$out'"
echo "PASS: snap_corrupt"
