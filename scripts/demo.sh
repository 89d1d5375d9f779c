#!/bin/bash
# The main job on the embedded default, as far as it exists today. Each step
# says what it did; steps whose code has not landed say so and are skipped.
# Guests run through tests/kvmhost/run: directly on hardware KVM, otherwise
# inside the emulated KVM host (QEMU TCG with nested SVM).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
b=$root/build/tools
kernel=$(kernel/build.sh --path)
[ -f "$kernel" ] || { echo "demo: no guest kernel; run scripts/setup.sh first" >&2; exit 125; }

echo "demo: 1. which KVM does this host have?"
kind=$("$b/smkvm")
if [ "$kind" = hardware ]; then
	echo "demo:    hardware KVM: guests run directly"
else
	echo "demo:    '$kind': no usable hardware KVM here, so guests run inside the emulated KVM host"
fi

if [ ! -x "$b/smrun" ]; then
	echo "demo: 2. NOT BUILT YET: the microVM (smrun) has not landed"
	exit 0
fi
echo "demo: 2. cold-boot the default busybox guest in our microVM and run a command in it"
tests/kvmhost/run --rw "$root/build" -- "$b/smrun" --kernel "$kernel" \
	--agent "$root/build/agent/sminit" --console none --timing -- \
	/bin/sh -c 'echo "hello from $(uname -sr) in a supermachine microVM"; cat /proc/cpuinfo | grep -m1 "model name"'

if [ ! -x "$b/smrestore" ] || "$b/smrestore" x 2>&1 | grep -q "not implemented yet"; then
	echo "demo: 3. NOT BUILT YET: snapshot capture and restore"
	exit 0
fi
# The embedded default image: busybox-static plus our agent, in the guest's
# initramfs (built offline from Debian's busybox-static by smrun). Baking an
# OCI image's root filesystem (virtio-fs) into a snapshot is not wired yet.
snapdir=$root/build/demo
mkdir -p "$snapdir"
echo "demo: 3. bake: boot the busybox guest once, warm it up, capture it into $snapdir/busybox.smsnap"
tests/kvmhost/run --rw "$root/build" -- bash -c "
	set -e
	SM_CACHE='$snapdir/cache' '$b/smrun' --kernel '$kernel' --agent '$root/build/agent/sminit' \
		--console none --snapshot-out '$snapdir/busybox.smsnap' --warmup 'echo baked > /etc/baked-at-bake-time'
	'$b/smsnap' verify '$snapdir/busybox.smsnap'
	echo 'demo: 4. restore the snapshot three times, running a command each time'
	for i in 1 2 3; do
		SM_CACHE='$snapdir/cache' '$b/smrestore' --timing '$snapdir/busybox.smsnap' -- \
			/bin/sh -c 'echo \"restore \$0: \$(cat /etc/baked-at-bake-time), uptime \$(cut -d\" \" -f1 /proc/uptime) s\"' \$i
	done
"
echo "demo: 5. what the snapshot holds"
"$b/smsnap" dump "$snapdir/busybox.smsnap" | head -n 30
echo "demo: done. NOT YET: smbake IMAGE (pull an OCI image and bake its root filesystem); see README status."
