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

if "$b/smbake" x -o /dev/null 2>&1 | grep -q "not implemented yet"; then
	echo "demo: 3. NOT BUILT YET: bake (capture a snapshot) and restore are not implemented"
	exit 0
fi
