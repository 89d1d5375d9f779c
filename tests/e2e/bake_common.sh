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
# Plain bash, no python3 (its start-up alone takes seconds in the emulated
# host, and the old probe loop, 300 python3 runs, could spend half an hour
# there without a word when the registry never came up).
# http_ok PORT PATH: GET http://127.0.0.1:PORT/PATH answers 200 (5 s at most).
http_ok() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$2" "$1" >&3 || exit 1
		IFS= read -r -t 5 line <&3 || exit 1
		[[ $line == "HTTP/1."?" 200"* ]]
	) 2>/dev/null
}
stop_registry() {
	[ -n "$regpid" ] && kill "$regpid" 2>/dev/null && wait "$regpid" 2>/dev/null || true
	regpid=
}
# start_registry: serve $work/registry/data on 127.0.0.1:$port, a port picked
# here (below the ephemeral range; nothing may answer on it), tried up to 3
# times if the registry exits at once. Fails with the registry's log when it
# does not answer within $SM_BAKE_REGISTRY_TIMEOUT (60) s.
start_registry() {
	local try t0 limit=${SM_BAKE_REGISTRY_TIMEOUT:-60}
	mkdir -p "$work/registry"
	for try in 1 2 3; do
		port=$((20000 + RANDOM % 12000))
		! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || continue
		printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' \
			"$work/registry/data" "$port" >"$work/registry/config.yml"
		echo "--- try $try, port $port" >>"$work/registry/log"
		docker-registry serve "$work/registry/config.yml" >>"$work/registry/log" 2>&1 &
		regpid=$!
		t0=$SECONDS
		while kill -0 "$regpid" 2>/dev/null; do
			http_ok "$port" /v2/ && return 0
			if [ $((SECONDS - t0)) -ge "$limit" ]; then
				cat "$work/registry/log" >&2
				fail "the registry did not answer on port $port within $limit s"
			fi
			sleep 0.2
		done
		wait "$regpid" 2>/dev/null || true
		regpid=
	done
	cat "$work/registry/log" >&2
	fail "the registry exited at start three times (log above)"
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
	start_registry
	push() { # push OCI_LAYOUT:TAG NAME:TAG
		skopeo copy -q --dest-tls-verify=false "oci:$1" "docker://127.0.0.1:$port/$2" ||
			fail "skopeo push $2"
	}
	t0=$(date +%s%N)
	prepare
	echo "prepared the image(s) on the host in $((($(date +%s%N) - t0) / 1000000)) ms"
	stop_registry
	rc=0
	t0=$(date +%s%N)
	echo "starting the emulated KVM host (timeout ${timeout_s} s)"
	# SM_BAKE_KVMHOST_OPTS: more options for the harness (e.g. --console to
	# see the emulated host's own kernel messages).
	# shellcheck disable=SC2086
	SM_BAKE_E2E_INNER=1 SM_BAKE_WORK=$work "$kvmhost" --timeout "$timeout_s" --mem 3072 \
		${SM_BAKE_KVMHOST_OPTS:-} --rw "$build" -- "$self" "$build" || rc=$?
	echo "the emulated KVM host finished in $((($(date +%s%N) - t0) / 1000000)) ms (exit $rc)"
	exit $rc
fi

# ---- stage 2: inside the emulated KVM host -----------------------------------
work=${SM_BAKE_WORK:?}
trap 'stop_registry' EXIT
t_inner=$(date +%s%N)
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
# say TEXT: one progress line, prefixed with the time since stage 2 began, so
# a test stopped by its timeout shows the step it was in.
say() {
	local ms
	ms=$(ms_since "$t_inner")
	printf '[%d.%d s] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}
say "inside the emulated KVM host ($(nproc) CPUs, $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) MiB)"
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
start_registry
reg=127.0.0.1:$port
say "registry serving on $reg"

# Each smrestore gets this long (s) before it is stopped (SIGTERM, forwarded
# to CMD): a hung guest fails its check instead of the whole test's time.
# A test may set default_restore_timeout and default_bake_timeout.
restore_timeout=${SM_BAKE_RESTORE_TIMEOUT:-${default_restore_timeout:-90}}
# The whole smbake (pull, unpack, boot, capture, write) gets this long (s).
bake_timeout=${SM_BAKE_TIMEOUT:-${default_bake_timeout:-300}}

# fail_console FILE: the tail of a guest console, for a failure message.
fail_console() {
	if [ -s "$1" ]; then
		printf '\nguest console (%s, last 40 lines):\n' "$1"
		tail -n 40 "$1"
	else
		printf '\n(guest console %s is empty)' "$1"
	fi
}

# bake IMAGE SNAP [smbake options]: a fresh bake; its --json line in SNAP.json
bake() {
	local image=$1 snap=$2
	shift 2
	local t0 rc=0 pid tpid
	t0=$(date +%s%N)
	say "baking $image (timeout $bake_timeout s; smbake's progress follows)"
	# smbake's progress lines (each with its elapsed time) go to SNAP.err and
	# are copied to stderr as they come (no process substitution: the
	# emulated host's chroot has no /dev/fd).
	: >"$snap.err"
	timeout -k 5 "$bake_timeout" "$smbake" "$image" -o "$snap" --json --progress \
		--console "$snap.console" "$@" >"$snap.json" 2>"$snap.err" &
	pid=$!
	tail -n +1 -F -s 0.5 --pid="$pid" "$snap.err" 2>/dev/null | sed -u 's/^/  /' >&2 &
	tpid=$!
	wait "$pid" || rc=$?
	wait "$tpid" || true
	if [ "$rc" != 0 ]; then
		[ "$rc" = 124 ] && echo "smbake was stopped after $bake_timeout s (SM_BAKE_TIMEOUT)" >&2
		fail "smbake $image: exit $rc after $(ms_since "$t0") ms$(fail_console "$snap.console")"
	fi
	say "baked $image in $(ms_since "$t0") ms: $(cat "$snap.json")"
	# Checked in bash, not python3: its start-up took 5-19 s in the emulated
	# host. smbake writes compact JSON (no spaces), each key once.
	local j k
	j=$(cat "$snap.json")
	for k in "\"snapshot\":\"$snap\"" "\"image\":\"$image\"" '"cache_hit":false' \
		'"image_digest":"sha256:' '"bake_key":"sha256:'; do
		[[ $j == *"$k"* ]] || fail "smbake --json output lacks $k: $j"
	done
	for k in pull_ms unpack_ms boot_ms ready_ms capture_ms write_ms total_ms; do
		[[ $j =~ \"$k\":[0-9] ]] || fail "smbake --json output: no $k >= 0: $j"
	done
}

# check NAME WANT_RC WANT_STDOUT SMRESTORE_ARGS...: run smrestore (stdin from
# $stdin_file, default /dev/null) and compare its exit status and stdout.
check() {
	local name=$1 want_rc=$2 want_out=$3
	shift 3
	local rc=0 out t0
	t0=$(date +%s%N)
	timeout -k 5 "$restore_timeout" "$smrestore" --timing --console "$work/console" "$@" \
		<"${stdin_file:-/dev/null}" >"$work/out" 2>"$work/err" || rc=$?
	out=$(cat "$work/out")
	if [ "$rc" != "$want_rc" ] || [ "$out" != "$want_out" ]; then
		[ "$rc" = 124 ] && echo "smrestore was stopped after $restore_timeout s (SM_BAKE_RESTORE_TIMEOUT)" >&2
		fail "$name: exit $rc (want $want_rc) after $(ms_since "$t0") ms, stdout '$(head -c 600 "$work/out")' (want '$want_out'); stderr: $(head -c 2000 "$work/err")$(fail_console "$work/console")"
	fi
	say "ok: $name ($(ms_since "$t0") ms; $(timing "$work/err"))"
}

# timing FILE: smrestore's --timing line from its stderr, in short (ms since
# smrestore started, at the end of each phase).
timing() {
	local line k out=
	line=$(grep -m1 '^{"smrestore_timing"' "$1" 2>/dev/null) || {
		echo "no timing"
		return 0
	}
	for k in memory resume agent done; do
		[[ $line =~ \"${k}_ms\":([0-9]+) ]] && out+="$k ${BASH_REMATCH[1]}, "
	done
	[[ $line == *'"cache_hit":1'* ]] && out+="memory image cached" || out+="memory image unpacked"
	echo "in smrestore at ms: $out"
}

# refused NAME PATTERN SMRESTORE_ARGS...: exit 125, one line on stderr
# matching PATTERN, and the command (which would print RAN) did not run.
refused() {
	local name=$1 pat=$2
	shift 2
	local rc=0
	timeout -k 5 "$restore_timeout" "$smrestore" "$@" </dev/null >"$work/out" 2>"$work/err" ||
		rc=$?
	[ "$rc" = 125 ] || fail "$name: exit $rc (want 125); stderr: $(head -c 2000 "$work/err")"
	[ ! -s "$work/out" ] || fail "$name: the command ran: $(cat "$work/out")"
	[ "$(wc -l <"$work/err")" = 1 ] || fail "$name: want one line on stderr, got: $(cat "$work/err")"
	grep -Eq "^smrestore: .*($pat)" "$work/err" || fail "$name: unclear message: $(cat "$work/err")"
	say "ok: $name refused: $(cat "$work/err")"
}

# clock_and_rng SNAP: the guest clock is the host's now (not the bake's), and
# two restores do not share random state.
clock_and_rng() {
	local snap=$1 g h r1 r2 rc=0
	g=$(timeout -k 5 "$restore_timeout" "$smrestore" "$snap" --no-stdin --console "$work/date" -- \
		date +%s) || rc=$?
	[ "$rc" = 0 ] || fail "date: exit $rc$(fail_console "$work/date")"
	h=$(date +%s)
	[ $((h - g)) -le 3 ] && [ $((g - h)) -le 3 ] ||
		fail "guest clock $g vs host $h (baked at $(stat -c %Y "$snap"))"
	say "ok: date in a restore is the current time ($g vs host $h)"
	r1=$(timeout -k 5 "$restore_timeout" "$smrestore" "$snap" --no-stdin --console "$work/rng1" -- \
		sh -c 'head -c16 /dev/urandom | od -An -tx1') || rc=$?
	[ "$rc" = 0 ] || fail "urandom 1: exit $rc$(fail_console "$work/rng1")"
	r2=$(timeout -k 5 "$restore_timeout" "$smrestore" "$snap" --no-stdin --console "$work/rng2" -- \
		sh -c 'head -c16 /dev/urandom | od -An -tx1') || rc=$?
	[ "$rc" = 0 ] || fail "urandom 2: exit $rc$(fail_console "$work/rng2")"
	[ -n "$r1" ] && [ "$r1" != "$r2" ] || fail "two restores read the same random bytes: $r1"
	say "ok: /dev/urandom differs between two restores ($r1 vs $r2)"
}

# parallel SNAP N: N restores at once, each prints its own number.
parallel() {
	local snap=$1 n=$2 i t0 rc pids=()
	t0=$(date +%s%N)
	for i in $(seq "$n"); do
		timeout -k 5 $((restore_timeout * 3)) "$smrestore" "$snap" --no-stdin \
			--console "$work/par$i.console" -- sh -c "echo par $i" \
			>"$work/par$i" 2>"$work/par$i.err" &
		pids+=($!)
	done
	say "started $n restores in parallel (timeout $((restore_timeout * 3)) s each)"
	for i in $(seq "$n"); do
		rc=0
		wait "${pids[$((i - 1))]}" || rc=$?
		[ "$rc" = 0 ] ||
			fail "parallel restore $i: exit $rc after $(ms_since "$t0") ms; $(head -c 2000 "$work/par$i.err")$(fail_console "$work/par$i.console")"
		[ "$(cat "$work/par$i")" = "par $i" ] ||
			fail "parallel restore $i printed '$(cat "$work/par$i")'"
	done
	say "ok: $n restores in parallel ($(ms_since "$t0") ms for all)"
}

inner
# Stage 2 ends here, not back in the calling script (bash reads a script as
# it runs it; nothing of the caller is read after this).
exit 0
