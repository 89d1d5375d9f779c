#!/bin/sh
# Build tests/oci/fuzz_oci.c with clang (libFuzzer + ASan + UBSan) and run it
# for SECONDS over seeds made here: references, configs, indexes and layer
# tarballs (plain, gzip, zstd, hostile names and links).
# Usage: tests/oci/run_fuzz.sh [SECONDS] [BUILD_DIR]
set -eu
SECS=${1:-60}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${2:-$(mktemp -d /tmp/sm-fuzz-oci-XXXXXX)}
mkdir -p "$OUT/corpus" "$OUT/seeds"
CC=${CC:-}
[ -n "$CC" ] || for c in clang-14 clang; do command -v $c >/dev/null 2>&1 && CC=$c && break; done
[ -n "$CC" ] || { echo "run_fuzz: clang not found" >&2; exit 77; }
$CC -std=gnu11 -g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-I"$SRC/include" -I"$SRC" \
	"$SRC/tests/oci/fuzz_oci.c" "$SRC"/oci/*.c "$SRC"/cache/*.c "$SRC/common/error.c" \
	-larchive -lcurl -lssl -lcrypto -ljansson -lzstd -lpthread -o "$OUT/fuzz_oci"
python3 - "$OUT/seeds" <<'PY'
import gzip, io, json, os, sys, tarfile
d = sys.argv[1]
def put(name, kind, b):
    open(os.path.join(d, name), "wb").write(bytes([kind]) + b)
put("ref1", 0, b"127.0.0.1:5000/a/b:tag@sha256:" + b"0" * 64)
put("ref2", 0, b"oci:/x:y")
cfg = {"os": "linux", "architecture": "amd64", "config": {"Cmd": ["sh"], "Env": ["A=B"],
       "ExposedPorts": {"80/tcp": {}}, "User": "1:1"},
       "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}}
put("cfg", 1, json.dumps(cfg).encode())
idx = {"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "b" * 64, "size": 1,
       "platform": {"os": "linux", "architecture": "amd64"}}]}
put("idx", 2, json.dumps(idx).encode())
def tar(entries):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, typ, data, link in entries:
            ti = tarfile.TarInfo(name)
            ti.type = typ
            ti.linkname = link
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data else None)
    return bio.getvalue()
R, D, S, L = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
good = tar([("etc", D, b"", ""), ("etc/f", R, b"hi", ""), ("etc/l", S, b"", "/etc/f"),
            ("etc/h", L, b"", "etc/f"), ("etc/.wh.x", R, b"", ""), ("d/.wh..wh..opq", R, b"", "")])
evil = tar([("esc", S, b"", "../../outside"), ("esc/pwned", R, b"x", ""), ("/abs", R, b"x", ""),
            ("../up", R, b"x", ""), ("hl", L, b"", "../outside/sentinel")])
put("layer-good", 3, good)
put("layer-evil", 3, evil)
put("layer-gz", 3, gzip.compress(good))
PY
cd "$OUT"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
./fuzz_oci -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
	-print_final_stats=1 "$OUT/corpus" "$OUT/seeds"
