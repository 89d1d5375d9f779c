#!/bin/bash
# smrestore on this machine's own /dev/kvm. A snapshot baked in the KVM host
# (tests/kvmhost/run: the emulated one where this machine has no hardware
# KVM) is restored here directly:
# - `smrestore --dry-run` does every host-side step up to the first KVM_RUN
#   (snapshot checked, memory mapped, VM created, vCPU/VM/device state set,
#   threads started) and exits 0 without running the guest, also on kvm-pvm;
# - on kvm-pvm, a real restore and smrun each stop with exit 125 and a
#   one-line error naming kvm-pvm; with hardware KVM the restore runs CMD;
# - a damaged snapshot is refused by a dry run too (125, one line).
# Skipped (77) where there is no /dev/kvm at all.
#
#   tests/e2e/restore_dry_run.sh BUILD_DIR KVMHOST_RUN
. "$(dirname "$0")/vm_common.sh" "$1"
kvmhost=${2:?tests/kvmhost/run}
smrestore="$build/tools/smrestore"
fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/err*; do [ -f "$f" ] && { echo "== $f" >&2; cat "$f" >&2; }; done
	exit 1
}
if [ ! -c /dev/kvm ]; then
	echo "SKIP: this machine has no /dev/kvm"
	exit 77
fi
pvm=0
[ -e /sys/module/kvm_pvm ] && pvm=1
snap="$work/snap.smsnap"
export SM_CACHE="$work/cache"

"$kvmhost" --timeout 400 --rw "$work" -- "$smrun" --kernel "$kernel" --console "$work/bake-console" \
	--snapshot-out "$snap" --warmup 'echo baked >/tmp/warm' >"$work/bake-out" 2>"$work/err-bake" ||
	fail "bake in the KVM host"
[ -f "$snap" ] || fail "no snapshot"
echo "ok: baked in the KVM host"

# 1. Dry runs, directly here: the first unpacks the memory image into the
#    cache, the second finds it.
for i in 1 2; do
	set +e
	"$smrestore" "$snap" --dry-run --timing --no-stdin -- /bin/sh -c 'echo ran' \
		>"$work/dry-out$i" 2>"$work/err-dry$i"
	rc=$?
	set -e
	cat "$work/err-dry$i"
	[ "$rc" = 0 ] || fail "dry run $i: rc=$rc (want 0)"
	[ ! -s "$work/dry-out$i" ] || fail "dry run $i ran the command"
	grep '"smrestore_timing"' "$work/err-dry$i" | python3 -c '
import json, sys
t, i = json.loads(sys.stdin.read()), int(sys.argv[1])
assert t["dry_run"] == 1 and t["cache_hit"] == (i == 2), t
assert 0 < t["state_ms"] <= t["first_run_ms"] <= t["done_ms"], t
assert t["exits_io"] + t["exits_mmio"] + t["exits_other"] == 0, t
' "$i" || fail "dry run $i: timing line"
done
kind=hardware
[ "$pvm" = 1 ] && kind=kvm-pvm
grep -q "dry run: .* restores on this host (KVM: $kind)" "$work/err-dry2" ||
	fail "dry run: report line does not name KVM $kind"
echo "ok: smrestore --dry-run on this machine's /dev/kvm ($kind)"

# 2. A real run: refused on kvm-pvm (one line, 125, before any VM work),
#    the command's output with hardware KVM.
one_line_125() { # one_line_125 WHAT RC ERRFILE
	[ "$2" = 125 ] || fail "$1 on kvm-pvm: rc=$2 (want 125)"
	[ "$(wc -l <"$3")" = 1 ] || fail "$1 on kvm-pvm: not one line: $(cat "$3")"
	grep -q 'kvm-pvm, which cannot run unmodified Linux guests' "$3" ||
		fail "$1 on kvm-pvm: the error does not say why: $(cat "$3")"
}
set +e
out=$("$smrestore" "$snap" --no-stdin -- /bin/cat /tmp/warm 2>"$work/err-run")
rc=$?
"$smrun" --kernel "$kernel" --no-stdin -- /bin/true >/dev/null 2>"$work/err-smrun"
rc_smrun=$?
set -e
if [ "$pvm" = 1 ]; then
	one_line_125 smrestore "$rc" "$work/err-run"
	one_line_125 smrun "$rc_smrun" "$work/err-smrun"
	echo "ok: smrestore and smrun refuse kvm-pvm with one line and exit 125"
else
	[ "$rc" = 0 ] && [ "$out" = baked ] || fail "restore: rc=$rc out='$out' (want 0, baked)"
	echo "ok: restore ran the command on hardware KVM"
fi

# 3. A damaged snapshot: refused by a dry run as by a real one.
cp "$snap" "$work/bad.smsnap"
printf 'XXXX' | dd of="$work/bad.smsnap" bs=1 seek=40 conv=notrunc status=none
set +e
"$smrestore" "$work/bad.smsnap" --dry-run -- /bin/true >/dev/null 2>"$work/err-bad"
rc=$?
set -e
[ "$rc" = 125 ] && [ "$(wc -l <"$work/err-bad")" = 1 ] ||
	fail "damaged snapshot, dry run: rc=$rc, stderr: $(cat "$work/err-bad")"
echo "ok: a damaged snapshot is refused by a dry run (125, one line)"
echo "PASS: restore_dry_run"
