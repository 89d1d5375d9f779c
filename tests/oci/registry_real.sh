#!/bin/sh
# Pull from a real registry (Debian's docker-registry) started here on
# loopback: a busybox-static image pushed with skopeo, pulled by tag and by
# digest, compared file by file with `umoci unpack`; then the same behind
# htpasswd Basic auth with credentials from a docker config (auths and a
# credential helper), without them, and with wrong ones.
# Usage: registry_real.sh SMBAKE SRCDIR
set -eu
smbake=$1
src=$2
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (owners are compared with umoci unpack)"; exit 77; }
for tool in docker-registry skopeo umoci htpasswd; do
	command -v $tool >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
t=$(mktemp -d /tmp/sm-oci-reg-XXXXXX)
pids=
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$t"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_registry() { # NAME PORT [htpasswd-file]
	mkdir -p "$t/$1"
	{
		echo "version: 0.1"
		echo "log: {level: error}"
		echo "storage: {filesystem: {rootdirectory: $t/$1/data}}"
		echo "http: {addr: 127.0.0.1:$2}"
		[ -n "${3:-}" ] && echo "auth: {htpasswd: {realm: sm-test, path: $3}}"
	} >"$t/$1/config.yml"
	docker-registry serve "$t/$1/config.yml" >"$t/$1/log" 2>&1 &
	pids="$pids $!"
	for _ in $(seq 100); do
		python3 -c 'import sys, urllib.request, urllib.error
try: urllib.request.urlopen(sys.argv[1], timeout=2); sys.exit(0)
except urllib.error.HTTPError as e: sys.exit(0 if e.code == 401 else 1)
except Exception: sys.exit(1)' "http://127.0.0.1:$2/v2/" && return 0
		sleep 0.1
	done
	cat "$t/$1/log"
	fail "registry $1 did not start"
}

sh "$src/tests/fixtures/mkbusybox.sh" "$t/img" || exit $?
umoci unpack --image "$t/img/oci:latest" "$t/ref" >/dev/null
same() { python3 "$src/tests/oci/compare_trees.py" "$t/ref/rootfs" "$1" || fail "$1 differs from umoci"; }

# --- open registry
p1=$(freeport)
start_registry open "$p1"
skopeo copy -q --dest-tls-verify=false "oci:$t/img/oci:latest" "docker://127.0.0.1:$p1/busybox:latest"
export SM_CACHE=$t/cache1
"$smbake" --unpack-only "127.0.0.1:$p1/busybox:latest" -o "$t/o1" || fail "pull by tag"
same "$t/o1"
digest=$(python3 -c 'import sys, urllib.request
r = urllib.request.Request(sys.argv[1], method="HEAD",
    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
print(urllib.request.urlopen(r).headers["Docker-Content-Digest"])' \
	"http://127.0.0.1:$p1/v2/busybox/manifests/latest")
case $digest in sha256:*) ;; *) fail "no digest from the registry" ;; esac
export SM_CACHE=$t/cache2
"$smbake" --unpack-only "127.0.0.1:$p1/busybox@$digest" -o "$t/o2" || fail "pull by digest"
same "$t/o2"
"$smbake" --unpack-only "127.0.0.1:$p1/busybox:nosuchtag" -o "$t/o3" 2>"$t/err" && fail "missing tag pulled"
grep -q "not found" "$t/err" || fail "missing tag: $(cat "$t/err")"
echo "ok: open registry (tag, digest, missing tag)"

# --- htpasswd Basic auth
htpasswd -Bbn smuser smpass >"$t/htpasswd"
p2=$(freeport)
start_registry auth "$p2" "$t/htpasswd"
skopeo copy -q --dest-tls-verify=false --dest-creds smuser:smpass \
	"oci:$t/img/oci:latest" "docker://127.0.0.1:$p2/private/busybox:v1"
export SM_CACHE=$t/cache3
export DOCKER_CONFIG=$t/noconfig
"$smbake" --unpack-only "127.0.0.1:$p2/private/busybox:v1" -o "$t/a0" 2>"$t/err" && fail "pulled without credentials"
grep -q "requires authentication" "$t/err" || fail "no-creds message: $(cat "$t/err")"
mkdir -p "$t/dc" "$t/dcbad" "$t/dchelper" "$t/bin"
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$p2" "$(printf smuser:smpass | base64)" >"$t/dc/config.json"
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$p2" "$(printf smuser:wrong | base64)" >"$t/dcbad/config.json"
DOCKER_CONFIG=$t/dcbad "$smbake" --unpack-only "127.0.0.1:$p2/private/busybox:v1" -o "$t/a1" 2>"$t/err" && fail "pulled with a wrong password"
grep -q "rejected the credentials" "$t/err" || fail "wrong-creds message: $(cat "$t/err")"
DOCKER_CONFIG=$t/dc "$smbake" --unpack-only "127.0.0.1:$p2/private/busybox:v1" -o "$t/a2" || fail "pull with auths"
same "$t/a2"
cat >"$t/bin/docker-credential-smtest" <<'HELPER'
#!/bin/sh
read server
case $server in 127.0.0.1:*) echo '{"ServerURL":"'$server'","Username":"smuser","Secret":"smpass"}' ;; *) exit 1 ;; esac
HELPER
chmod +x "$t/bin/docker-credential-smtest"
printf '{"credHelpers":{"127.0.0.1:%s":"smtest"}}\n' "$p2" >"$t/dchelper/config.json"
export SM_CACHE=$t/cache4
PATH=$t/bin:$PATH DOCKER_CONFIG=$t/dchelper "$smbake" --unpack-only "127.0.0.1:$p2/private/busybox:v1" -o "$t/a3" || fail "pull with a credential helper"
same "$t/a3"
echo "ok: htpasswd registry (no creds, wrong creds, auths, credHelpers)"
echo PASS
