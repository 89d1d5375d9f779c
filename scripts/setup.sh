#!/bin/bash
# One-time (idempotent) setup on Debian bookworm: install the packages the
# project needs, build the guest kernel (cached), fetch the emulated KVM
# host's kernel (cached), and build the project into ./build.
#
#   scripts/setup.sh            everything
#   scripts/setup.sh --no-apt   skip apt-get (packages already installed)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
	# build
	build-essential cmake pkg-config git clang clang-14 clang-format libclang-rt-14-dev linux-libc-dev
	libzstd-dev zlib1g-dev libarchive-dev libcurl4-openssl-dev libssl-dev libjansson-dev libcmocka-dev
	# guest kernel from Debian's source
	linux-source-6.1 bc flex bison libelf-dev xz-utils kmod cpio
	# guests, the emulated KVM host, images and peers for tests and benchmarks
	qemu-system-x86 busybox-static file zstd python3
	docker-registry skopeo umoci apache2-utils debootstrap
	hyperfine gnuplot-nox
)

if [ "${1:-}" != "--no-apt" ]; then
	missing=()
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		if [ "$(id -u)" != 0 ]; then
			sudo=sudo
		else
			sudo=
		fi
		echo "setup: installing ${missing[*]}"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "setup: all Debian packages present"
	fi
fi

echo "setup: guest kernel"
vmlinux=$(kernel/build.sh)
echo "setup: guest kernel at $vmlinux"

echo "setup: emulated KVM host kernel"
tests/kvmhost/prepare --refresh

echo "setup: building the project in ./build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "setup: done; run the tests with: scripts/test.sh"
