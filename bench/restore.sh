#!/bin/bash
# Restore vs cold boot, and restore vs the KVM floor, in the same emulated
# KVM host:
# - wall time of `smrestore SNAP -- true` (snapshot memory already in the
#   cache) against `smrun -- true` (cold boot of the same kernel and
#   initramfs), alternately; also the first restore (memory image unpacked
#   into the cache) and smrestore's own phase timings (median);
# - host-side restore work up to the first KVM_RUN (smrestore --timing
#   first_run_ms of the same 256 MiB snapshot) against bench/kvm_floor.c, the
#   minimal sequence any VMM needs (create VM, irqchip, PIT, one 256 MiB
#   memslot, one vCPU with CPUID, sregs, regs, XSAVE, XCRs, LAPIC and MSRs
#   set), each a fresh process, alternated with the restores;
# - where this machine's own /dev/kvm cannot run the guest (kvm-pvm): the
#   same comparison directly on it, with the snapshot baked in the emulated
#   host restored by `smrestore --dry-run` (every host-side step up to the
#   first KVM_RUN, the guest not run), alternated with kvm_floor.
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
import json, os, shutil, subprocess, sys
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
# What the rows' note says of ASLR, as this host has it (bench/lib.sh).
s["l1_randomize_va_space"] = int(open("/proc/sys/kernel/randomize_va_space").read())
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
# For the direct part: the snapshot and the write and read sets its restores recorded
# (a dry run copies it ahead as a real restore does, and records none).
shutil.copy(st.snap, out + "/snap")
os.makedirs(out + "/memory", exist_ok=True)
for f in os.listdir(st.tmp + "/cache/memory"):
    if f.endswith((".wset", ".rset")):
        shutil.copy(st.tmp + "/cache/memory/" + f, out + "/memory/" + f)
PY

bench_kvmhost --timeout $((300 + runs * 60)) --rw "$out" -- python3 "$out/inner.py" "$out" "$build" "$runs"

# This machine's /dev/kvm, where the emulated host stood in for it (with
# hardware KVM the emulated part above already ran directly).
if [ -c /dev/kvm ] && [ -e /sys/module/kvm_pvm ] && [ -f "$out/snap" ]; then
	mkdir -p "$out/direct-cache"
	cp -r "$out/memory" "$out/direct-cache/"
	python3 - "$out" "$build" "$runs" <<'PY' >&2 || echo "restore bench: direct part failed" >&2
import json, os, subprocess, sys, time
from benchlib import json_line, smrestore_timing
out, build, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
env = dict(os.environ, SM_CACHE=out + "/direct-cache")
dry = [build + "/tools/smrestore", out + "/snap", "--dry-run", "--timing", "--no-stdin",
       "--", "/bin/true"]

def run(cmd):
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=120)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return (time.monotonic() - t0) * 1000, p.stdout.decode(), p.stderr.decode()

s = json.load(open(out + "/samples.json"))
s.update({"direct_first_dry": smrestore_timing(run(dry)[2]), "direct_dry": [],
          "direct_dry_wall": [], "direct_floor": []})
for n in range(runs):
    s["direct_floor"].append(json_line(run([out + "/kvm_floor", "-n", "1", "-m", "256"])[1],
                                       "kvm_floor"))
    ms, _, err = run(dry)
    s["direct_dry"].append(smrestore_timing(err))
    s["direct_dry_wall"].append(ms)
    print(f"direct run {n + 1}: smrestore --dry-run first_run "
          f"{s['direct_dry'][-1].get('first_run_ms')} ms, kvm floor "
          f"{s['direct_floor'][-1].get('to_first_run_ms')} ms", flush=True)
# What the floor is made of here: the same with a 10 ms pause (untimed)
# between KVM_CREATE_VM and the memory slot.
s["direct_floor_paused"] = json_line(
    run([out + "/kvm_floor", "-n", str(runs), "-m", "256", "-w", "10"])[1], "kvm_floor")
json.dump(s, open(out + "/samples.json", "w"))
PY
fi
bench_samples
python3 - "$out/samples.json" <<'PY'
import json, os, statistics, sys
from benchlib import row
s = json.load(open(sys.argv[1]))
if not s["restore"] or not s["cold"]:
    sys.exit("restore bench: no complete samples")
r, c = statistics.median(s["restore"]), statistics.median(s["cold"])
print(f"samples: {json.dumps(s)}", file=sys.stderr)
where = ("inside QEMU TCG nested KVM (absolute times are not bare metal); "
         + os.environ.get("SM_BENCH_L1", "")
         + f" (randomize_va_space {s.get('l1_randomize_va_space')})")
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
# The first KVM_RUN call itself (builds before it had only resume_ms:
# vm_start() returned, a little earlier).
resume = [p.get("first_run_ms") or p["resume_ms"] for p in s["phases"] if "resume_ms" in p]
fl = [f["to_first_run_ms"] for f in s["floor"]]
if resume and fl:
    steps = ("open_ms", "create_vm_ms", "irqchip_ms", "pit_ms", "memslot_ms", "vcpu_ms",
             "cpuid_ms", "state_ms")
    parts = ", ".join(f"{k[:-3]} {med([f[k] for f in s['floor']]):.2f}" for k in steps)
    row("restore", "restore_to_first_run", "ms", round(med(resume), 2), len(resume),
        "kvm_floor (bench/kvm_floor.c)", round(med(fl), 2),
        note="host-side restore work: smrestore --timing first_run_ms (restore_run start to "
             "the first KVM_RUN call; 256 MiB snapshot, memory image cached) vs the minimal "
             "sequence open /dev/kvm -> create VM, irqchip, PIT, one 256 MiB memslot, one "
             "vCPU with CPUID/sregs/regs/XSAVE/XCRs/LAPIC/MSRs set -> KVM_RUN; each a fresh "
             f"process, alternated; floor steps ms: {parts}; target ratio <= 1.3; {where}")
    row("restore", "kvm_floor_first_exit", "ms",
        round(med([f["first_exit_ms"] for f in s["floor"]]), 3), len(fl),
        note="kvm_floor: the first KVM_RUN (guest entry, `out` exit) after the setup")
dd, df = s.get("direct_dry") or [], s.get("direct_floor") or []
if dd and df:
    steps = ("open_ms", "create_vm_ms", "irqchip_ms", "pit_ms", "memslot_ms", "vcpu_ms",
             "cpuid_ms", "state_ms")
    parts = ", ".join(f"{k[:-3]} {med([f[k] for f in df]):.2f}" for k in steps)
    phases = ", ".join(f"{k[:-3]} {med([d[k] for d in dd]):.2f}"
                       for k in ("validate_ms", "memory_ms", "create_ms", "state_ms",
                                 "resume_ms", "vm_kvm_ms", "vm_memory_ms", "vm_devices_ms",
                                 "vm_vcpus_ms"))
    row("restore", "restore_to_first_run_direct", "ms",
        round(med([d["first_run_ms"] for d in dd]), 2), len(dd),
        "kvm_floor direct (bench/kvm_floor.c)", round(med([f["to_first_run_ms"] for f in df]), 2),
        note="directly on this machine's /dev/kvm (kvm-pvm: it takes every ioctl a restore "
             "makes but cannot run the Linux guest): `smrestore --dry-run --timing` "
             "first_run_ms, i.e. everything up to the moment KVM_RUN would be called, of the "
             "snapshot baked in the emulated host (256 MiB, memory image cached, its write set "
             "copied ahead as in a real restore) vs kvm_floor, each a fresh process, "
             f"alternated; smrestore phases (cumulative) ms: {phases}; floor steps ms: "
             f"{parts}; target ratio <= 1.3")
    fp = s.get("direct_floor_paused") or {}
    if fp:
        row("restore", "kvm_floor_paused_direct", "ms", fp["to_first_run_ms"], fp["runs"],
            note="kvm_floor -w 10 on this machine's /dev/kvm: the same steps with a 10 ms "
                 "untimed pause after KVM_CREATE_VM; memslot step "
                 f"{fp['memslot_ms']:.2f} ms instead of "
                 f"{med([f['memslot_ms'] for f in df]):.2f}: on kvm-pvm the memory slot "
                 "waits until ~8-10 ms after the VM's creation, so the floor is mostly "
                 "that wait, which smrestore overlaps with reading the snapshot")
    row("restore", "dry_run_wall_direct", "ms", round(med(s["direct_dry_wall"]), 2),
        len(s["direct_dry_wall"]),
        note="wall time of the whole `smrestore --dry-run` process on this machine's "
             "/dev/kvm (start, restore to the first KVM_RUN, report, exit; the teardown "
             "continues in its child)")
PY
