#!/bin/bash
# Restore vs cold boot: wall time of `smrestore SNAP -- true` (snapshot
# memory already in the cache) against `smrun -- true` (cold boot of the
# same kernel and initramfs), alternately, in the same emulated KVM host.
# Also reports the first restore (memory image unpacked into the cache) and
# smrestore's own phase timings (median).
#
#   bench/restore.sh [RUNS]       (default 10; rows on stdout, see bench/run.sh)
#
# Env: SM_BUILD (default build), SM_KERNEL (default kernel/build.sh --path).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
build=$(realpath "${SM_BUILD:-build}")
kernel=${SM_KERNEL:-$(kernel/build.sh --path)}
for t in smrun smrestore; do
	[ -x "$build/tools/$t" ] || { echo "restore bench: build $t first ($build)" >&2; exit 1; }
done
[ -f "$kernel" ] || { echo "restore bench: no kernel at $kernel (kernel/build.sh)" >&2; exit 1; }
out=$(mktemp -d "$build/.restorebench.XXXXXX")
trap 'rm -rf "$out"' EXIT
"$build/tools/smrun" --agent "$build/agent/sminit" --write-initrd "$out/initrd.cpio"
cp "$kernel" "$out/vmlinux"

cat >"$out/inner.py" <<'PY'
import json, os, shutil, statistics, subprocess, sys, time
out, build, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
smrun, smrestore = build + "/tools/smrun", build + "/tools/smrestore"
tmp = "/tmp/restorebench"
os.makedirs(tmp, exist_ok=True)
for f in ("vmlinux", "initrd.cpio"):
    shutil.copy(os.path.join(out, f), tmp)
k, i, snap = tmp + "/vmlinux", tmp + "/initrd.cpio", tmp + "/snap"
env = dict(os.environ, SM_CACHE=tmp + "/cache", SM_AGENT=build + "/agent/sminit")

def timed(cmd):
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=300)
    ms = (time.monotonic() - t0) * 1000
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}): {p.stderr.decode(errors='replace')[-2000:]}")
    return ms, p.stderr.decode(errors="replace")

def phases(log):
    for line in log.splitlines():
        if line.startswith('{"smrestore_timing"'):
            return json.loads(line)
    return {}

bake_ms, _ = timed([smrun, "--kernel", k, "--initrd", i, "--console", "none",
                    "--snapshot-out", snap])
first_ms, log = timed([smrestore, snap, "--no-stdin", "--timing", "--", "/bin/true"])
first = phases(log)
s = {"bake_ms": bake_ms, "first_restore_ms": first_ms, "first_cache_hit": first.get("cache_hit"),
     "restore": [], "cold": [], "phases": []}
for n in range(runs):
    ms, log = timed([smrestore, snap, "--no-stdin", "--timing", "--", "/bin/true"])
    s["restore"].append(ms)
    s["phases"].append(phases(log))
    ms, _ = timed([smrun, "--kernel", k, "--initrd", i, "--console", "none", "--no-stdin",
                   "--", "/bin/true"])
    s["cold"].append(ms)
    print(f"run {n + 1}: restore {s['restore'][-1]:.0f} ms, cold boot {ms:.0f} ms",
          file=sys.stderr, flush=True)
    json.dump(s, open(out + "/samples.json", "w"))
PY

tests/kvmhost/run --timeout 1500 --rw "$out" -- python3 "$out/inner.py" "$out" "$build" "$runs" >&2 ||
	echo "restore bench: the emulated host failed; using the samples collected so far" >&2
python3 - "$out/samples.json" <<'PY'
import json, statistics, sys
s = json.load(open(sys.argv[1]))
if not s["restore"] or not s["cold"]:
    sys.exit("restore bench: no complete samples")
r, c = statistics.median(s["restore"]), statistics.median(s["cold"])
print(f"samples: {json.dumps(s)}", file=sys.stderr)
where = "inside QEMU TCG nested KVM (absolute times are not bare metal)"
print(json.dumps({"area": "restore", "metric": "run_true", "unit": "ms", "value": round(r, 1),
                  "n": len(s["restore"]), "peer": "smrun cold boot", "peer_value": round(c, 1),
                  "ratio": round(r / c, 3), "better": "lower",
                  "note": "wall time of `smrestore SNAP -- true` (memory cached) vs "
                          f"`smrun -- true`, alternated, same kernel and initramfs; {where}"}))
print(json.dumps({"area": "restore", "metric": "first_restore_run_true", "unit": "ms",
                  "value": round(s["first_restore_ms"], 1), "n": 1, "peer": None,
                  "peer_value": None, "ratio": None, "better": "lower",
                  "note": "first restore: memory image unpacked into the cache"}))
for key in ("validate_ms", "memory_ms", "create_ms", "state_ms", "resume_ms", "agent_ms",
            "done_ms"):
    v = [p[key] for p in s["phases"] if key in p]
    if v:
        print(json.dumps({"area": "restore", "metric": "phase_" + key, "unit": "ms",
                          "value": round(statistics.median(v), 2), "n": len(v), "peer": None,
                          "peer_value": None, "ratio": None, "better": "lower",
                          "note": "smrestore --timing, cumulative from start"}))
PY
