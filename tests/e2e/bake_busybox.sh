#!/bin/bash
# Bake a busybox image from a real local registry and restore it (issue 8).
#
# The image: tests/fixtures/mkbusybox.sh plus a layer with /etc/os-release,
# a user "app" (1000:1000, home /home/app) and a group "staff" (50); its
# config runs as User app in WorkingDir /srv/data with Env GREETING=hello and
# no Entrypoint, Cmd sh -c 'echo hi from ...'. Pushed with skopeo to Debian's
# docker-registry, baked with `smbake 127.0.0.1:PORT/busybox:latest --json`,
# then restored: echo; the image's default command; cat /etc/os-release;
# stdin (100000 bytes through wc -c and sha256sum; -i; --no-stdin); exit 7;
# a file written in one restore is absent in the next; the image's
# Env/User/WorkingDir and --env/--workdir/--user/--entrypoint over them;
# user and group names from the image's /etc/passwd and /etc/group; the
# clock is now and random bytes differ; 20 restores in parallel; a second
# smbake is a cache hit (its wall time is printed); clear one-line errors for
# an unknown user, a relative workdir, another format major version and a
# root filesystem gone from the cache.
# Usage: bake_busybox.sh BUILD_DIR KVMHOST TIMEOUT_S (see bake_common.sh)

prepare() {
	sh "$src/tests/fixtures/mkbusybox.sh" "$work/bb" >/dev/null
	local b=$work/bb/bundle r
	umoci unpack --image "$work/bb/oci:latest" "$b" >/dev/null
	r=$b/rootfs
	printf 'NAME="supermachine busybox"\nID=smbusybox\nVERSION_ID=1.0\nPRETTY_NAME="supermachine busybox test image"\n' \
		>"$r/etc/os-release"
	echo 'app:x:1000:1000:app user:/home/app:/bin/sh' >>"$r/etc/passwd"
	printf 'app:x:1000:\nstaff:x:50:app\n' >>"$r/etc/group"
	mkdir -p "$r/home/app"
	chown 1000:1000 "$r/home/app" "$r/srv/data"
	cp "$r/etc/os-release" "$work/os-release"
	umoci repack --image "$work/bb/oci:latest" "$b" >/dev/null
	rm -rf "$b"
	umoci config --image "$work/bb/oci:latest" --clear=config.entrypoint --clear=config.cmd \
		--config.cmd sh --config.cmd -c \
		--config.cmd 'echo "hi from $GREETING in $(pwd) as $(id -un)"' \
		--config.user app --config.workingdir /srv/data >/dev/null
	push "$work/bb/oci:latest" busybox:latest
}

inner() {
	local snap=$work/bb.smsnap
	bake "$reg/busybox:latest" "$snap"
	"$smsnap" verify "$snap" >/dev/null || fail "smsnap verify"
	rootfs=$("$smsnap" dump "$snap" --json | python3 -c '
import json, sys
m = json.load(sys.stdin)["metadata"]
c = m["config"]
assert m["image"] == sys.argv[1] and m["image_digest"].startswith("sha256:"), m
assert m["bake_key"].startswith("sha256:") and m["chain_id"].startswith("sha256:"), m
assert c["User"] == "app" and c["WorkingDir"] == "/srv/data" and c["Entrypoint"] is None, c
assert "GREETING=hello" in c["Env"], c
print(m["rootfs"])' "$reg/busybox:latest") || fail "snapshot metadata"
	[ -d "$rootfs" ] || fail "metadata rootfs $rootfs is not a directory"
	say "ok: snapshot metadata (image, digest, bake key, config, rootfs)"

	# a second smbake of the same inputs: a cache hit. Measured before any
	# restore: a restore's VM teardown goes on after smrestore exits and
	# would share the CPU with it.
	local t0 ms
	t0=$(date +%s%N)
	timeout 120 "$smbake" "$reg/busybox:latest" -o "$work/bb2.smsnap" --json >"$work/hit.json" 2>"$work/hit.err" ||
		fail "cached smbake: $(cat "$work/hit.err")"
	ms=$(ms_since "$t0")
	python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
assert j["cache_hit"] is True and j["snapshot"] == sys.argv[2], j' "$work/hit.json" "$work/bb2.smsnap" ||
		fail "second smbake not a cache hit: $(cat "$work/hit.json")"
	local inproc
	inproc=$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["total_ms"]))' "$work/hit.json")
	echo "cached smbake: wall time $ms ms, in-process $inproc ms ($(cat "$work/hit.json"))"
	# The target (<= 200 ms) is for hardware. Inside the emulated host (QEMU
	# TCG, 'hypervisor' in cpuinfo) everything runs several times slower and
	# smbake's process start-up (libcurl and its ~30 shared libraries) is
	# most of a hit: 443 ms measured here on 2026-12-06. So there the bake's
	# own work (total_ms) is held to 1 s and the wall time to 6 s, which
	# still tells a cache hit from a bake (5 s and more there). This check
	# used to run after the 20 parallel restores, whose teardowns were still
	# running: 1.7 to 3.2 s, and once 3151 ms against a 3 s limit.
	local limit=200 inlimit=200
	grep -qw hypervisor /proc/cpuinfo && limit=6000 inlimit=1000
	[ "$inproc" -lt "$inlimit" ] || fail "cached smbake spent $inproc ms in the bake (limit $inlimit)"
	[ "$ms" -lt "${SM_BAKE_HIT_MAX_MS:-$limit}" ] || fail "cached smbake took $ms ms (limit ${SM_BAKE_HIT_MAX_MS:-$limit})"

	# the basics
	check "echo" 0 hello "$snap" -- echo hello
	check "default command (image Cmd, Env, WorkingDir, User)" 0 \
		"hi from hello in /srv/data as app" "$snap"
	check "cat /etc/os-release" 0 "$(cat "$work/os-release")" "$snap" -- cat /etc/os-release
	check "exit 7" 7 "" "$snap" -- sh -c 'exit 7'
	check "command not found" 127 "" "$snap" -- /no/such/program

	# stdin
	head -c 100000 /dev/urandom >"$work/in"
	stdin_file=$work/in check "stdin: wc -c" 0 100000 "$snap" -- sh -c 'wc -c'
	stdin_file=$work/in check "stdin: sha256sum (-i)" 0 "$(sha256sum <"$work/in" | cut -d' ' -f1)  -" \
		"$snap" -i -- sha256sum
	stdin_file=$work/in check "--no-stdin" 0 0 "$snap" --no-stdin -- sh -c 'wc -c'

	# writes stay in their restore
	check "writer" 0 written "$snap" -u root -- sh -c \
		'echo x >/tmp/f && echo y >/etc/new && echo z >>/etc/os-release && echo written'
	check "next restore sees none of it" 0 "$(tail -n1 "$work/os-release")" "$snap" -- sh -c \
		'[ -e /tmp/f ] && echo leak-tmp; [ -e /etc/new ] && echo leak-etc; tail -n1 /etc/os-release'
	[ ! -e "$rootfs/etc/new" ] && [ ! -e "$rootfs/tmp/f" ] || fail "a restore wrote into the cache's rootfs"
	cmp -s "$rootfs/etc/os-release" "$work/os-release" || fail "the cache's /etc/os-release changed"

	# the image's run config, and the command line over it
	local probe='echo "$GREETING $(pwd) $(id -u):$(id -g) $HOME $PATH"'
	check "image Env/WorkingDir/User" 0 \
		"hello /srv/data 1000:1000 /home/app /usr/sbin:/usr/bin:/sbin:/bin" "$snap" -- sh -c "$probe"
	check "--env/--workdir/--user" 0 "bye /tmp 65534:65534 /nonexistent /usr/sbin:/usr/bin:/sbin:/bin X" \
		"$snap" --env GREETING=bye -e NEW=X --workdir /tmp --user nobody -- sh -c "$probe"' $NEW'
	check "--env PATH and HOME" 0 "hello /srv/data 1000:1000 /h /bin" \
		"$snap" -e PATH=/bin -e HOME=/h -- sh -c "$probe"
	check "--user NAME:GROUP" 0 "1000:50 app" "$snap" --user app:staff -- sh -c 'echo "$(id -u):$(id -g) $(id -un)"'
	check "--user UID (no passwd entry: gid 0)" 0 "4242:0 /" "$snap" -u 4242 -- sh -c 'echo "$(id -u):$(id -g) $HOME"'
	check "--user UID (passwd entry: its gid)" 0 "1000:1000" "$snap" -u 1000 -- sh -c 'echo "$(id -u):$(id -g)"'
	check "--user root" 0 "0:0 /root" "$snap" -u root -- sh -c 'echo "$(id -u):$(id -g) $HOME"'
	check "--user UID:GID" 0 "7:8" "$snap" -u 7:8 -- sh -c 'echo "$(id -u):$(id -g)"'
	check "--entrypoint" 0 "a b" "$snap" --entrypoint /bin/echo -- a b
	check "--entrypoint without CMD drops the image Cmd" 0 "" "$snap" --entrypoint /bin/true
	refused "unknown user" "user 'ghost' not found" "$snap" -u ghost -- echo RAN
	refused "unknown group" "group 'ghosts' not found" "$snap" -u app:ghosts -- echo RAN
	refused "relative workdir" "absolute" "$snap" -w tmp -- echo RAN

	parallel "$snap" 20

	check "restore of the cache-hit snapshot" 0 hello "$work/bb2.smsnap" -- echo hello
	say "ok: second smbake is a cache hit in $ms ms"

	# clear failures
	python3 - "$snap" "$work/v2.smsnap" <<'PY'
import sys
d = bytearray(open(sys.argv[1], "rb").read())
d[8:10] = (2).to_bytes(2, "little")  # header major version
open(sys.argv[2], "wb").write(d)
PY
	refused "another format major version" "format version 2\.[0-9]+ is not supported" "$work/v2.smsnap" -- echo RAN
	mv "$rootfs" "$rootfs.away"
	refused "root filesystem gone" "missing" "$snap" -- echo RAN
	mv "$rootfs.away" "$rootfs"

	clock_and_rng "$snap"
	echo "PASS: bake_busybox"
}

. "$(dirname "$0")/bake_common.sh" "$@"
