#!/bin/sh
# Fault tests against tests/oci/fakereg.py: resume after a cut, 503 then
# success, 429 with Retry-After, a corrupt blob, an index without our
# platform, schema 1, and a Bearer token flow whose blob redirect to another
# host must not carry Authorization.
# Usage: registry_faults.sh SMBAKE SRCDIR
set -eu
smbake=$1
src=$2
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (owners are compared with umoci unpack)"; exit 77; }
command -v umoci >/dev/null || { echo "SKIP: umoci not installed"; exit 77; }
t=$(mktemp -d /tmp/sm-oci-faults-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$t"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$t/log" ] && tail -20 "$t/log"; exit 1; }
sh "$src/tests/fixtures/mkbusybox.sh" "$t/img" || exit $?
umoci unpack --image "$t/img/oci:latest" "$t/ref" >/dev/null

start() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -f "$t/port" "$t/log"
	python3 "$src/tests/oci/fakereg.py" "$t/img/oci" "$t/port" "$t/log" "$1" &
	pid=$!
	for _ in $(seq 100); do [ -s "$t/port" ] && break; sleep 0.05; done
	port=$(cat "$t/port")
	export SM_CACHE="$t/cache-$1"
}
pull() { "$smbake" --unpack-only "127.0.0.1:$port/test/busybox:latest" -o "$1" 2>"$t/err"; }
expect_fail() {
	if pull "$t/out-$1"; then fail "$1: pull should fail"; fi
	grep -q -- "$2" "$t/err" || fail "$1: message lacks '$2': $(cat "$t/err")"
	[ "$(wc -l <"$t/err")" -eq 1 ] || fail "$1: not one line"
	[ ! -e "$t/out-$1" ] || fail "$1: output left behind"
	[ "$(ls -A "$SM_CACHE/rootfs" | wc -l)" -eq 0 ] || fail "$1: rootfs left behind"
	[ "$(ls -A "$SM_CACHE/tmp" | wc -l)" -eq 0 ] || fail "$1: temp files left behind"
	echo "ok: $1 ($(cat "$t/err"))"
}
same() { python3 "$src/tests/oci/compare_trees.py" "$t/ref/rootfs" "$1" >/dev/null || fail "$1 differs from umoci"; }

start ok
pull "$t/out-ok" || fail "ok: $(cat "$t/err")"; same "$t/out-ok"; echo "ok: plain pull"
grep -q "^GET /v2/ " "$t/log" && fail "ok: a /v2/ ping was sent (the first request's 401 is the challenge)"
# Everything cached: the one request left is the tag's manifest.
mv "$t/log" "$t/log.first"
pull "$t/out-ok2" || fail "ok again: $(cat "$t/err")"; same "$t/out-ok2"
[ "$(grep -c '^[A-Z]* /' "$t/log")" -eq 1 ] && grep -q "^GET /v2/test/busybox/manifests/latest " "$t/log" ||
	fail "ok again: expected only GET .../manifests/latest, got: $(cat "$t/log")"
echo "ok: a cached pull makes one request"

start cut
pull "$t/out-cut" || fail "cut: $(cat "$t/err")"; same "$t/out-cut"
grep -q "^CUT" "$t/log" || fail "cut: the server never cut"
grep -q "range=bytes=[1-9]" "$t/log" || fail "cut: no Range resume"
echo "ok: resume after a cut connection"

start cut-norange
pull "$t/out-cutnr" || fail "cut-norange: $(cat "$t/err")"; same "$t/out-cutnr"
grep -q "^CUT" "$t/log" || fail "cut-norange: the server never cut"
echo "ok: restart when the server ignores Range"

start always503
expect_fail always503 "HTTP 503: UNAVAILABLE down (gave up after 6 attempts)"

start 503
pull "$t/out-503" || fail "503: $(cat "$t/err")"; same "$t/out-503"; echo "ok: 503 then success"

start 429
s=$(date +%s.%N)
pull "$t/out-429" || fail "429: $(cat "$t/err")"; same "$t/out-429"
e=$(date +%s.%N)
python3 -c "import sys; sys.exit(0 if $e - $s >= 1.0 else 1)" || fail "429: Retry-After not honoured"
echo "ok: 429 with Retry-After"

start corrupt
expect_fail corrupt "digest mismatch"
big=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(max(m['layers'], key=lambda l: l['size'])['digest'].split(':')[1])" \
	"$t/img/oci/blobs/sha256/$(python3 -c "import json; print(json.load(open('$t/img/oci/index.json'))['manifests'][0]['digest'].split(':')[1])")")
[ ! -e "$SM_CACHE/blobs/sha256/$big" ] || fail "corrupt: blob entered the cache"

start foreign-index
expect_fail foreign-index "no manifest for platform linux/amd64 (it offers: linux/s390x)"

start schema1
expect_fail schema1 "schema 1"

start bearer
pull "$t/out-bearer" || fail "bearer: $(cat "$t/err")"; same "$t/out-bearer"
[ "$(grep -c "^GET /token" "$t/log")" -ge 2 ] || fail "bearer: expired token not refreshed"
grep -q "host=localhost:.*auth=no" "$t/log" || fail "bearer: no redirected request seen"
if grep -q "AUTH-ON-REDIRECT" "$t/log"; then fail "bearer: Authorization sent to the redirect host"; fi
echo "ok: bearer token flow with refresh, no Authorization on the redirect host"
echo PASS
