# SPDX-License-Identifier: Apache-2.0
# Shared setup for the bench areas that boot guests in the emulated KVM host
# (boot, restore, restore_qemu, density). Source it from bench/<area>.sh
# after `cd` to the repository root; bench/run.sh does not run it as an area.
#
#   bench_init AREA TOOL...   check the build and the kernel, make $out (a
#                             temporary directory under the build, removed on
#                             exit) holding vmlinux and initrd.cpio (the
#                             agent's initramfs); sets build, kernel, out
#   bench_kvmhost ARGS...     tests/kvmhost/run --no-aslr ARGS (its output
#                             to stderr); a failed emulated host is
#                             reported, not fatal: the caller uses the
#                             samples collected so far
#   bench_samples             fail unless $out/samples.json exists; copy it
#                             to $SM_BENCH_OUT/AREA.samples.json when set
#   bench_die MSG             "AREA bench: MSG" on stderr, exit 1
#
# Env: SM_BUILD (default build), SM_KERNEL (default kernel/build.sh --path),
#      SM_BENCH_CONSOLE=1 (copy the emulated host's console to stderr),
#      SM_BENCH_ASLR=1 (keep address space randomization in the emulated
#      host; by default it is off there: under QEMU TCG every start of a
#      program loaded at new random addresses costs ~20 ms that hardware
#      does not pay, most of a short process's start. It is the emulated
#      host's setting, the same for every tool and peer measured in it;
#      rows say which in their note: $SM_BENCH_L1, set here).
# Python parts inside the emulated host import bench/benchlib.py (PYTHONPATH
# is set here; the harness keeps the environment and working directory).

bench_die() {
	echo "$bench_area bench: $*" >&2
	exit 1
}

bench_init() {
	bench_area=$1
	shift
	build=$(realpath "${SM_BUILD:-build}")
	kernel=${SM_KERNEL:-$(kernel/build.sh --path)}
	local t
	for t in "$@"; do
		[ -x "$build/tools/$t" ] || bench_die "build $t first ($build)"
	done
	[ -f "$kernel" ] || bench_die "no kernel at $kernel (kernel/build.sh)"
	out=$(mktemp -d "$build/.${bench_area}bench.XXXXXX")
	trap 'rm -rf "$out"' EXIT
	"$build/tools/smrun" --agent "$build/agent/sminit" --write-initrd "$out/initrd.cpio"
	cp "$kernel" "$out/vmlinux"
	export PYTHONPATH="$PWD/bench${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
}

if [ "${SM_BENCH_ASLR:-0}" = 1 ]; then
	bench_aslr=()
	export SM_BENCH_L1="ASLR on in the emulated host (SM_BENCH_ASLR=1)"
else
	bench_aslr=(--no-aslr)
	export SM_BENCH_L1="ASLR off in the emulated host (norandmaps, bench/lib.sh)"
fi

bench_kvmhost() {
	tests/kvmhost/run ${SM_BENCH_CONSOLE:+--console} "${bench_aslr[@]}" "$@" >&2 ||
		echo "$bench_area bench: the emulated host failed; using the samples collected so far" >&2
}

bench_samples() {
	[ -f "$out/samples.json" ] || bench_die "no samples"
	if [ -n "${SM_BENCH_OUT:-}" ]; then
		mkdir -p "$SM_BENCH_OUT"
		cp "$out/samples.json" "$SM_BENCH_OUT/$bench_area.samples.json"
	fi
}
