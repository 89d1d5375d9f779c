#!/bin/bash
# Bake once, restore many: bake a guest (a warm-up writes /tmp/warm), check
# the file with smsnap verify, then restore it: the command's output and
# exit status come back (and --env, --workdir, stdin go in), the warm-up's
# state is there, five restores in a
# row and three at once all succeed, and writes in one restored VM are not
# seen by another; SIGTERM to smrestore reaches CMD and nothing is left
# behind after its exit; --dry-run restores up to the first KVM_RUN and
# runs nothing.
. "$(dirname "$0")/snap_common.sh" "$1"
fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/err*; do [ -f "$f" ] && { echo "== $f" >&2; cat "$f" >&2; }; done
	exit 1
}
bake 'echo warm >/tmp/warm; echo warmed'
[ "$(cat "$work/bake-out")" = warmed ] || fail "warm-up output '$(cat "$work/bake-out")'"
[ -f "$snap" ] || fail "no snapshot written"
[ "$(ls -a "$work" | grep -c smsnap)" = 1 ] || fail "temporary file left next to the snapshot"
"$smsnap" verify "$snap" || fail "smsnap verify"
"$smsnap" dump "$snap" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
m = d["metadata"]
assert m["kind"] == "supermachine-snapshot" and m["format_version"] == "1.1", m
assert m["kernel_digest"].startswith("sha256:") and m["agent_digest"].startswith("sha256:"), m
assert m["memory_size"] == 256 << 20 and m["vcpus"] == 1, m
types = sorted(s["type"] for s in d["sections"])
for t in ("vcpu", "vmstate", "mmio", "device", "memory", "metadata", "vsock"):
    assert t in types, (t, types)
' || fail "snapshot metadata/sections"
echo "ok: bake, verify, metadata"

# 1. output and status, and the warm-up's state survived.
set +e
"$smrestore" "$snap" --console "$work/console" --timing -- \
	/bin/sh -c 'cat /tmp/warm; echo hello; exit 3' >"$work/out1" 2>"$work/err1"
rc=$?
set -e
cat "$work/err1" >&2
[ "$rc" = 3 ] && [ "$(cat "$work/out1")" = "$(printf 'warm\nhello')" ] ||
	fail "restore: rc=$rc stdout='$(cat "$work/out1")' (want 3, warm+hello)"
grep -q '"cache_hit":0' "$work/err1" || fail "first restore should fill the memory cache"
[ "$(ls "$SM_CACHE/memory" | grep -v tmp | grep -Evc '\.[wr]set$')" = 1 ] ||
	fail "memory cache: $(ls "$SM_CACHE/memory")"
grep -q '"wset_pages":0' "$work/err1" || fail "the first restore had a write set to copy"
# The agent connection the bake kept is used: no reconnect after resume.
grep -q '"conn_kept":1' "$work/err1" || fail "restore did not use the snapshot's agent connection"
echo "ok: restore ran the command (hello, exit 3) on the warmed state, over the kept connection"
out=$("$smrestore" "$snap" --env FOO=bar --workdir /tmp -- /bin/sh -c 'echo "$FOO $(pwd)"' \
	2>"$work/err-env") || fail "restore with --env/--workdir"
[ "$out" = "bar /tmp" ] || fail "--env/--workdir: got '$out'"
out=$(printf 'from stdin\n' | "$smrestore" "$snap" -- /bin/cat 2>"$work/err-stdin") ||
	fail "restore with stdin"
[ "$out" = "from stdin" ] || fail "stdin: got '$out'"
echo "ok: --env, --workdir and stdin reach the command"

# 2. five in a row, from the cache.
prefault=0
IFS=. read -r kmaj kmin _ <<<"$(uname -r)"
[ "$kmaj" -gt 6 ] || { [ "$kmaj" = 6 ] && [ "${kmin%%[!0-9]*}" -ge 10 ]; } && prefault=1
for i in 1 2 3 4 5; do
	out=$("$smrestore" "$snap" --timing -- /bin/echo "run $i" 2>"$work/err-seq$i") ||
		fail "sequential restore $i"
	[ "$out" = "run $i" ] || fail "sequential restore $i printed '$out'"
	grep -q '"cache_hit":1' "$work/err-seq$i" || fail "restore $i missed the cache"
	# The first restore recorded its write set; these copy it ahead.
	grep -Eq '"wset_pages":[1-9]' "$work/err-seq$i" ||
		fail "restore $i copied no write set ahead: $(ls "$SM_CACHE/memory")"
	# ... and map it and the read set into KVM's nested page tables ahead,
	# where KVM has KVM_PRE_FAULT_MEMORY (Linux >= 6.10).
	if [ "$prefault" = 1 ]; then
		grep -Eq '"prefault_pages":[1-9]' "$work/err-seq$i" ||
			fail "restore $i mapped nothing ahead on Linux $(uname -r): $(ls "$SM_CACHE/memory")"
	fi
	rm -f "$work/err-seq$i"
done
echo "ok: five restores in a row, each with the write set copied ahead (and mapped ahead: $([ $prefault = 1 ] && echo yes || echo "no, Linux $(uname -r)"))"

# 3. three at once.
pids=()
for i in 1 2 3; do
	"$smrestore" "$snap" -- /bin/sh -c "sleep 0.5; echo par $i" >"$work/par$i" 2>"$work/err-par$i" &
	pids+=($!)
done
for i in 1 2 3; do
	wait "${pids[$((i - 1))]}" || fail "concurrent restore $i: rc=$?"
	[ "$(cat "$work/par$i")" = "par $i" ] || fail "concurrent restore $i printed '$(cat "$work/par$i")'"
done
echo "ok: three restores at once"

# 4. isolation: a write in one restored VM is not seen by the next, nor
#    while both run.
out=$("$smrestore" "$snap" -- /bin/sh -c 'echo mine >/tmp/warm; echo x >/tmp/iso; cat /tmp/warm') ||
	fail "writer restore"
[ "$out" = mine ] || fail "writer saw '$out'"
out=$("$smrestore" "$snap" -- /bin/sh -c 'cat /tmp/warm; test -e /tmp/iso && echo leaked; true') ||
	fail "reader restore"
[ "$out" = warm ] || fail "a restore saw another's writes: '$out'"
"$smrestore" "$snap" -- /bin/sh -c 'echo A >/tmp/warm; sleep 2; cat /tmp/warm' >"$work/isoA" 2>&1 &
pa=$!
sleep 0.5
"$smrestore" "$snap" -- /bin/sh -c 'echo B >/tmp/warm; cat /tmp/warm' >"$work/isoB" 2>&1 ||
	fail "concurrent writer B"
wait $pa || fail "concurrent writer A"
[ "$(cat "$work/isoA")" = A ] && [ "$(cat "$work/isoB")" = B ] ||
	fail "concurrent writers interfered: A='$(cat "$work/isoA")' B='$(cat "$work/isoB")'"
"$smsnap" verify "$snap" >/dev/null || fail "restores modified the snapshot"
echo "ok: restored VMs are isolated, the snapshot is unchanged"

# 5. smrestore exits with CMD's status before the VM is torn down (a child
#    holds the VM): SIGTERM sent to smrestore still reaches CMD (128+15), no
#    temporary directory is left once it has exited, and the child that
#    tore the VM down is gone moments later.
ls -d /tmp/smrestore-* >"$work/dirs-before" 2>/dev/null || true
"$smrestore" "$snap" --no-stdin -- /bin/sh -c 'echo started; exec sleep 60' \
	>"$work/term" 2>"$work/err-term" &
pt=$!
for _ in $(seq 300); do
	grep -q started "$work/term" && break
	sleep 0.1
done
grep -q started "$work/term" || fail "the SIGTERM restore did not start"
kill -TERM $pt
set +e
wait $pt
rc=$?
set -e
[ "$rc" = 143 ] || fail "SIGTERM to smrestore: rc=$rc (want 143)"
ls -d /tmp/smrestore-* >"$work/dirs-after" 2>/dev/null || true
cmp -s "$work/dirs-before" "$work/dirs-after" ||
	fail "temporary directory left after exit: $(comm -13 "$work/dirs-before" "$work/dirs-after")"
for _ in $(seq 100); do
	pgrep -f "^$smrestore $snap" >/dev/null || break
	sleep 0.1
done
! pgrep -af "^$smrestore $snap" >&2 || fail "a restore process is still there 10 s after exit"
echo "ok: SIGTERM forwarded, nothing left behind"

# 6. --dry-run: all the restore work up to the first KVM_RUN, then stop. The
#    command is resolved, not run (no output, no guest exit at all), the
#    status is 0 and the timing line has the first KVM_RUN after the state.
ls -d /tmp/smrestore-* >"$work/dirs-before" 2>/dev/null || true
set +e
"$smrestore" "$snap" --dry-run --timing -- /bin/sh -c 'echo ran; exit 9' \
	>"$work/dry-out" 2>"$work/err-dry"
rc=$?
set -e
cat "$work/err-dry" >&2
[ "$rc" = 0 ] || fail "--dry-run: rc=$rc (want 0)"
[ ! -s "$work/dry-out" ] || fail "--dry-run ran the command: '$(cat "$work/dry-out")'"
grep -q 'dry run: .* restores on this host (KVM: .*); host-side work up to the first KVM_RUN' \
	"$work/err-dry" || fail "--dry-run: no report line"
grep '"smrestore_timing"' "$work/err-dry" | python3 -c '
import json, sys
t = json.loads(sys.stdin.read())
assert t["dry_run"] == 1 and t["cache_hit"] == 1, t
assert 0 < t["state_ms"] <= t["resume_ms"], t
assert t["state_ms"] <= t["first_run_ms"] <= t["done_ms"], t
assert t["agent_ms"] == 0 and t["conn_kept"] == 0, t
assert t["exits_io"] + t["exits_mmio"] + t["exits_other"] == 0, t
' || fail "--dry-run timing line"
ls -d /tmp/smrestore-* >"$work/dirs-after" 2>/dev/null || true
cmp -s "$work/dirs-before" "$work/dirs-after" || fail "--dry-run left its temporary directory"
out=$("$smrestore" "$snap" --timing -- /bin/echo after 2>"$work/err-after") ||
	fail "restore after the dry run"
[ "$out" = after ] || fail "restore after the dry run printed '$out'"
grep -q '"dry_run":0' "$work/err-after" || fail "a normal restore reported a dry run"
grep -q '"conn_kept":1' "$work/err-after" || fail "the restore after the dry run lost the kept connection"
echo "ok: --dry-run stops at the first KVM_RUN and runs nothing"
echo "PASS: snap_restore"
