#!/bin/bash
# A busybox directory as the guest's root over virtio-fs: `ls -la /` in the
# guest lists the host directory (plus the agent's mount points), a file
# reads back through FUSE, and the host directory is left unchanged.
. "$(dirname "$0")/fs_common.sh" "$1"
before=$(manifest)
run_guest "$work/out" "$work/err" -- /bin/sh -c 'ls -la /; echo ---; cat /etc/motd; readlink /data/motd.link; cat /data/motd.link'
cat "$work/err" >&2
cat "$work/out"
[ "$rc" = 0 ] || fail "rc=$rc"
for name in bin etc data root tmp proc dev; do
	grep -qE " $name\$" "$work/out" || fail "ls -la / has no $name"
done
# The guest sees the host's entries: compare the names ls shows with the
# directory's (the agent adds only its mount points proc sys dev run).
guest_names=$(sed -n '1,/^---$/p' "$work/out" | awk 'NF >= 9 {print $9}' |
	grep -vxE '\.|\.\.|proc|sys|dev|run|---' | LC_ALL=C sort | tr '\n' ' ')
host_names=$(ls -A "$root" | LC_ALL=C sort | tr '\n' ' ')
[ "$guest_names" = "$host_names" ] || fail "guest / has '$guest_names', host has '$host_names'"
grep -qx "hello from the host" "$work/out" || fail "/etc/motd not read through virtio-fs"
grep -qx "../etc/motd" "$work/out" || fail "symlink target not read"
[ "$(grep -cx 'hello from the host' "$work/out")" = 2 ] || fail "symlink not followed in the guest"
[ "$(manifest)" = "$before" ] || fail "the host directory changed"
echo "PASS: ls -la / over virtio-fs"
