# Shared by the fs_*.sh e2e tests (virtio-fs root). Usage (sourced):
#   . fs_common.sh BUILD_DIR
# Builds a busybox root directory under the build tree ($root; the
# harness's /tmp is a fresh tmpfs inside the emulated host, the build tree is
# shared with it) and offers a manifest of it to prove it never changes.
. "$(dirname "${BASH_SOURCE[0]}")/vm_common.sh" "$1"
bb=${BUSYBOX:-/bin/busybox}
[ -x "$bb" ] || { echo "fs e2e: no $bb (install busybox-static)" >&2; exit 1; }
root="$build/tests/e2e/fs-root.$(basename "$0" .sh)"
rm -rf "$root"
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp" "$root/data/sub"
cp "$bb" "$root/bin/busybox"
for a in $("$bb" --list); do
	[ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done
chmod 1777 "$root/tmp"
echo "hello from the host" >"$root/etc/motd"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
echo keep >"$root/data/sub/keep"
ln -s ../etc/motd "$root/data/motd.link"
trap 'rm -rf "$work" "$root"' EXIT

# Every path with type, mode, size, mtime, link target, and file contents.
manifest() {
	(cd "$root" && find . -printf '%p %y %m %s %T@ %l\n' | LC_ALL=C sort &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}

# run_guest OUT ERR [smrun options] -- CMD...: sets $rc.
run_guest() {
	local out=$1 err=$2
	shift 2
	set +e
	"$smrun" --kernel "$kernel" --console "$work/console" --rootfs "$root" "$@" >"$out" 2>"$err"
	rc=$?
	set -e
}

fail() {
	echo "FAIL: $*" >&2
	tail -n 40 "$work/console" >&2 || true
	exit 1
}
