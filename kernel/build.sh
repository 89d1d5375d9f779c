#!/bin/sh
# Build the supermachine guest kernel (vmlinux) from Debian's linux-source-6.1:
# tinyconfig + kernel/supermachine.config + olddefconfig.
#
# The result is cached under $SM_CACHE/kernels/<key>/vmlinux, where <key> is a
# hash of the config fragment, this script and the source package version, so
# a second run returns at once. Prints the path of vmlinux on stdout.
#
#   kernel/build.sh            build if needed, print the path
#   kernel/build.sh --path     print the path the build would have (no build)
#   kernel/build.sh --force    rebuild even if cached
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/supermachine.config"
src_tar=/usr/src/linux-source-6.1.tar.xz
cache="${SM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/supermachine}"
jobs="${SM_JOBS:-$(nproc)}"

mode=build
case "${1:-}" in
--path) mode=path ;;
--force) mode=force ;;
-h|--help)
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
	exit 0 ;;
"") ;;
*) echo "kernel/build.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

if ! srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) || [ ! -f "$src_tar" ]; then
	echo "kernel/build.sh: $src_tar is missing; install it with: apt-get install linux-source-6.1" >&2
	exit 1
fi
key=$( { echo "linux-source-6.1 $srcver"; cat "$fragment" "$0"; } | sha256sum | cut -c1-16)
out="$cache/kernels/$key"

if [ "$mode" = path ]; then
	echo "$out/vmlinux"
	exit 0
fi
if [ "$mode" = build ] && [ -f "$out/vmlinux" ]; then
	echo "$out/vmlinux"
	exit 0
fi

mkdir -p "$cache/kernels"
work=$(mktemp -d "$cache/kernels/.build-$key.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
echo "kernel/build.sh: building guest kernel $key from linux-source-6.1 $srcver (a few minutes)" >&2
tar -C "$work" -xf "$src_tar"
ksrc="$work/linux-source-6.1"
make -s -C "$ksrc" tinyconfig >/dev/null
"$ksrc/scripts/kconfig/merge_config.sh" -m -O "$ksrc" "$ksrc/.config" "$fragment" >/dev/null
make -s -C "$ksrc" olddefconfig >/dev/null

# Every option we asked for must have survived olddefconfig.
missing=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=y|CONFIG_*=m)
		grep -qx "$line" "$ksrc/.config" || { echo "kernel/build.sh: $line did not stick" >&2; missing=1; } ;;
	CONFIG_*=n)
		opt=${line%=n}
		if grep -q "^$opt=[ym]" "$ksrc/.config"; then echo "kernel/build.sh: $opt still enabled" >&2; missing=1; fi ;;
	esac
done < "$fragment"
[ "$missing" = 0 ] || { echo "kernel/build.sh: fix kernel/supermachine.config" >&2; exit 1; }

make -s -C "$ksrc" -j"$jobs" vmlinux >&2
tmp="$cache/kernels/.$key.tmp.$$"
mkdir -p "$tmp"
cp "$ksrc/vmlinux" "$tmp/vmlinux"
cp "$ksrc/.config" "$tmp/config"
echo "linux-source-6.1 $srcver" > "$tmp/version"
rm -rf "$out"
mv "$tmp" "$out"
echo "$out/vmlinux"
