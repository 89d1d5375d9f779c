#!/bin/bash
# Bake the Debian bookworm minbase image (tests/fixtures/mkdebian.sh, from its
# cached debootstrap tarball) from a real local registry and restore it
# (issue 8): cat /etc/os-release shows Debian bookworm; echo; exit 7; stdin
# (100000 bytes through wc -c, and a script fed to the image's default
# command, /bin/bash); a file written in one restore is absent in the next;
# root's HOME and users from Debian's own /etc/passwd (nobody, _apt); the
# clock is now and random bytes differ; 5 restores in parallel.
# Usage: bake_debian.sh BUILD_DIR KVMHOST TIMEOUT_S (see bake_common.sh)

prepare() {
	local rc=0
	sh "$src/tests/fixtures/mkdebian.sh" "$work/deb" >"$work/mkdebian.log" 2>&1 || rc=$?
	if [ "$rc" = 77 ]; then
		echo "SKIP: no Debian minbase fixture: $(cat "$work/mkdebian.log")"
		exit 77
	fi
	[ "$rc" = 0 ] || fail "mkdebian.sh: $(cat "$work/mkdebian.log")"
	push "$work/deb/oci:latest" debian:bookworm
}

inner() {
	local snap=$work/deb.smsnap
	bake "$reg/debian:bookworm" "$snap"
	"$smsnap" verify "$snap" >/dev/null || fail "smsnap verify"
	rootfs=$("$smsnap" dump "$snap" --json | python3 -c '
import json, sys
m = json.load(sys.stdin)["metadata"]
assert m["config"]["Cmd"] == ["/bin/bash"], m["config"]
print(m["rootfs"])') || fail "snapshot metadata"

	local rc=0 out
	out=$(timeout -k 5 "$restore_timeout" "$smrestore" "$snap" --no-stdin -- cat /etc/os-release) || rc=$?
	[ "$rc" = 0 ] || fail "cat /etc/os-release: exit $rc"
	grep -qx 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' <<<"$out" ||
		fail "/etc/os-release is not Debian bookworm: $out"
	grep -qx 'VERSION_CODENAME=bookworm' <<<"$out" || fail "no bookworm codename: $out"
	echo "ok: cat /etc/os-release: $(grep PRETTY_NAME <<<"$out")"
	check "echo" 0 hello "$snap" -- echo hello
	check "exit 7" 7 "" "$snap" -- bash -c 'exit 7'
	head -c 100000 /dev/urandom >"$work/in"
	stdin_file=$work/in check "stdin: wc -c" 0 100000 "$snap" -- wc -c
	printf 'echo "from bash $BASH_VERSION" | cut -c1-14\nexit 3\n' >"$work/script"
	stdin_file=$work/script check "default command /bin/bash reads its script from stdin" 3 \
		"from bash 5.2." "$snap"
	check "root's environment" 0 "0:0 /root / /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		"$snap" -- sh -c 'echo "$(id -u):$(id -g) $HOME $(pwd) $PATH"'
	check "--user nobody (Debian's passwd)" 0 "65534:65534 nobody /nonexistent" \
		"$snap" -u nobody -- sh -c 'echo "$(id -u):$(id -g) $(id -un) $HOME"'
	check "--user _apt (its passwd group)" 0 "42:65534" "$snap" -u _apt -- sh -c 'echo "$(id -u):$(id -g)"'
	check "--user root:mail" 0 "0:8" "$snap" -u root:mail -- sh -c 'echo "$(id -u):$(id -g)"'

	check "writer" 0 written "$snap" -- sh -c \
		'echo x >/tmp/f && echo y >/etc/new && echo z >>/etc/debian_version && echo written'
	check "next restore sees none of it" 0 "$(cat "$rootfs/etc/debian_version")" "$snap" -- sh -c \
		'[ -e /tmp/f ] && echo leak-tmp; [ -e /etc/new ] && echo leak-etc; cat /etc/debian_version'
	[ ! -e "$rootfs/etc/new" ] || fail "a restore wrote into the cache's rootfs"

	parallel "$snap" 5
	clock_and_rng "$snap"
	echo "PASS: bake_debian"
}

. "$(dirname "$0")/bake_common.sh" "$@"
