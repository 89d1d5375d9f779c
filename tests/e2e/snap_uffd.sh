#!/bin/bash
# Lazy restore through userfaultfd (restore_opts.lazy_uffd, restore/uffd.c),
# driven by tests/e2e/restore_lazy: guest RAM is filled on first touch from
# the snapshot's compressed frames, with no decompressed memory image. The
# command runs on the warmed state (exit status, output, stdin), 8 MiB of
# data written by the warm-up read back with the same checksum, two lazy
# restores at once are isolated, and nothing is written to the memory cache.
# Then restore timings, uffd against the default cached image, alternated.
. "$(dirname "$0")/snap_common.sh" "$1"
drv="$build/tests/e2e/restore_lazy"
[ -x "$drv" ] || { echo "snap_uffd: $drv not built" >&2; exit 1; }
export RESTORE_LAZY_CONSOLE="$work/console"
fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/err*; do [ -f "$f" ] && { echo "== $f" >&2; cat "$f" >&2; }; done
	echo "== guest console (tail)" >&2
	tail -n 30 "$work/console" >&2 2>/dev/null || true
	exit 1
}
step() { echo "[$(date +%T)] $*" >&2; }
lazy() { timeout -k 5 120 "$drv" "$@"; } # lazy SNAP MODE -- CMD...

step "bake"
bake 'echo warm >/tmp/warm; head -c 8388608 /dev/urandom >/tmp/big; md5sum </tmp/big'
sum=$(cut -d' ' -f1 "$work/bake-out")
[[ "$sum" =~ ^[0-9a-f]{32}$ ]] || fail "warm-up output '$(cat "$work/bake-out")'"

# 1. status, output, warmed state; nothing unpacked into the memory cache.
step "lazy restore: status and output"
set +e
lazy "$snap" uffd -- /bin/sh -c 'cat /tmp/warm; echo hello; exit 3' \
	</dev/null >"$work/out1" 2>"$work/err1"
rc=$?
set -e
cat "$work/err1" >&2
[ "$rc" = 3 ] && [ "$(cat "$work/out1")" = "$(printf 'warm\nhello')" ] ||
	fail "lazy restore: rc=$rc stdout='$(cat "$work/out1")' (want 3, warm+hello)"
grep -q '"uffd_faults":[1-9]' "$work/err1" || fail "no userfaultfd faults counted"
[ ! -e "$SM_CACHE/memory" ] || fail "lazy restore wrote a memory image: $(ls "$SM_CACHE/memory")"
echo "ok: lazy restore ran the command on the warmed state, no memory image"

# 2. stdin goes in; 8 MiB of guest page cache read back through the fills.
step "lazy restore: stdin and md5sum"
out=$(printf 'via stdin\n' | lazy "$snap" uffd -- /bin/sh -c 'cat; md5sum </tmp/big' 2>"$work/err2") ||
	fail "lazy md5sum rc=$?"
grep -o '"uffd_copied_pages":[0-9]*' "$work/err2" >&2
[ "$out" = "$(printf 'via stdin\n%s  -' "$sum")" ] ||
	fail "after lazy restore got '$out', want stdin back and md5 $sum"
echo "ok: stdin reached the command; 8 MiB written before the capture read back intact"

# 3. two at once, isolated.
step "two lazy restores at once"
lazy "$snap" uffd -- /bin/sh -c 'echo A >/tmp/warm; sleep 1; cat /tmp/warm' \
	</dev/null >"$work/isoA" 2>"$work/err-isoA" &
pa=$!
lazy "$snap" uffd -- /bin/sh -c 'echo B >/tmp/warm; cat /tmp/warm' \
	</dev/null >"$work/isoB" 2>"$work/err-isoB" || fail "concurrent B"
wait $pa || fail "concurrent A"
[ "$(cat "$work/isoA")" = A ] && [ "$(cat "$work/isoB")" = B ] ||
	fail "concurrent lazy restores interfered: A='$(cat "$work/isoA")' B='$(cat "$work/isoB")'"
echo "ok: lazy restores at once are isolated"

# 4. timings: the first cached restore unpacks the image (cold); then
#    cached (warm) and uffd alternate, 3 each, running /bin/true.
step "timings"
lazy "$snap" cache -- /bin/true </dev/null 2>"$work/t-cold" || fail "cached restore"
for i in 1 2 3; do
	lazy "$snap" cache -- /bin/true </dev/null 2>>"$work/t-cache" || fail "cached restore $i"
	lazy "$snap" uffd -- /bin/true </dev/null 2>>"$work/t-uffd" || fail "uffd restore $i"
done
python3 - "$work/t-cold" "$work/t-cache" "$work/t-uffd" <<'PY'
import json, statistics, sys
def rows(p):
    return [json.loads(l) for l in open(p) if l.startswith("{")]
cold, cache, uffd = (rows(p) for p in sys.argv[1:])
assert cold[0]["cache_hit"] == 0 and all(r["cache_hit"] == 1 for r in cache), (cold, cache)
def med(rs, k):
    return statistics.median(r[k] for r in rs)
print("timing (ms from the start of restore_run, median; emulated KVM host)")
for name, rs in (("cache cold (unpack)", cold), ("cache warm", cache), ("uffd", uffd)):
    print("  %-20s n=%d memory %7.2f resume %7.2f agent %7.2f done %7.2f faults %4d copied %5d fill %7.2f"
          % (name, len(rs), med(rs, "memory_ms"), med(rs, "resume_ms"), med(rs, "agent_ms"),
             med(rs, "done_ms"), med(rs, "uffd_faults"), med(rs, "uffd_copied_pages"),
             med(rs, "uffd_fill_ms")))
PY
step "done"
echo "PASS: snap_uffd"
