#!/bin/bash
# smbake's command line without KVM: errors (one line, exit 125, nothing at
# -o), and the cache-hit path end to end through the tool: an OCI layout made
# here, the bake key recomputed independently from docs/bake.md's canonical
# text, a stand-in snapshot put at snapshots/<hex>.snap, then `smbake --json`
# must find it, place it at -o and report cache_hit.
# Usage: smbake_cli.sh SMBAKE BAKE_MKSNAP SOURCE_DIR
set -u
smbake=${1:?smbake}
mksnap=${2:?bake_mksnap}
src=${3:?source dir}
work=$(mktemp -d /tmp/sm-bake-cli-XXXXXX)
trap 'rm -rf "$work"' EXIT
fails=0
fail() {
	echo "FAIL: $*" >&2
	fails=$((fails + 1))
}

# expect_error DESCRIPTION PATTERN ARGS...: exit 125, exactly one stderr line
# "smbake: ..." matching PATTERN, empty stdout, nothing at $work/out.snap.
expect_error() {
	local what=$1 pat=$2
	shift 2
	rm -f "$work/out.snap"
	"$@" >"$work/stdout" 2>"$work/stderr"
	local rc=$?
	[ $rc -eq 125 ] || fail "$what: exit $rc, want 125"
	[ "$(wc -l <"$work/stderr")" -eq 1 ] || fail "$what: stderr is not one line: $(cat "$work/stderr")"
	grep -q "^smbake: .*$pat" "$work/stderr" || fail "$what: stderr '$(cat "$work/stderr")' lacks '$pat'"
	[ ! -s "$work/stdout" ] || fail "$what: stdout not empty"
	[ ! -e "$work/out.snap" ] || fail "$what: left $work/out.snap"
	ls -a "$work" | grep -q '\.smbake-' && fail "$what: left a temp file"
	return 0
}

# ---- an OCI layout with /bin/sh, and one without ----------------------------
python3 - "$work" <<'EOF' || { echo "FAIL: cannot make the layouts" >&2; exit 1; }
import gzip, hashlib, io, json, os, sys, tarfile
work = sys.argv[1]
def layout(name, files):
    d = os.path.join(work, name)
    os.makedirs(os.path.join(d, "blobs", "sha256"))
    def blob(data):
        h = hashlib.sha256(data).hexdigest()
        open(os.path.join(d, "blobs", "sha256", h), "wb").write(data)
        return "sha256:" + h, len(data)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path, mode, data in files:
            ti = tarfile.TarInfo(path)
            ti.mtime = 1600000000
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, mode
                t.addfile(ti)
            else:
                ti.mode, ti.size = mode, len(data)
                t.addfile(ti, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    ldig, lsize = blob(gzip.compress(raw.getvalue(), mtime=0))
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cdig, csize = blob(cfg)
    man = json.dumps({"schemaVersion": 2,
                      "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": cdig, "size": csize},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                  "digest": ldig, "size": lsize}]}).encode()
    mdig, msize = blob(man)
    open(os.path.join(d, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
    json.dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig,
        "size": msize, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
        open(os.path.join(d, "index.json"), "w"))
    open(os.path.join(work, name + ".digest"), "w").write(mdig)
layout("img", [("bin", 0o755, None), ("bin/sh", 0o755, b"#!fake\n"),
               ("etc", 0o755, None), ("etc/os-release", 0o644, b"NAME=t\n")])
layout("noshell", [("etc", 0o755, None), ("etc/os-release", 0o644, b"NAME=t\n")])
EOF
printf 'fake vmlinux' >"$work/vmlinux"
printf 'fake sminit' >"$work/sminit"
export SM_CACHE="$work/cache" SM_KERNEL="$work/vmlinux" SM_AGENT="$work/sminit"
img="oci:$work/img:latest"
out="$work/out.snap"

# ---- errors -------------------------------------------------------------------
expect_error "no image" "missing IMAGE" "$smbake" -o "$out"
expect_error "no -o" "missing -o" "$smbake" "$img"
expect_error "two images" "too many arguments" "$smbake" "$img" "$img" -o "$out"
expect_error "unknown option" "unknown or incomplete option '--bogus'" "$smbake" --bogus "$img" -o "$out"
expect_error "bad memory" "--memory wants MiB" "$smbake" "$img" -o "$out" --memory 10
expect_error "bad cpus" "--cpus wants" "$smbake" "$img" -o "$out" --cpus 0
expect_error "bad env" "--env wants K=V" "$smbake" "$img" -o "$out" --env NOVALUE
expect_error "bad dax" "--dax wants MiB" "$smbake" "$img" -o "$out" --dax=1
expect_error "bad platform" "platform" "$smbake" "$img" -o "$out" --platform linux
expect_error "bad timeout" "--timeout wants" "$smbake" "$img" -o "$out" --timeout x
expect_error "no kernel" "no guest kernel: pass --kernel or set SM_KERNEL (scripts/setup.sh builds one)" \
	env -u SM_KERNEL "$smbake" "$img" -o "$out"
expect_error "kernel missing" "guest kernel: cannot open $work/nope" "$smbake" "$img" -o "$out" --kernel "$work/nope"
expect_error "agent missing" "no guest agent at $work/nope: pass --agent or set SM_AGENT" \
	"$smbake" "$img" -o "$out" --agent "$work/nope"
expect_error "output dir missing" "cannot use output directory $work/nodir" "$smbake" "$img" -o "$work/nodir/x.snap"
mkdir "$work/adir"
expect_error "output is a dir" "is a directory" "$smbake" "$img" -o "$work/adir"
expect_error "no such layout" "cannot pull" "$smbake" "oci:$work/none" -o "$out"
expect_error "no shell" "image oci:$work/noshell has no /bin/sh; --warmup needs a shell" \
	"$smbake" "oci:$work/noshell" -o "$out" --warmup true
# A miss needs a VM: without KVM (or with this fake kernel) it fails cleanly.
expect_error "miss without a VM" "" "$smbake" "$img" -o "$out" --json

# ---- the cache-hit path --------------------------------------------------------
# The key from the documented canonical text (docs/bake.md), computed here
# independently of bake/key.c.
key=$(python3 - "$work" "$src" "$("$smbake" --version | cut -d' ' -f2)" <<'EOF'
import hashlib, re, sys
work, src, tool = sys.argv[1:4]
def fd(p): return "sha256:" + hashlib.sha256(open(p, "rb").read()).hexdigest()
def f(n, v): return "%s %d:%s\n" % (n, len(v.encode()), v)
def define(path, name):
    return re.search(r"#define %s\s+(\d+)" % name, open(path).read()).group(1)
t = "supermachine-bake-key 1\n"
t += f("manifest", open(work + "/img.digest").read()) + f("kernel", fd(work + "/vmlinux"))
t += f("agent", fd(work + "/sminit"))
t += "memory_mib 512\nvcpus 2\nenv_count 2\n" + f("env", "A=2") + f("env", "B=x y")
t += f("warmup", "echo warm") + "dax_mib 64\n" + f("platform", "linux/amd64")
t += "state_version %s\n" % define(src + "/include/sm/vm.h", "VM_SNAP_VERSION")
t += "format_version %s.%s\n" % (define(src + "/include/sm/format.h", "FMT_VERSION_MAJOR"),
                                  define(src + "/include/sm/format.h", "FMT_VERSION_MINOR"))
t += f("tool_version", tool)
print("sha256:" + hashlib.sha256(t.encode()).hexdigest())
EOF
)
opts=(--memory 512 --cpus 2 -e A=1 --env 'B=x y' -e A=2 --warmup 'echo warm' --dax=64 --platform linux/amd64)
mkdir -p "$SM_CACHE/snapshots"
cached="$SM_CACHE/snapshots/${key#sha256:}.snap"
"$mksnap" "$cached" "$key" || fail "bake_mksnap"
s=$(date +%s%N)
"$smbake" "$img" -o "$out" "${opts[@]}" --json >"$work/json" 2>"$work/stderr"
rc=$?
e=$(date +%s%N)
ms=$(((e - s) / 1000000))
[ $rc -eq 0 ] || fail "cache hit: exit $rc: $(cat "$work/stderr")"
python3 - "$work/json" "$out" "$key" "$cached" <<'EOF' || fail "cache hit: bad JSON $(cat "$work/json")"
import json, sys
path, out, key, cached = sys.argv[1:5]
lines = open(path).read().splitlines()
assert len(lines) == 1, lines
j = json.loads(lines[0])
for k in ("snapshot", "image", "image_digest", "bake_key", "cache_hit", "pull_ms", "unpack_ms",
          "boot_ms", "ready_ms", "warmup_ms", "capture_ms", "write_ms", "total_ms"):
    assert k in j, k
assert j["snapshot"] == out and j["bake_key"] == key and j["cache_hit"] is True, j
assert j["cached_path"] == cached, j
assert all(j[k] == 0 for k in ("boot_ms", "ready_ms", "warmup_ms", "capture_ms", "write_ms")), j
assert j["total_ms"] >= j["pull_ms"] >= 0, j
EOF
cmp -s "$cached" "$out" || fail "cache hit: $out differs from the cache entry"
echo "cached smbake (wall, including process start): $ms ms"
[ $ms -lt 2000 ] || fail "cached smbake took $ms ms"
# The option order and overridden --env entries do not change the key.
opts2=(--dax=64 -e 'B=x y' -e A=2 --platform linux/amd64 --warmup 'echo warm' --cpus 2 --memory 512)
rm -f "$out"
"$smbake" "$img" -o "$out" "${opts2[@]}" -q 2>"$work/stderr" || fail "reordered options: $(cat "$work/stderr")"
cmp -s "$cached" "$out" || fail "reordered options: not the cached snapshot"
# Without -q and --json: one summary line on stderr naming the hit, stdout empty.
"$smbake" "$img" -o "$out" "${opts[@]}" >"$work/stdout" 2>"$work/stderr" || fail "summary run"
grep -q "cache hit" "$work/stderr" || fail "no summary line: $(cat "$work/stderr")"
[ ! -s "$work/stdout" ] || fail "stdout not empty without --json"
# --progress: the phase lines, each with the elapsed time, on stderr although
# it is not a terminal, also with --json (stdout still only the object).
"$smbake" "$img" -o "$out" "${opts[@]}" --json --progress >"$work/stdout" 2>"$work/stderr" ||
	fail "--progress run: $(cat "$work/stderr")"
grep -Eq '^smbake: pulling oci:.* \([0-9]+ ms\)$' "$work/stderr" || fail "--progress: no pulling line: $(cat "$work/stderr")"
grep -Eq "^smbake: cache hit $key \\([0-9]+ ms\\)\$" "$work/stderr" ||
	fail "--progress: no cache hit line: $(cat "$work/stderr")"
[ "$(wc -l <"$work/stdout")" = 1 ] && grep -q '"cache_hit":true' "$work/stdout" ||
	fail "--progress: stdout is not the one JSON object: $(cat "$work/stdout")"
# Another input (one more MiB) is another key: a miss, which fails here and
# leaves the previous output untouched.
before=$(sha256sum <"$out")
"$smbake" "$img" -o "$out" "${opts[@]}" --memory 513 -q 2>/dev/null && fail "a miss succeeded without a VM"
[ "$(sha256sum <"$out")" = "$before" ] || fail "a failed bake changed $out"
# --no-cache never uses the entry.
rm -f "$out"
"$smbake" "$img" -o "$out" "${opts[@]}" --no-cache -q 2>/dev/null && fail "--no-cache used the cache"
[ ! -e "$out" ] || fail "--no-cache failure left $out"
# --no-link: an independent copy.
"$smbake" "$img" -o "$out" "${opts[@]}" --no-link --json >"$work/json" 2>/dev/null || fail "--no-link"
grep -q '"placed":"copied"\|"placed":"reflinked"' "$work/json" || fail "--no-link: $(cat "$work/json")"
[ "$(stat -c %i "$out")" != "$(stat -c %i "$cached")" ] || fail "--no-link hardlinked"
cmp -s "$cached" "$out" || fail "--no-link: content differs"

# ---- a registry tag is resolved again each time: a moved tag misses -------------
if command -v docker-registry >/dev/null && command -v skopeo >/dev/null; then
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	mkdir -p "$work/reg"
	printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' \
		"$work/reg/data" "$port" >"$work/reg/config.yml"
	docker-registry serve "$work/reg/config.yml" >"$work/reg/log" 2>&1 &
	regpid=$!
	trap 'kill $regpid 2>/dev/null; wait $regpid 2>/dev/null; rm -rf "$work"' EXIT
	for _ in $(seq 100); do
		python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
			"http://127.0.0.1:$port/v2/" 2>/dev/null && break
		sleep 0.1
	done
	rref="127.0.0.1:$port/t:latest"
	skopeo copy -q --dest-tls-verify=false "oci:$work/img:latest" "docker://$rref" || fail "push"
	# The registry serves the same manifest bytes, so the key is the one above.
	rm -f "$out"
	"$smbake" "$rref" -o "$out" "${opts[@]}" --json >"$work/json" 2>"$work/stderr" ||
		fail "registry hit: $(cat "$work/stderr")"
	grep -q '"cache_hit":true' "$work/json" || fail "registry: not a hit: $(cat "$work/json")"
	cmp -s "$cached" "$out" || fail "registry hit: not the cached snapshot"
	# Move the tag to another image: the next smbake must not reuse the entry.
	skopeo copy -q --dest-tls-verify=false "oci:$work/noshell:latest" "docker://$rref" || fail "push 2"
	rm -f "$out"
	"$smbake" "$rref" -o "$out" "${opts[@]}" -q 2>"$work/stderr" && fail "moved tag: still a hit"
	grep -q "has no /bin/sh" "$work/stderr" || fail "moved tag: $(cat "$work/stderr")"
	[ ! -e "$out" ] || fail "moved tag: left $out"
else
	echo "skipped the registry part: docker-registry or skopeo missing"
fi

# ---- --unpack-only still works -------------------------------------------------
"$smbake" --unpack-only "$img" -o "$work/tree" -q || fail "--unpack-only"
[ -x "$work/tree/bin/sh" ] && [ -s "$work/tree.config.json" ] || fail "--unpack-only: tree or config missing"

if [ $fails -ne 0 ]; then
	echo "smbake_cli: $fails failure(s)" >&2
	exit 1
fi
echo "smbake_cli: ok"
