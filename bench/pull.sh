#!/bin/sh
# Pull + unpack benchmark: `smbake --unpack-only` from a local registry
# (cold cache every run) against `skopeo copy` + `umoci unpack` of the same
# image in the same run. Prints per-run times, medians and the ratio.
#
# Usage: bench/pull.sh [busybox|debian] [RUNS]
#   SMBAKE=path/to/smbake (default: $SM_BUILD/tools/smbake, build/tools/smbake,
#   then build-oci/tools/smbake)
# Needs: docker-registry, skopeo, umoci, python3, bc; busybox-static for
# "busybox"; debootstrap (first run, cached after) for "debian".
set -eu
which=${1:-debian}
runs=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
smbake=${SMBAKE:-}
[ -n "$smbake" ] || for c in ${SM_BUILD:+"$(realpath "$SM_BUILD")/tools/smbake"} "$here/build/tools/smbake" "$here/build-oci/tools/smbake"; do
	[ -x "$c" ] && smbake=$c && break
done
[ -x "$smbake" ] || { echo "pull.sh: build smbake first or set SMBAKE" >&2; exit 1; }
t=$(mktemp -d /tmp/sm-bench-pull-XXXXXX)
rpid=
trap '[ -n "$rpid" ] && kill $rpid 2>/dev/null; rm -rf "$t"' EXIT

case $which in
busybox) sh "$here/tests/fixtures/mkbusybox.sh" "$t/img" ;;
debian) sh "$here/tests/fixtures/mkdebian.sh" "$t/img" ;;
*) echo "pull.sh: unknown image $which" >&2; exit 1 ;;
esac
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
ref=127.0.0.1:$port/bench/$which:latest
skopeo copy -q --dest-tls-verify=false "oci:$t/img/oci:latest" "docker://$ref"
size=$(du -sb "$t/reg" | cut -f1)

now() { date +%s.%N; }
ours=""
theirs=""
for i in $(seq "$runs"); do
	rm -rf "$t/cache" "$t/out" "$t/out.config.json" "$t/sk" "$t/bundle"
	sync
	s=$(now)
	SM_CACHE=$t/cache "$smbake" -q --unpack-only "$ref" -o "$t/out"
	e=$(now)
	a=$(echo "$e - $s" | bc)
	s=$(now)
	skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$t/sk:latest"
	umoci unpack --image "$t/sk:latest" "$t/bundle" >/dev/null
	e=$(now)
	b=$(echo "$e - $s" | bc)
	printf 'run %d: smbake %.3f s   skopeo+umoci %.3f s\n' "$i" "$a" "$b"
	ours="$ours $a"
	theirs="$theirs $b"
done
median() { echo "$@" | tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
mo=$(median $ours)
mt=$(median $theirs)
printf 'image %s (%s bytes in the registry), %d runs, cold cache each run\n' "$which" "$size" "$runs"
printf 'median smbake --unpack-only: %.3f s\n' "$mo"
printf 'median skopeo copy + umoci unpack: %.3f s\n' "$mt"
printf 'ratio (smbake / skopeo+umoci): %.2f\n' "$(echo "$mo / $mt" | bc -l)"
# A row for bench/run.sh (the only line on stdout that starts with '{').
printf '{"area": "pull", "metric": "pull_unpack_%s", "unit": "s", "value": %.3f, "n": %d, "peer": "skopeo copy + umoci unpack", "peer_value": %.3f, "ratio": %.3f, "better": "lower", "note": "%s bytes in a local docker-registry, cold cache"}\n' \
	"$which" "$mo" "$runs" "$mt" "$(echo "$mo / $mt" | bc -l)" "$size"
