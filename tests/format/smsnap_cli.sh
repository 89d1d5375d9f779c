#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# smsnap end to end: pack, dump, dump --json, verify, unpack-memory, exit
# codes on damaged files and usage errors, and SIGKILL of `smsnap pack`
# mid-write leaving nothing under the final name.
# Usage: smsnap_cli.sh PATH/TO/smsnap
set -eu
SMSNAP=$1
T=$(mktemp -d /tmp/sm-smsnap-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_rc() { # expect_rc CODE CMD...
	want=$1; shift
	set +e; "$@" >"$T/out" 2>"$T/err"; rc=$?; set -e
	[ "$rc" = "$want" ] || { cat "$T/out" "$T/err" >&2; fail "'$*' exited $rc, want $want"; }
}

for c in "" dump verify pack unpack-memory; do
	expect_rc 0 $SMSNAP $c --help
	grep -q "Exit status" "$T/out" || fail "$c --help has no exit status"
done
expect_rc 0 $SMSNAP --version
expect_rc 125 $SMSNAP
expect_rc 125 $SMSNAP frobnicate
expect_rc 125 $SMSNAP verify
expect_rc 125 $SMSNAP verify "$T/missing"
expect_rc 125 $SMSNAP pack -o "$T/x"

# a 64 MiB sparse memory image: 4 MiB random, 2 MiB text, a few scattered pages
truncate -s 64M "$T/mem"
head -c 4194304 /dev/urandom | dd of="$T/mem" bs=1M seek=8 conv=notrunc status=none
seq 1 400000 | head -c 2097152 | dd of="$T/mem" bs=1M seek=40 conv=notrunc status=none
for p in 3 777 9000 16383; do
	printf 'page %d' $p | dd of="$T/mem" bs=4096 seek=$p conv=notrunc status=none
done
printf '{"image":"busybox:latest","vcpus":2,"memory_size":67108864}' >"$T/meta.json"
printf 'device-state-bytes' >"$T/dev"
head -c 1000 /dev/urandom >"$T/vcpu"

expect_rc 0 $SMSNAP pack --memory "$T/mem" --meta "$T/meta.json" \
	--section device:1="$T/dev" --section vcpu="$T/vcpu" --section vsock:1="$T/dev" -o "$T/snap"
expect_rc 0 $SMSNAP verify "$T/snap"
grep -q "OK" "$T/out" || fail "verify did not say OK"
expect_rc 0 $SMSNAP dump "$T/snap"
for w in "format:    1.1" "memory" "busybox:latest" "stored pages:   1540" device vcpu "vsock      instance 1"; do
	grep -q "$w" "$T/out" || { cat "$T/out"; fail "dump lacks '$w'"; }
done
expect_rc 0 $SMSNAP dump --json "$T/snap"
python3 - "$T/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["header"]["version"] == "1.1", d["header"]
assert d["metadata"]["vcpus"] == 2
assert d["memory"]["mem_size"] == 64 << 20
assert d["memory"]["nonzero_pages"] == 1540, d["memory"]
types = sorted(s["type"] for s in d["sections"])
assert types == ["device", "memory", "metadata", "vcpu", "vsock"], types
vs = [s for s in d["sections"] if s["type"] == "vsock"][0]
assert vs["optional"] and vs["instance"] == 1, vs
PY
expect_rc 0 $SMSNAP unpack-memory "$T/snap" -o "$T/back"
cmp "$T/mem" "$T/back" || fail "unpacked memory differs"
used=$(du -k "$T/back" | cut -f1)
[ "$used" -lt 16384 ] || fail "unpacked memory is not sparse ($used KiB)"

# default metadata, and no --meta
expect_rc 0 $SMSNAP pack --memory "$T/mem" -o "$T/snap2" -j 1 --level 1 --frame-size 8192
expect_rc 0 $SMSNAP dump --json "$T/snap2"
grep -q '"memory_size": 67108864' "$T/out" || fail "default metadata lacks memory_size"
expect_rc 125 $SMSNAP pack --memory "$T/mem" -o "$T/snap3" --frame-size 1000
truncate -s 5000 "$T/odd"
expect_rc 125 $SMSNAP pack --memory "$T/odd" -o "$T/snap3"
[ ! -e "$T/snap3" ] || fail "failed pack left $T/snap3"

# damage: a flipped byte inside the memory section, then a truncation
cp "$T/snap" "$T/bad"
python3 - "$T/bad" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x10
open(p, "wb").write(b)
PY
expect_rc 1 $SMSNAP verify "$T/bad"
grep -q "first bad section is" "$T/err" || { cat "$T/err"; fail "verify did not name the section"; }
expect_rc 1 $SMSNAP unpack-memory "$T/bad" -o "$T/back2" || true
head -c 100000 "$T/snap" >"$T/short"
expect_rc 1 $SMSNAP verify "$T/short"
grep -q "truncated" "$T/err" || fail "truncation not reported as such"
expect_rc 1 $SMSNAP dump "$T/short"

# SIGKILL mid-write: level 19 on one thread is slow enough to catch
seq 1 20000000 | head -c 67108864 >"$T/big"
$SMSNAP pack --memory "$T/big" -o "$T/killed" -j 1 --level 19 &
pid=$!
i=0
while [ $i -lt 200 ]; do
	tmp=$(ls -A "$T" | grep '^\.killed\.tmp-' || true)
	[ -n "$tmp" ] && [ "$(stat -c %s "$T/$tmp")" -gt 0 ] && break
	sleep 0.05
	i=$((i + 1))
done
[ -n "$tmp" ] || fail "pack never created its temporary file"
sleep 0.3
kill -0 $pid 2>/dev/null || fail "pack finished before it could be killed"
kill -9 $pid
set +e; wait $pid; rc=$?; set -e
[ $rc = 137 ] || fail "pack exit $rc after SIGKILL"
[ ! -e "$T/killed" ] || fail "SIGKILL left a file under the final name"
[ -e "$T/$tmp" ] || fail "temporary file vanished"
echo "smsnap_cli: all checks passed"
