#!/bin/bash
# A 64 MiB file of the virtio-fs root read in the guest through the page
# cache and then through DAX (mounted with dax=always): both sha256 sums
# match the host's. The FUSE trace proves which path was taken: no
# SETUPMAPPING without DAX, SETUPMAPPING and no READ of the file with it.
. "$(dirname "$0")/fs_common.sh" "$1"
head -c $((64 << 20)) /dev/urandom >"$root/data/big"
want=$(sha256sum "$root/data/big" | cut -d' ' -f1)
before=$(manifest)
cmd='sha256sum /data/big; cmp /data/big /data/big && echo read-twice-ok'

SM_FUSE_TRACE="$work/trace.cache" run_guest "$work/out1" "$work/err1" --mem 512 -- /bin/sh -c "$cmd"
cat "$work/err1" >&2
[ "$rc" = 0 ] || fail "page-cache run: rc=$rc"
got1=$(awk 'NR == 1 {print $1}' "$work/out1")
[ "$got1" = "$want" ] || fail "page cache: guest sha256 $got1, host $want"
reads1=$(grep -c 'op=READ(15)' "$work/trace.cache" || true)
maps1=$(grep -c 'op=SETUPMAPPING' "$work/trace.cache" || true)
[ "$maps1" = 0 ] || fail "page-cache run used DAX ($maps1 SETUPMAPPING)"
[ "$reads1" -gt 0 ] || fail "page-cache run: no READ requests in the trace"
echo "page cache: sha256 ok, $reads1 READ requests, no SETUPMAPPING"

SM_FUSE_TRACE="$work/trace.dax" run_guest "$work/out2" "$work/err2" --mem 512 --dax -- /bin/sh -c "$cmd"
cat "$work/err2" >&2
[ "$rc" = 0 ] || fail "DAX run: rc=$rc"
got2=$(awk 'NR == 1 {print $1}' "$work/out2")
[ "$got2" = "$want" ] || fail "DAX: guest sha256 $got2, host $want"
maps2=$(grep -c 'op=SETUPMAPPING' "$work/trace.dax" || true)
okmaps2=$(grep 'op=SETUPMAPPING' "$work/trace.dax" | grep -c -- '-> error=0 ' || true)
[ "$okmaps2" -ge 32 ] || fail "DAX run: $okmaps2 successful SETUPMAPPING (of $maps2), want >= 32 for 64 MiB"
echo "DAX: sha256 ok, $okmaps2 SETUPMAPPING"
grep -q read-twice-ok "$work/out2" || fail "DAX: second read differs"
[ "$(manifest)" = "$before" ] || fail "the host directory changed"
echo "PASS: 64 MiB through the page cache and through DAX, sha256 $want"
