#!/bin/sh
# smbake --unpack-only from oci:DIR and docker-archive:FILE, compared file by
# file with `umoci unpack` of the same image; concurrent unpacks; a corrupt
# blob leaves nothing in the cache; failures give exit 125 and one line.
# Usage: local_sources.sh SMBAKE SRCDIR
set -eu
smbake=$1
src=$2
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (owners are compared with umoci unpack)"; exit 77; }
command -v umoci >/dev/null || { echo "SKIP: umoci not installed"; exit 77; }
t=$(mktemp -d /tmp/sm-oci-local-XXXXXX)
trap 'rm -rf "$t"' EXIT
export SM_CACHE=$t/cache
fail() { echo "FAIL: $*"; exit 1; }

sh "$src/tests/fixtures/mkbusybox.sh" "$t/img" || exit $?
umoci unpack --image "$t/img/oci:latest" "$t/ref" >/dev/null

"$smbake" --unpack-only "oci:$t/img/oci:latest" -o "$t/out-oci" || fail "oci: unpack"
python3 "$src/tests/oci/compare_trees.py" "$t/ref/rootfs" "$t/out-oci" || fail "oci: tree differs from umoci"
"$smbake" --unpack-only "docker-archive:$t/img/busybox.tar" -o "$t/out-arch" || fail "docker-archive: unpack"
python3 "$src/tests/oci/compare_trees.py" "$t/ref/rootfs" "$t/out-arch" || fail "docker-archive: tree differs"
[ "$(cat "$t/out-oci/etc/motd")" = changed ] || fail "second layer not applied"
[ ! -e "$t/out-oci/etc/motd.hard" ] || fail "whiteout not applied"
python3 - "$t/out-oci.config.json" <<'PY' || fail "run config"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["Entrypoint"] == ["/bin/sh"], c
assert c["Cmd"] == ["-c", "echo hi"], c
assert "GREETING=hello" in c["Env"], c
assert c["WorkingDir"] == "/root" and c["User"] == "0:0", c
assert c["ExposedPorts"] == ["8080/tcp"] and c["StopSignal"] == "SIGTERM", c
PY
[ "$(ls "$SM_CACHE/rootfs" | wc -l)" -eq 1 ] || fail "both sources should share one rootfs"
"$t/out-oci/bin/busybox" true || fail "unpacked busybox does not run"

# Docker 25+ docker-archive: an OCI layout plus manifest.json pointing into blobs/
mkdir -p "$t/d25"
cp -r "$t/img/oci/." "$t/d25/"
python3 - "$t/d25" <<'PY'
import json, os, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
mdig = idx["manifests"][0]["digest"].split(":")[1]
m = json.load(open(os.path.join(d, "blobs/sha256", mdig)))
json.dump([{"Config": "blobs/sha256/" + m["config"]["digest"].split(":")[1],
            "RepoTags": ["busybox:latest"],
            "Layers": ["blobs/sha256/" + l["digest"].split(":")[1] for l in m["layers"]]}],
          open(os.path.join(d, "manifest.json"), "w"))
PY
tar -C "$t/d25" -cf "$t/d25.tar" .
"$smbake" --unpack-only "docker-archive:$t/d25.tar" -o "$t/out-d25" || fail "docker 25 archive"
python3 "$src/tests/oci/compare_trees.py" "$t/ref/rootfs" "$t/out-d25" || fail "docker 25 archive differs"

# an OCI layout whose tag points at an index: platform selection
cp -r "$t/img/oci" "$t/multi"
python3 - "$t/multi" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
desc = dict(idx["manifests"][0])
desc.pop("annotations", None)
inner = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [dict(desc, platform={"os": "linux", "architecture": "arm64", "variant": "v8"})]}
b = json.dumps(inner).encode()
h = hashlib.sha256(b).hexdigest()
open(os.path.join(d, "blobs/sha256", h), "wb").write(b)
idx["manifests"] = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + h,
                     "size": len(b), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]
json.dump(idx, open(os.path.join(d, "index.json"), "w"))
PY
"$smbake" --unpack-only "oci:$t/multi:multi" -o "$t/out-multi" 2>"$t/err" && fail "foreign platform accepted"
grep -q "no manifest for platform linux/amd64 (it offers: linux/arm64/v8)" "$t/err" || fail "platform message: $(cat "$t/err")"
"$smbake" --unpack-only --platform linux/arm64 "oci:$t/multi:multi" -o "$t/out-multi" || fail "--platform"
python3 "$src/tests/oci/compare_trees.py" "$t/ref/rootfs" "$t/out-multi" >/dev/null || fail "multi differs"

# blobs addressed by sha512 (accepted, verified, stored under blobs/sha512)
cp -r "$t/img/oci" "$t/s512"
python3 - "$t/s512" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
def read(dg):
    a, h = dg.split(":")
    return open(os.path.join(d, "blobs", a, h), "rb").read()
def put(b, alg):
    h = hashlib.new(alg, b).hexdigest()
    os.makedirs(os.path.join(d, "blobs", alg), exist_ok=True)
    open(os.path.join(d, "blobs", alg, h), "wb").write(b)
    return alg + ":" + h
idx = json.load(open(os.path.join(d, "index.json")))
m = json.loads(read(idx["manifests"][0]["digest"]))
m["config"]["digest"] = put(read(m["config"]["digest"]), "sha512")
for l in m["layers"]:
    l["digest"] = put(read(l["digest"]), "sha512")
mb = json.dumps(m).encode()
idx["manifests"][0]["digest"] = put(mb, "sha256")
idx["manifests"][0]["size"] = len(mb)
json.dump(idx, open(os.path.join(d, "index.json"), "w"))
PY
SM_CACHE=$t/cache512 "$smbake" --unpack-only "oci:$t/s512" -o "$t/out-512" || fail "sha512 blobs"
python3 "$src/tests/oci/compare_trees.py" "$t/ref/rootfs" "$t/out-512" >/dev/null || fail "sha512 tree differs"
[ "$(ls "$t/cache512/blobs/sha512" | wc -l)" -eq 3 ] || fail "sha512 blobs not stored by sha512"

# two concurrent unpacks of the same image into a fresh cache
export SM_CACHE=$t/cache2
"$smbake" --unpack-only "oci:$t/img/oci" -o "$t/c1" & p1=$!
"$smbake" --unpack-only "oci:$t/img/oci" -o "$t/c2" & p2=$!
wait $p1 || fail "concurrent unpack 1"
wait $p2 || fail "concurrent unpack 2"
python3 "$src/tests/oci/compare_trees.py" "$t/c1" "$t/c2" >/dev/null || fail "concurrent trees differ"
[ "$(ls "$SM_CACHE/rootfs" | wc -l)" -eq 1 ] || fail "concurrent unpacks made two rootfs"
[ "$(ls -A "$SM_CACHE/tmp" | wc -l)" -eq 0 ] || fail "temp leftovers"

# errors: exit 125 and a single line
check_err() {
	expect=$1; shift
	set +e
	"$smbake" "$@" >"$t/stdout" 2>"$t/stderr"; rc=$?
	set -e
	[ $rc -eq 125 ] || fail "$*: exit $rc, want 125"
	[ "$(wc -l <"$t/stderr")" -eq 1 ] || fail "$*: not one line: $(cat "$t/stderr")"
	grep -q -- "$expect" "$t/stderr" || fail "$*: message lacks '$expect': $(cat "$t/stderr")"
}
check_err "not an OCI image layout" --unpack-only "oci:$t/nonexistent" -o "$t/x1"
check_err "no image tagged 'nope'" --unpack-only "oci:$t/img/oci:nope" -o "$t/x2"
echo garbage >"$t/garbage.tar"
check_err "docker-archive" --unpack-only "docker-archive:$t/garbage.tar" -o "$t/x3"
check_err "not empty" --unpack-only "oci:$t/img/oci" -o "$t/img"
# a full bake needs a guest kernel: without one, a clear error and no file
(unset SM_KERNEL; check_err "no guest kernel" "oci:$t/img/oci" -o "$t/snap") || exit 1
[ ! -e "$t/snap" ] || fail "a failed bake left $t/snap"
check_err "missing IMAGE" --unpack-only -o "$t/x4"

# a layer blob whose bytes do not match its digest: rejected, nothing cached
export SM_CACHE=$t/cache3
cp -r "$t/img/oci" "$t/bad"
big=$(ls -S "$t/bad/blobs/sha256" | head -1)
chmod u+w "$t/bad/blobs/sha256/$big"
printf 'X' | dd of="$t/bad/blobs/sha256/$big" bs=1 seek=100 conv=notrunc 2>/dev/null
check_err "digest mismatch" --unpack-only "oci:$t/bad" -o "$t/x5"
[ ! -e "$SM_CACHE/blobs/sha256/$big" ] || fail "corrupt blob entered the cache"
[ "$(ls -A "$SM_CACHE/rootfs" | wc -l)" -eq 0 ] || fail "rootfs left behind"
[ "$(ls -A "$SM_CACHE/tmp" | wc -l)" -eq 0 ] || fail "temp leftovers after mismatch"
[ ! -e "$t/x5" ] || fail "output dir created on failure"
echo "PASS"
