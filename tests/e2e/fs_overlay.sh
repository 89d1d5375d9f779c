#!/bin/bash
# Private writes over the read-only virtio-fs root: the guest creates, reads,
# appends to, renames and deletes files, makes and removes a directory,
# replaces and deletes files of the image (overlay copy-up and whiteouts),
# all checked inside the guest; the host directory is unchanged afterwards.
. "$(dirname "$0")/fs_common.sh" "$1"
before=$(manifest)
run_guest "$work/out" "$work/err" -- /bin/sh -euc '
	echo one >/new.txt
	echo two >>/new.txt
	[ "$(cat /new.txt)" = "$(printf "one\ntwo")" ]
	mv /new.txt /etc/renamed.txt
	[ ! -e /new.txt ]
	[ "$(head -n1 /etc/renamed.txt)" = one ]
	mkdir -p /data/newdir/deep
	echo deep >/data/newdir/deep/f
	cat /data/newdir/deep/f
	echo changed >/etc/motd
	[ "$(cat /etc/motd)" = changed ]
	[ "$(cat /data/motd.link)" = changed ]
	rm /data/sub/keep
	[ ! -e /data/sub/keep ]
	mv /data/sub /data/sub2
	[ -d /data/sub2 ] && [ ! -e /data/sub ]
	rm /etc/renamed.txt
	rm -r /data/newdir
	[ ! -e /etc/renamed.txt ] && [ ! -e /data/newdir ]
	dd if=/dev/zero of=/root/big bs=1M count=8 2>/dev/null
	[ "$(wc -c </root/big)" = 8388608 ]
	echo guest-ok
'
cat "$work/err" >&2
cat "$work/out"
[ "$rc" = 0 ] || fail "guest script failed: rc=$rc"
grep -qx deep "$work/out" || fail "no read back of a new file"
grep -qx guest-ok "$work/out" || fail "guest script did not finish"
after=$(manifest)
[ "$after" = "$before" ] || { diff <(echo "$before") <(echo "$after") >&2; fail "the host directory changed"; }
[ "$(cat "$root/etc/motd")" = "hello from the host" ] || fail "host /etc/motd changed"
# A second VM starts from the pristine image again.
run_guest "$work/out2" "$work/err2" -- /bin/sh -c 'cat /etc/motd; ls /data/sub; ls /new.txt 2>&1 || true'
cat "$work/err2" >&2
[ "$rc" = 0 ] || fail "second VM: rc=$rc"
grep -qx "hello from the host" "$work/out2" || fail "second VM sees the first one's writes"
grep -qx keep "$work/out2" || fail "second VM misses /data/sub/keep"
echo "PASS: private overlay writes, host directory unchanged"
