#!/bin/bash
# Time and randomness after restore (agent SYNC, docs/agent-protocol.md):
# a snapshot restored seconds after the bake shows the host's current time,
# not the time of the capture; two restores of one snapshot read different
# bytes from /dev/urandom and get different random UUIDs, i.e. their
# kernel RNGs do not share the state the snapshot captured.
. "$(dirname "$0")/snap_common.sh" "$1"
fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/err*; do [ -f "$f" ] && { echo "== $f" >&2; cat "$f" >&2; }; done
	exit 1
}
# The warm-up makes the case where a reseed matters: after a few seconds of
# uptime the guest kernel reseeds its CRNG only every uptime/2 seconds (up
# to 60 s), and the read right before the capture starts such an interval.
# A restore that reads within it would continue the captured generator.
bake 'sleep 4; head -c 16 /dev/urandom >/dev/null'
baked=$(date +%s)
echo "baked at $baked"
# Long enough that a clock left at the capture is visibly wrong.
sleep 6

# 1. the wall clock is now.
h0=$(date +%s)
g=$("$smrestore" "$snap" --console "$work/console" --timing -- /bin/date +%s 2>"$work/err-clock") ||
	fail "restore for the clock: rc=$?"
h1=$(date +%s)
cat "$work/err-clock" >&2
echo "host before $h0, guest $g, host after $h1"
[[ "$g" =~ ^[0-9]+$ ]] || fail "guest date printed '$g'"
[ "$g" -ge $((h0 - 2)) ] && [ "$g" -le $((h1 + 2)) ] ||
	fail "guest clock $g is not within 2 s of the host's [$h0, $h1] (baked at $baked)"
echo "ok: guest clock $g within 2 s of the host's [$h0, $h1]"

# The clock keeps running normally from there (no jump, no stall).
out=$("$smrestore" "$snap" -- /bin/sh -c 'a=$(date +%s); sleep 2; b=$(date +%s); echo $((b - a))' \
	2>"$work/err-tick") || fail "restore for the tick"
[ "$out" -ge 1 ] && [ "$out" -le 4 ] || fail "2 s of sleep in the guest took '$out' s of wall time"
echo "ok: the guest clock advances normally after the sync ($out s for sleep 2)"

# 2. two restores do not share random state.
rng='head -c16 /dev/urandom | od -An -tx1 | tr -d " \n"; echo; cat /proc/sys/kernel/random/uuid'
r1=$("$smrestore" "$snap" -- /bin/sh -c "$rng" 2>"$work/err-rng1") || fail "restore rng 1"
r2=$("$smrestore" "$snap" -- /bin/sh -c "$rng" 2>"$work/err-rng2") || fail "restore rng 2"
echo "restore 1: $(echo $r1)"
echo "restore 2: $(echo $r2)"
b1=$(echo "$r1" | sed -n 1p) b2=$(echo "$r2" | sed -n 1p)
u1=$(echo "$r1" | sed -n 2p) u2=$(echo "$r2" | sed -n 2p)
[[ "$b1" =~ ^[0-9a-f]{32}$ ]] && [[ "$b2" =~ ^[0-9a-f]{32}$ ]] || fail "urandom output '$b1' '$b2'"
[[ "$u1" =~ ^[0-9a-f-]{36}$ ]] && [[ "$u2" =~ ^[0-9a-f-]{36}$ ]] || fail "uuid output '$u1' '$u2'"
[ "$b1" != "$b2" ] || fail "two restores read the same bytes from /dev/urandom: $b1"
[ "$u1" != "$u2" ] || fail "two restores made the same random UUID: $u1"
echo "ok: two restores read different random bytes and UUIDs"
echo "PASS: snap_clock_rng"
