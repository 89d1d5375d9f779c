#!/bin/bash
# The main job on the embedded default image: build a small busybox image
# offline (Debian's busybox-static, packed as an OCI layout with umoci), bake
# it with smbake (boot once, warm up, capture), bake it again (a cache hit:
# measured before the restores, whose VM teardown runs on after smrestore
# exits and would share the CPU with it), restore it several times to run
# commands, and show what the snapshot holds.
# Guests run through tests/kvmhost/run: directly on hardware KVM, otherwise
# inside the emulated KVM host (QEMU TCG with nested SVM).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
b=$root/build/tools
kernel=$(kernel/build.sh --path)
[ -f "$kernel" ] || { echo "demo: no guest kernel; run scripts/setup.sh first" >&2; exit 125; }
for t in smkvm smbake smrestore smsnap; do
	[ -x "$b/$t" ] || { echo "demo: build/tools/$t missing; run scripts/setup.sh first" >&2; exit 125; }
done

echo "demo: 1. which KVM does this host have?"
kind=$("$b/smkvm")
if [ "$kind" = hardware ]; then
	echo "demo:    hardware KVM: guests run directly"
else
	echo "demo:    '$kind': no usable hardware KVM here, so guests run inside the emulated KVM host"
fi

d=$root/build/demo
mkdir -p "$d"
echo "demo: 2. build the default image offline from Debian's busybox-static: $d/image/oci"
tests/fixtures/mkbusybox.sh "$d/image" >/dev/null
image="oci:$d/image/oci:latest"
snap=$d/busybox.smsnap
rm -f "$snap"

echo "demo: 3. bake it: pull, unpack, boot once, warm up, capture into $snap"
tests/kvmhost/run --rw "$root/build" -- bash -c "
	set -e
	export SM_CACHE='$d/cache' SM_KERNEL='$kernel' SM_AGENT='$root/build/agent/sminit'
	'$b/smbake' '$image' -o '$snap' --warmup 'echo baked > /etc/baked-at-bake-time' --json
	'$b/smsnap' verify '$snap'
	echo 'demo: 4. bake again: same inputs (the warm-up is one: it is part of the bake key), so the cached snapshot is reused'
	s=\$(date +%s%N)
	out=\$('$b/smbake' '$image' -o '$snap' --warmup 'echo baked > /etc/baked-at-bake-time' --json)
	ms=\$(( (\$(date +%s%N) - s) / 1000000 ))
	hit=no
	case \"\$out\" in *'\"cache_hit\":true'*) hit=yes ;; esac
	echo \"demo:    second smbake took \$ms ms (cache hit: \$hit)\"
	echo 'demo: 5. restore it three times, running a command each time'
	echo 'demo:    (the image has Entrypoint /bin/sh and a CMD is appended to it, as with docker run: cleared here)'
	for i in 1 2 3; do
		'$b/smrestore' --timing --entrypoint '' '$snap' -- /bin/sh -c \
			'echo \"restore \$0: \$(cat /etc/baked-at-bake-time), date \$(date -u +%FT%TZ), random \$(head -c4 /dev/urandom | od -An -tx1 | tr -d \" \")\"' \$i
	done
	echo 'demo: 6. the image default command (Entrypoint + Cmd from its config)'
	'$b/smrestore' '$snap'
"
echo "demo: 7. what the snapshot holds"
"$b/smsnap" dump "$snap" | head -n 40
echo "demo: done"
