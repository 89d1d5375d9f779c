#!/bin/bash
# Restore vs cold boot, and restore vs the KVM floor, in the same emulated
# KVM host:
# - wall time of `smrestore SNAP -- true` (snapshot memory already in the
#   cache) against `smrun -- true` (cold boot of the same kernel and
#   initramfs), alternately; also the first restore (memory image unpacked
#   into the cache) and smrestore's own phase timings (median);
# - host-side restore work up to the first KVM_RUN (smrestore --timing
#   resume_ms of the same 256 MiB snapshot) against bench/kvm_floor.c, the
#   minimal sequence any VMM needs (create VM, irqchip, PIT, one 256 MiB
#   memslot, one vCPU with CPUID, sregs, regs, XSAVE, XCRs, LAPIC and MSRs
#   set), each a fresh process, alternated with the restores.
#
#   bench/restore.sh [RUNS]       (default 10; rows on stdout, see bench/run.sh)
#
# Env: SM_BUILD (default build), SM_KERNEL (default kernel/build.sh --path),
#      SM_BENCH_OUT (if set: raw samples to $SM_BENCH_OUT/restore.samples.json).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-10}
bench_init restore smrun smrestore
cc -O2 -std=gnu11 -Wall -Wextra -Werror -o "$out/kvm_floor" bench/kvm_floor.c ||
	bench_die "cannot build bench/kvm_floor.c"

cat >"$out/inner.py" <<'PY'
import json, subprocess, sys
from benchlib import Stage, json_line, load_samples, smrestore_timing
out, build, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
st = Stage(out, build, "restorebench")
restore = [st.smrestore, st.snap, "--no-stdin", "--timing", "--", "/bin/true"]

def floor():
    p = subprocess.run([out + "/kvm_floor", "-n", "1", "-m", "256"], capture_output=True,
                       timeout=60)
    if p.returncode != 0:  # keep measuring the restores; the floor row is left out
        print(f"kvm_floor failed: {p.stderr.decode(errors='replace')}", file=sys.stderr)
        return None
    return json_line(p.stdout.decode(), "kvm_floor")

s = load_samples(out + "/samples.json",
                 {"bake_ms": None, "first_restore_ms": None, "first_cache_hit": None,
                  "restore": [], "cold": [], "phases": [], "floor": []})
if s["first_restore_ms"] is None:
    s["bake_ms"], _ = st.timed(st.smrun_cmd("--mem", "256", "--snapshot-out", st.snap))
    s["first_restore_ms"], log = st.timed(restore)
    s["first_cache_hit"] = smrestore_timing(log).get("cache_hit")
else:  # a retried emulated host: bake again, the cache is gone with the old /tmp
    st.timed(st.smrun_cmd("--mem", "256", "--snapshot-out", st.snap))
    st.timed(restore)
for n in range(len(s["cold"]), runs):
    f = floor()
    if f:
        s["floor"].append(f)
    ms, log = st.timed(restore)
    s["restore"].append(ms)
    s["phases"].append(smrestore_timing(log))
    ms, _ = st.timed(st.smrun_cmd("--no-stdin", "--", "/bin/true"))
    s["cold"].append(ms)
    print(f"run {n + 1}: restore {s['restore'][-1]:.0f} ms "
          f"(resume {s['phases'][-1].get('resume_ms')} ms), kvm floor "
          f"{f['to_first_run_ms'] if f else '-'} ms, cold boot {ms:.0f} ms",
          file=sys.stderr, flush=True)
    json.dump(s, open(out + "/samples.json", "w"))
PY

bench_kvmhost --timeout $((300 + runs * 60)) --rw "$out" -- python3 "$out/inner.py" "$out" "$build" "$runs"
bench_samples
python3 - "$out/samples.json" <<'PY'
import json, statistics, sys
from benchlib import row
s = json.load(open(sys.argv[1]))
if not s["restore"] or not s["cold"]:
    sys.exit("restore bench: no complete samples")
r, c = statistics.median(s["restore"]), statistics.median(s["cold"])
print(f"samples: {json.dumps(s)}", file=sys.stderr)
where = "inside QEMU TCG nested KVM (absolute times are not bare metal)"
med = lambda v: statistics.median(v) if v else None
row("restore", "run_true", "ms", round(r, 1), len(s["restore"]), "smrun cold boot", round(c, 1),
    note="wall time of `smrestore SNAP -- true` (memory cached) vs `smrun -- true`, "
         f"alternated, same kernel and initramfs; {where}")
row("restore", "first_restore_run_true", "ms", round(s["first_restore_ms"], 1), 1,
    note="first restore: memory image unpacked into the cache")
for key in ("validate_ms", "memory_ms", "create_ms", "state_ms", "resume_ms", "agent_ms",
            "done_ms"):
    v = [p[key] for p in s["phases"] if key in p]
    if v:
        row("restore", "phase_" + key, "ms", round(med(v), 2), len(v),
            note="smrestore --timing, cumulative from start")
resume = [p["resume_ms"] for p in s["phases"] if "resume_ms" in p]
fl = [f["to_first_run_ms"] for f in s["floor"]]
if resume and fl:
    steps = ("open_ms", "create_vm_ms", "irqchip_ms", "pit_ms", "memslot_ms", "vcpu_ms",
             "cpuid_ms", "state_ms")
    parts = ", ".join(f"{k[:-3]} {med([f[k] for f in s['floor']]):.2f}" for k in steps)
    row("restore", "restore_to_first_run", "ms", round(med(resume), 2), len(resume),
        "kvm_floor (bench/kvm_floor.c)", round(med(fl), 2),
        note="host-side restore work: smrestore --timing resume_ms (restore_run start to "
             "vm_start() returned: vCPU thread created, its first KVM_RUN follows a few ms "
             "later; 256 MiB snapshot, memory image cached) vs the minimal "
             "sequence open /dev/kvm -> create VM, irqchip, PIT, one 256 MiB memslot, one "
             "vCPU with CPUID/sregs/regs/XSAVE/XCRs/LAPIC/MSRs set -> KVM_RUN; each a fresh "
             f"process, alternated; floor steps ms: {parts}; target ratio <= 1.3; {where}. "
             "The build machine itself has no /dev/kvm (not even kvm-pvm), so the direct "
             "measurement there cannot be done")
    row("restore", "kvm_floor_first_exit", "ms",
        round(med([f["first_exit_ms"] for f in s["floor"]]), 3), len(fl),
        note="kvm_floor: the first KVM_RUN (guest entry, `out` exit) after the setup")
PY
