#!/bin/bash
# The main job on the embedded default, as far as it exists today. Each step
# says what it did; steps whose code has not landed say so and are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
b=build/tools

echo "demo: 1. which KVM does this host have?"
kind=$("$b/smkvm")
echo "demo:    $kind"
if [ "$kind" = hardware ]; then
	echo "demo:    hardware KVM: guests run directly"
else
	echo "demo:    no usable hardware KVM here ($kind): guests run inside the emulated KVM host (tests/kvmhost/run)"
fi

echo "demo: 2. run a tiny guest on a real KVM (tests/e2e/kvm_smoke through tests/kvmhost/run)"
tests/kvmhost/run --rw "$PWD/build" -- "$PWD/build/tests/e2e/kvm_smoke"

echo "demo: 3. bake the default busybox image and restore it to run a command"
if "$b/smbake" --help >/dev/null 2>&1 && "$b/smbake" x -o /dev/null 2>&1 | grep -q "not implemented yet"; then
	echo "demo:    NOT BUILT YET: smbake/smrestore are not implemented (issues 3-6 are in progress)"
fi
