#!/bin/bash
# Exit statuses and VM lifecycle: a missing command gives 127, a command
# killed by a signal 128+N, two vCPUs come up, the UART carries user-space
# writes, virtio-rng feeds /dev/hwrng, and a guest reboot (i8042 reset)
# stops the VM cleanly with exit 125 and a message saying so. A signal sent
# to smrun reaches the command.
. "$(dirname "$0")/vm_common.sh" "$1"
fail() { echo "FAIL: $*" >&2; exit 1; }
set +e
"$smrun" --kernel "$kernel" --console none -- /no/such/command 2>"$work/err"
[ $? = 127 ] || fail "missing command: want 127"
grep -q 'No such file' "$work/err" || fail "missing command: no message"
"$smrun" --kernel "$kernel" --console none -- /bin/sh -c 'kill -TERM $$'
[ $? = 143 ] || fail "SIGTERM: want 143"
# (The guest's tty drains to the UART asynchronously; the command waits a
# second so its console line is out before it exits and the VM is torn down.)
out=$("$smrun" --kernel "$kernel" --cpus 2 --console "$work/console" -- /bin/sh -c \
	'cat /sys/devices/system/cpu/online; head -c 64 /dev/hwrng | wc -c; echo to-console >/dev/console; sleep 1')
[ $? = 0 ] || fail "2 vCPUs: exit status"
[ "$out" = "$(printf '0-1\n64')" ] || fail "2 vCPUs / hwrng: got '$out'"
grep -q to-console "$work/console" || fail "user-space write to the console did not appear"
# Signals reach the command: it traps SIGTERM and exits 42. (SIGTERM, not
# SIGINT: a script's background jobs start with SIGINT ignored, and smrun
# rightly forwards only signals it does not ignore.)
"$smrun" --kernel "$kernel" --console none --no-stdin -- /bin/sh -c \
	'trap "echo got-term; exit 42" TERM; echo started; sleep 60 & wait' >"$work/sig" &
pid=$!
for _ in $(seq 1 600); do grep -q started "$work/sig" 2>/dev/null && break; sleep 0.2; done
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 42 ] || fail "SIGTERM forwarding: want 42, got $rc"
grep -q got-term "$work/sig" || fail "SIGTERM forwarding: trap did not run"
timeout 120 "$smrun" --kernel "$kernel" --console none -- /bin/sh -c '/bin/busybox reboot -f; sleep 30' \
	2>"$work/err"
rc=$?
set -e
cat "$work/err" >&2
[ $rc = 125 ] || fail "guest reboot: want 125, got $rc"
grep -q 'guest reset' "$work/err" || fail "guest reboot: no 'guest reset' message"
echo "PASS: 127, 143, two vCPUs, hwrng, console, SIGTERM forwarded, reboot -> 125"
