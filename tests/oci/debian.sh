#!/bin/sh
# A Debian bookworm minbase image (debootstrap, cached) pushed to a real
# docker-registry on loopback, pulled by smbake and compared file by file
# with `umoci unpack` of the same image; also unpacked from the OCI layout.
# Usage: debian.sh SMBAKE SRCDIR. Exit 77 when debootstrap/mirror/tools lack.
set -eu
smbake=$1
src=$2
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (owners are compared with umoci unpack)"; exit 77; }
for tool in docker-registry skopeo umoci; do
	command -v $tool >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
t=$(mktemp -d /tmp/sm-oci-debian-XXXXXX)
rpid=
trap '[ -n "$rpid" ] && kill $rpid 2>/dev/null; rm -rf "$t"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
sh "$src/tests/fixtures/mkdebian.sh" "$t/img" || exit $?
umoci unpack --image "$t/img/oci:latest" "$t/ref" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s/reg}}\nhttp: {addr: 127.0.0.1:%s}\n' \
	"$t" "$port" >"$t/reg.yml"
docker-registry serve "$t/reg.yml" >"$t/reg.log" 2>&1 &
rpid=$!
for _ in $(seq 100); do
	python3 -c 'import sys, urllib.request, urllib.error
try: urllib.request.urlopen(sys.argv[1], timeout=2); sys.exit(0)
except urllib.error.HTTPError as e: sys.exit(0 if e.code == 401 else 1)
except Exception: sys.exit(1)' "http://127.0.0.1:$port/v2/" && break
	sleep 0.1
done
skopeo copy -q --dest-tls-verify=false "oci:$t/img/oci:latest" "docker://127.0.0.1:$port/debian:bookworm"
export SM_CACHE=$t/cache
"$smbake" --unpack-only "127.0.0.1:$port/debian:bookworm" -o "$t/reg-out" || fail "registry pull"
python3 "$src/tests/oci/compare_trees.py" "$t/ref/rootfs" "$t/reg-out" || fail "registry pull differs from umoci"
export SM_CACHE=$t/cache2
"$smbake" --unpack-only "oci:$t/img/oci:latest" -o "$t/oci-out" || fail "oci layout"
python3 "$src/tests/oci/compare_trees.py" "$t/ref/rootfs" "$t/oci-out" || fail "oci layout differs from umoci"
chroot "$t/reg-out" /bin/sh -c 'dpkg-query -W -f="\${Package}\n" coreutils' | grep -q coreutils ||
	fail "unpacked Debian does not run"
echo PASS
