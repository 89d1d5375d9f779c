#!/bin/bash
# Bake the Debian bookworm minbase image (tests/fixtures/mkdebian.sh, from its
# cached debootstrap tarball) from a real local registry and restore it
# (issue 8): cat /etc/os-release shows Debian bookworm; echo; exit 7; stdin
# (100000 bytes through wc -c, and a script fed to the image's default
# command, /bin/bash); a file written in one restore is absent in the next;
# root's HOME and users from Debian's own /etc/passwd (nobody, _apt); the
# clock is now and random bytes differ; 3 restores in parallel (20 at once
# are bake_busybox's, the same code path; with this larger image 5 at once
# once coincided with a lock-up of the emulated host, an RCU stall on its 2
# CPUs that the harness retried, so this test keeps to 3).
# Every step prints a line with the time since the emulated host started the
# script (42-48 s for all of it there, 2026-12-04).
# Usage: bake_debian.sh BUILD_DIR KVMHOST TIMEOUT_S (see bake_common.sh)

# Timeouts (s) for this image (bake_common.sh): one restore took 0.7-4.4 s in
# the emulated host, the bake 9-20 s.
default_restore_timeout=45
default_bake_timeout=120

prepare() {
	local rc=0
	echo "building the Debian minbase OCI image (debootstrap on the first run only, then from its cached tarball)"
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
	say "ok: smsnap verify ($(du -h "$snap" | cut -f1) snapshot)"
	# The image's Cmd and the root filesystem from the metadata (bash, not
	# python3: see bake() in bake_common.sh).
	local dump re
	dump=$("$smsnap" dump "$snap" --json | tr -d '\n') || fail "smsnap dump"
	re='"Cmd": *\[ *"/bin/bash" *\]'
	[[ $dump =~ $re ]] || fail "the image's Cmd is not [\"/bin/bash\"]: $dump"
	re='"rootfs": *"(/[^"]*)"'
	[[ $dump =~ $re ]] || fail "no rootfs in the snapshot metadata: $dump"
	rootfs=${BASH_REMATCH[1]}
	[ -d "$rootfs" ] || fail "the metadata's rootfs $rootfs is not a directory"

	local rc=0 out t0
	t0=$(date +%s%N)
	out=$(timeout -k 5 "$restore_timeout" "$smrestore" "$snap" --no-stdin --console "$work/console" \
		-- cat /etc/os-release) || rc=$?
	[ "$rc" = 0 ] || fail "cat /etc/os-release: exit $rc after $(ms_since "$t0") ms$(fail_console "$work/console")"
	grep -qx 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' <<<"$out" ||
		fail "/etc/os-release is not Debian bookworm: $out"
	grep -qx 'VERSION_CODENAME=bookworm' <<<"$out" || fail "no bookworm codename: $out"
	say "ok: cat /etc/os-release: $(grep PRETTY_NAME <<<"$out") ($(ms_since "$t0") ms, the first restore)"
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

	parallel "$snap" 3
	clock_and_rng "$snap"
	echo "PASS: bake_debian"
}

. "$(dirname "$0")/bake_common.sh" "$@"
