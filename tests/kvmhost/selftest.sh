#!/bin/bash
# Self-test of tests/kvmhost/run: exit status, stdout and stderr come back,
# a --rw directory is writable at the same path, /dev/kvm exists inside, and
# --timeout stops a hung command with 124 and leaves no qemu behind.
set -uo pipefail
run="$(cd "$(dirname "$0")" && pwd)/run"
rwdir=$(mktemp -d "${TMPDIR:-/var/tmp}/smkvmhost-selftest.XXXXXX")
trap 'rm -rf "$rwdir"' EXIT
fail() { echo "kvmhost selftest: FAIL: $*" >&2; exit 1; }

out=$("$run" --rw "$rwdir" -- bash -c "test -c /dev/kvm || exit 90; echo to-stdout; echo to-stderr >&2; echo written > '$rwdir/f'; exit 7" 2>"$rwdir/stderr")
rc=$?
[ "$rc" = 7 ] || fail "exit status $rc, want 7 (90 = no /dev/kvm inside); stderr: $(cat "$rwdir/stderr")"
[ "$out" = to-stdout ] || fail "stdout '$out'"
grep -qx to-stderr "$rwdir/stderr" || fail "stderr did not come back"
[ "$(cat "$rwdir/f" 2>/dev/null)" = written ] || fail "--rw share not written"

start=$(date +%s)
mark="$rwdir/ctl"
mkdir -p "$mark"
SM_KVMHOST_TMP="$mark" "$run" --timeout 5 -- sleep 600 2>/dev/null
rc=$?
[ "$rc" = 124 ] || fail "timeout exit status $rc, want 124"
[ $(( $(date +%s) - start )) -lt 60 ] || fail "timeout took too long"
sleep 1
! pgrep -f "sm.ctl=$mark/" >/dev/null || fail "qemu left running after timeout"
[ -z "$(ls -A "$mark")" ] || fail "control directory left behind"

# The host's /tmp is visible inside (read-only lower layer) and writes to it
# stay inside the emulated host.
probe=$(mktemp /tmp/smkvmhost-probe.XXXXXX)
echo host-data > "$probe"
out=$("$run" -- bash -c "cat '$probe' && echo guest-data > '$probe' && cat '$probe'" 2>/dev/null)
rc=$?
[ "$rc" = 0 ] && [ "$out" = "$(printf 'host-data\nguest-data')" ] || { rm -f "$probe"; fail "host /tmp not visible/writable inside (rc=$rc out='$out')"; }
[ "$(cat "$probe")" = host-data ] || { rm -f "$probe"; fail "a write inside changed the host's /tmp"; }
rm -f "$probe"
# A lock-up of the emulated host itself (here: a forced L1 kernel panic on
# the first attempt) is retried once and the second attempt's result counts.
out=$("$run" --rw "$rwdir" -- sh -c "if [ ! -e '$rwdir/once' ]; then touch '$rwdir/once'; sync; echo c > /proc/sysrq-trigger; fi; echo second" 2>"$rwdir/stderr")
rc=$?
[ "$rc" = 0 ] && [ "$out" = second ] || fail "no retry after an emulated-host panic (rc=$rc out='$out')"
grep -q "retrying (1 of 1)" "$rwdir/stderr" || fail "the retry was not reported"
# An emulated host that stops for good (its timers dead: here the heartbeat
# writer is frozen on the first attempt) is noticed by the watchdog, killed
# and retried once.
rm -f "$rwdir/once"
out=$(SM_KVMHOST_STALL_S=20 "$run" --rw "$rwdir" -- bash -c "if [ ! -e '$rwdir/once' ]; then touch '$rwdir/once'; sync; ps -e -o pid=,ppid=,comm= | awk '\$2==1 && (\$3==\"init\" || \$3==\"sh\") {print \$1}' | xargs -r kill -STOP; sleep 200; fi; echo second" 2>"$rwdir/stderr")
rc=$?
[ "$rc" = 0 ] && [ "$out" = second ] || fail "no retry after an emulated-host stall (rc=$rc out='$out')"
grep -q "stopped (no heartbeat" "$rwdir/stderr" || fail "the stall was not reported: $(cat "$rwdir/stderr")"

echo "kvmhost selftest: PASS"
