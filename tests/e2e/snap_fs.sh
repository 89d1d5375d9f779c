#!/bin/bash
# Bake and restore a guest whose root is a virtio-fs directory.
#
# 1. DAX: bake with --rootfs --dax; the warm-up reads a 32 MiB random file
#    through the DAX window, so the snapshot holds live DAX slots (the DAX
#    section's slot table is checked) and the FUSE node table. Restores then
#    read the file again: the sha256 is the host's, and the FUSE trace shows
#    neither READ nor SETUPMAPPING, so the bytes came through the slots saved
#    at bake time and re-bound on first access. The warm-up's /tmp survives,
#    ls / works, a write in one restore is absent in the next, the host
#    directory never changes.
# 2. Page cache: the same without --dax (no DAX section at all).
# 3. The root directory gone: a clear error, no VM.
. "$(dirname "$0")/fs_common.sh" "$1"
smrestore="$build/tools/smrestore"
smsnap="$build/tools/smsnap"
[ -x "$smrestore" ] || { echo "snap_fs: $smrestore not built" >&2; exit 1; }
export SM_CACHE="$work/cache"
head -c $((32 << 20)) /dev/urandom >"$root/data/big"
want=$(sha256sum "$root/data/big" | cut -d' ' -f1)
before=$(manifest)
warm='sha256sum /data/big >/dev/null; echo warm >/tmp/w'

bake_fs() { # bake_fs SNAP TRACE [smrun options]
	local snap=$1 trace=$2
	shift 2
	if ! SM_FUSE_TRACE="$trace" "$smrun" --kernel "$kernel" --console "$work/console" \
		--rootfs "$root" "$@" --timing --snapshot-out "$snap" --warmup "$warm" \
		>"$work/bake-out" 2>"$work/bake-err"; then
		cat "$work/bake-err" >&2
		fail "bake $*"
	fi
	cat "$work/bake-err" >&2
}

# restore_fs SNAP OUT TRACE CMD: sets $rc; stderr in OUT.err.
restore_fs() {
	local snap=$1 out=$2 trace=$3
	shift 3
	set +e
	SM_FUSE_TRACE="$trace" "$smrestore" "$snap" --console "$work/console" --timing -- \
		/bin/sh -c "$1" >"$out" 2>"$out.err"
	rc=$?
	set -e
	cat "$out.err" >&2
}

# ---- 1. DAX ----------------------------------------------------------------
snap="$work/dax.smsnap"
bake_fs "$snap" "$work/trace.bake" --dax
maps=$(grep 'op=SETUPMAPPING' "$work/trace.bake" | grep -c -- '-> error=0 ' || true)
[ "$maps" -ge 16 ] || fail "bake: $maps successful SETUPMAPPING, want >= 16 for 32 MiB"
"$smsnap" verify "$snap" || fail "smsnap verify"
"$smsnap" dump "$snap" --json | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
m = d["metadata"]
assert m["rootfs"] == os.path.realpath(sys.argv[1]), m
assert m["dax_mib"] == 1024, m
secs = {}
for s in d["sections"]:
    secs.setdefault(s["type"], []).append(s)
dev = [s for s in secs["device"] if s["name"] == "virtio-fs"]
assert len(dev) == 1 and dev[0]["raw_length"] == 96, dev
inst = dev[0]["instance"]
nodes = [s for s in secs["fuse-nodes"] if s["instance"] == inst]
assert len(nodes) == 1 and nodes[0]["raw_length"] > 32, nodes
dax = [s for s in secs["dax"] if s["instance"] == inst]
assert len(dax) == 1, secs.get("dax")
slots = (dax[0]["raw_length"] - 48) // 40   # DAXS v1: 48-byte header, 40 per slot
assert slots >= 16, slots
print("snapshot: rootfs and dax_mib recorded; %d DAX slots, FUSE state %d bytes"
      % (slots, nodes[0]["raw_length"]))
' "$root" || fail "snapshot metadata/sections"

restore_fs "$snap" "$work/r1" "$work/trace.r1" \
	'sha256sum /data/big; cat /tmp/w; ls /; echo mine >/tmp/new; cat /tmp/new'
[ "$rc" = 0 ] || fail "restore 1: rc=$rc"
got=$(awk 'NR == 1 {print $1}' "$work/r1")
[ "$got" = "$want" ] || fail "restore 1: guest sha256 $got, host $want"
[ "$(sed -n 2p "$work/r1")" = warm ] || fail "restore 1: warm-up state lost: $(cat "$work/r1")"
for d in bin data etc tmp; do
	grep -qx "$d" "$work/r1" || fail "restore 1: ls / has no $d: $(cat "$work/r1")"
done
[ "$(tail -n 1 "$work/r1")" = mine ] || fail "restore 1: cannot write /tmp"
reads=$(grep -c 'op=READ(15)' "$work/trace.r1" || true)
rmaps=$(grep -c 'op=SETUPMAPPING' "$work/trace.r1" || true)
[ "$reads" = 0 ] || fail "restore 1: $reads FUSE READs: the file did not come through DAX"
[ "$rmaps" -lt 4 ] || fail "restore 1: $rmaps SETUPMAPPING: the restored slots were not used"
echo "ok: DAX restore: sha256 ok through the restored slots ($reads READ, $rmaps SETUPMAPPING), warm state, ls /"

restore_fs "$snap" "$work/r2" /dev/null \
	'test -e /tmp/new && echo leaked; cat /tmp/w; sha256sum /data/big'
[ "$rc" = 0 ] || fail "restore 2: rc=$rc"
[ "$(head -n 1 "$work/r2")" = warm ] || fail "restore 2 saw another's writes: $(cat "$work/r2")"
[ "$(awk 'NR == 2 {print $1}' "$work/r2")" = "$want" ] || fail "restore 2: sha256"
grep -q '"cache_hit":1' "$work/r2.err" || fail "restore 2 missed the memory cache"
echo "ok: a second restore is isolated from the first"

# ---- 2. page cache (no DAX window) -----------------------------------------
snap2="$work/pc.smsnap"
bake_fs "$snap2" /dev/null
"$smsnap" dump "$snap2" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["metadata"]["dax_mib"] == 0, d["metadata"]
types = [s["type"] for s in d["sections"]]
assert "fuse-nodes" in types and "dax" not in types, types
' || fail "page-cache snapshot sections"
restore_fs "$snap2" "$work/r3" /dev/null 'sha256sum /data/big; cat /tmp/w; cat /etc/motd'
[ "$rc" = 0 ] || fail "page-cache restore: rc=$rc"
[ "$(awk 'NR == 1 {print $1}' "$work/r3")" = "$want" ] || fail "page-cache restore: sha256"
[ "$(sed -n 2,3p "$work/r3")" = "$(printf 'warm\nhello from the host')" ] ||
	fail "page-cache restore: $(cat "$work/r3")"
echo "ok: page-cache snapshot restores (sha256, warm state, /etc/motd)"

[ "$(manifest)" = "$before" ] || fail "the host directory changed"

# ---- 3. root directory gone --------------------------------------------------
mv "$root" "$root.gone"
set +e
"$smrestore" "$snap" -- /bin/true >/dev/null 2>"$work/gone.err"
rc=$?
set -e
mv "$root.gone" "$root"
cat "$work/gone.err" >&2
[ "$rc" = 125 ] || fail "restore without its root directory: rc=$rc, want 125"
# One line naming the directory (smrestore's run-config step or restore_run()).
[ "$(wc -l <"$work/gone.err")" = 1 ] &&
	grep -qE "root filesystem $(realpath "$root")(,| ).*(gone|missing)" "$work/gone.err" ||
	fail "restore without its root directory: unclear error"
echo "ok: a missing root directory is a clear error"
echo "PASS: snap_fs"
