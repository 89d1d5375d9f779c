# Shared by bake_busybox.sh and bake_debian.sh: bake real images served by a
# real registry (Debian's docker-registry) with smbake, then restore them.
#
# A test runs in two stages:
#  1. On the host (no KVM needed, native speed): prepare() builds the OCI
#     image(s) and push() sends them with skopeo to a registry whose storage
#     lives in the work directory under /tmp.
#  2. The same script again, inside the emulated KVM host (tests/kvmhost/run),
#     which sees the host's /tmp (privately writable): a new registry serves
#     that storage on the emulated host's loopback, and inner() bakes and
#     restores (SM_CACHE private to the test).
#
# Usage: a test defines prepare() and inner(), then
#   . bake_common.sh BUILD_DIR KVMHOST TIMEOUT_S     (stage 1, from ctest)
# which re-runs "$0 BUILD_DIR" with SM_BAKE_E2E_INNER=1 for stage 2.
# Exit 77 (skip) without root, docker-registry, skopeo or umoci.
set -euo pipefail
build=$(cd "${1:?build directory}" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
src=$(cd "$here/../.." && pwd)
regpid=

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
stop_registry() {
	[ -n "$regpid" ] && kill "$regpid" 2>/dev/null && wait "$regpid" 2>/dev/null || true
	regpid=
}
start_registry() { # start_registry PORT: serve $work/registry/data on 127.0.0.1:PORT
	mkdir -p "$work/registry"
	printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' \
		"$work/registry/data" "$1" >"$work/registry/config.yml"
	docker-registry serve "$work/registry/config.yml" >>"$work/registry/log" 2>&1 &
	regpid=$!
	for _ in $(seq 300); do
		python3 -c 'import sys, urllib.request
try: urllib.request.urlopen(sys.argv[1], timeout=2); sys.exit(0)
except Exception: sys.exit(1)' "http://127.0.0.1:$1/v2/" && return 0
		sleep 0.1
	done
	cat "$work/registry/log" >&2
	fail "the registry did not start on port $1"
}

if [ "${SM_BAKE_E2E_INNER:-}" != 1 ]; then
	# ---- stage 1: on the host ------------------------------------------
	kvmhost=${2:?kvmhost runner}
	timeout_s=${3:?timeout}
	[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (images hold root-owned files)"; exit 77; }
	for t in docker-registry skopeo umoci python3; do
		command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
	done
	work=$(mktemp -d /tmp/sm-bake-e2e.XXXXXX)
	trap 'stop_registry; rm -rf "$work"' EXIT
	port=$(freeport)
	start_registry "$port"
	push() { # push OCI_LAYOUT:TAG NAME:TAG
		skopeo copy -q --dest-tls-verify=false "oci:$1" "docker://127.0.0.1:$port/$2" ||
			fail "skopeo push $2"
	}
	t0=$(date +%s%N)
	prepare
	echo "prepared the image(s) on the host in $((($(date +%s%N) - t0) / 1000000)) ms"
	stop_registry
	rc=0
	SM_BAKE_E2E_INNER=1 SM_BAKE_WORK=$work "$kvmhost" --timeout "$timeout_s" --mem 3072 \
		--rw "$build" -- "$self" "$build" || rc=$?
	exit $rc
fi

# ---- stage 2: inside the emulated KVM host -----------------------------------
work=${SM_BAKE_WORK:?}
trap 'stop_registry' EXIT
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null || true
kernel=${SM_KERNEL:-$("$src/kernel/build.sh" --path)}
[ -f "$kernel" ] || fail "no guest kernel at $kernel; run kernel/build.sh"
export SM_KERNEL=$kernel SM_AGENT="$build/agent/sminit"
export SM_CACHE="$work/cache"
smbake="$build/tools/smbake"
smrestore="$build/tools/smrestore"
smsnap="$build/tools/smsnap"
for t in "$smbake" "$smrestore" "$smsnap" "$SM_AGENT"; do
	[ -x "$t" ] || fail "$t not built"
done
port=$(freeport)
start_registry "$port"
reg=127.0.0.1:$port

# Each smrestore gets this long (s) before it is stopped (SIGTERM, forwarded
# to CMD): a hung guest fails its check instead of the whole test's time.
restore_timeout=${SM_BAKE_RESTORE_TIMEOUT:-90}

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# bake IMAGE SNAP [smbake options]: a fresh bake; its --json line in SNAP.json
bake() {
	local image=$1 snap=$2
	shift 2
	local t0
	t0=$(date +%s%N)
	if ! "$smbake" "$image" -o "$snap" --json --console "$snap.console" "$@" \
		>"$snap.json" 2>"$snap.err"; then
		cat "$snap.err" >&2
		tail -n 40 "$snap.console" >&2 || true
		fail "smbake $image"
	fi
	echo "baked $image in $(ms_since "$t0") ms: $(cat "$snap.json")"
	python3 - "$snap.json" "$snap" "$image" <<'PY' || fail "smbake --json output"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["snapshot"] == sys.argv[2] and j["image"] == sys.argv[3], j
assert j["cache_hit"] is False, j
assert j["image_digest"].startswith("sha256:") and j["bake_key"].startswith("sha256:"), j
for k in ("pull_ms", "unpack_ms", "boot_ms", "ready_ms", "capture_ms", "write_ms", "total_ms"):
    assert isinstance(j[k], (int, float)) and j[k] >= 0, (k, j)
PY
}

# check NAME WANT_RC WANT_STDOUT SMRESTORE_ARGS...: run smrestore (stdin from
# $stdin_file, default /dev/null) and compare its exit status and stdout.
check() {
	local name=$1 want_rc=$2 want_out=$3
	shift 3
	local rc=0 out
	timeout -k 5 "$restore_timeout" "$smrestore" "$@" <"${stdin_file:-/dev/null}" \
		>"$work/out" 2>"$work/err" || rc=$?
	out=$(cat "$work/out")
	if [ "$rc" != "$want_rc" ] || [ "$out" != "$want_out" ]; then
		fail "$name: exit $rc (want $want_rc), stdout '$(head -c 600 "$work/out")' (want '$want_out'); stderr: $(head -c 2000 "$work/err")"
	fi
	echo "ok: $name"
}

# refused NAME PATTERN SMRESTORE_ARGS...: exit 125, one line on stderr
# matching PATTERN, and the command (which would print RAN) did not run.
refused() {
	local name=$1 pat=$2
	shift 2
	local rc=0
	timeout -k 5 "$restore_timeout" "$smrestore" "$@" </dev/null >"$work/out" 2>"$work/err" ||
		rc=$?
	[ "$rc" = 125 ] || fail "$name: exit $rc (want 125); stderr: $(cat "$work/err")"
	[ ! -s "$work/out" ] || fail "$name: the command ran: $(cat "$work/out")"
	[ "$(wc -l <"$work/err")" = 1 ] || fail "$name: want one line on stderr, got: $(cat "$work/err")"
	grep -Eq "^smrestore: .*($pat)" "$work/err" || fail "$name: unclear message: $(cat "$work/err")"
	echo "ok: $name refused: $(cat "$work/err")"
}

# clock_and_rng SNAP: the guest clock is the host's now (not the bake's), and
# two restores do not share random state.
clock_and_rng() {
	local snap=$1 g h r1 r2
	g=$(timeout -k 5 "$restore_timeout" "$smrestore" "$snap" --no-stdin -- date +%s) || fail "date"
	h=$(date +%s)
	[ $((h - g)) -le 3 ] && [ $((g - h)) -le 3 ] ||
		fail "guest clock $g vs host $h (baked at $(stat -c %Y "$snap"))"
	echo "ok: date in a restore is the current time ($g vs host $h)"
	r1=$(timeout -k 5 "$restore_timeout" "$smrestore" "$snap" --no-stdin --console "$work/rng1" -- \
		sh -c 'head -c16 /dev/urandom | od -An -tx1') || fail "urandom 1: exit $?; $(tail -n 20 "$work/rng1")"
	r2=$(timeout -k 5 "$restore_timeout" "$smrestore" "$snap" --no-stdin --console "$work/rng2" -- \
		sh -c 'head -c16 /dev/urandom | od -An -tx1') || fail "urandom 2: exit $?; $(tail -n 20 "$work/rng2")"
	[ -n "$r1" ] && [ "$r1" != "$r2" ] || fail "two restores read the same random bytes: $r1"
	echo "ok: /dev/urandom differs between two restores"
}

# parallel SNAP N: N restores at once, each prints its own number.
parallel() {
	local snap=$1 n=$2 i t0 pids=()
	t0=$(date +%s%N)
	for i in $(seq "$n"); do
		timeout -k 5 $((restore_timeout * 3)) "$smrestore" "$snap" --no-stdin \
			--console "$work/par$i.console" -- sh -c "echo par $i" \
			>"$work/par$i" 2>"$work/par$i.err" &
		pids+=($!)
	done
	for i in $(seq "$n"); do
		wait "${pids[$((i - 1))]}" ||
			fail "parallel restore $i: exit $?; $(cat "$work/par$i.err"); guest console:
$(tail -n 40 "$work/par$i.console" 2>/dev/null)"
		[ "$(cat "$work/par$i")" = "par $i" ] ||
			fail "parallel restore $i printed '$(cat "$work/par$i")'"
	done
	echo "ok: $n restores in parallel ($(ms_since "$t0") ms for all)"
}

inner
