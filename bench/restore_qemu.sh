#!/bin/bash
# Restore peer: QEMU `-M microvm` restoring the same kernel + initramfs guest
# from a migration file, against `smrestore SNAP -- true`, alternately in the
# same emulated KVM host (plus `smrun -- true` cold boot for the plot).
#
#   bench/restore_qemu.sh [RUNS]  (default 10; rows on stdout, see bench/run.sh)
#
# QEMU boots the guest with the command line of bench/boot.sh, waits for
# "sminit: ready" on its serial console, migrates to a file over QMP
# (`exec:cat > FILE`; Debian's QEMU 7.2 has no `file:` URI) and quits. Each
# QEMU sample is the time from process start with `-incoming "exec:cat FILE"`
# until QMP query-status says "running" (restore to running guest; the QMP
# polling is included). smrestore's end to end `-- true` is a superset of
# that, so its own first_run_ms phase (--timing: start to first KVM_RUN) is the
# row compared with QEMU; the end to end figure is a second row.
# Env: SM_BUILD (default build), SM_KERNEL (default kernel/build.sh --path),
#      SM_BENCH_OUT (if set: raw samples to $SM_BENCH_OUT/restore_qemu.samples.json).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-10}
command -v qemu-system-x86_64 >/dev/null || { echo "restore_qemu bench: no qemu-system-x86_64" >&2; exit 1; }
bench_init restore_qemu smrun smrestore

cat >"$out/inner.py" <<'PY'
import json, os, shutil, socket, subprocess, sys, threading, time
from benchlib import Stage
out, build, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
st = Stage(out, build, "restoreqemubench")
smrun, smrestore, tmp, env = st.smrun, st.smrestore, st.tmp, st.env
k, i, snap = st.kernel, st.initrd, st.snap
mig, qmp_path = tmp + "/qemu.mig", tmp + "/qmp.sock"
base = ("console=ttyS0 reboot=k panic=-1 pci=off nomodules quiet i8042.nokbd i8042.noaux "
        "tsc=reliable no_timer_check rdinit=/init SMINIT_MARK=1")
qemu = ["qemu-system-x86_64", "-M", "microvm,x-option-roms=off", "-enable-kvm", "-cpu", "host",
        "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
        "-serial", "stdio", "-no-reboot", "-kernel", k, "-initrd", i, "-append", base,
        "-device", "virtio-rng-device", "-qmp", f"unix:{qmp_path},server=on,wait=off"]

class Qmp:
    def __init__(self, deadline):
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(qmp_path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise TimeoutError("no QMP socket")
                time.sleep(0.001)
        self.f = self.s.makefile("rb")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")
    def cmd(self, name, **args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        while True:
            r = json.loads(self.f.readline())
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")
    def close(self):
        self.f.close(); self.s.close()

def stop(p):
    p.kill()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass

# 1. QEMU: boot to the agent's marker, migrate to a file, quit.
for f in (qmp_path, mig):
    if os.path.exists(f):
        os.unlink(f)
p = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
killer = threading.Timer(180, p.kill)
killer.start()
seen = b""
for line in p.stdout:
    seen += line
    if b"sminit: ready" in line:
        break
else:
    sys.exit("qemu boot did not reach 'sminit: ready':\n" + seen.decode(errors="replace")[-3000:]
             + p.stderr.read().decode(errors="replace")[-2000:])
threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
q = Qmp(time.monotonic() + 30)
q.cmd("migrate", uri=f"exec:cat > {mig}")
while True:
    st = q.cmd("query-migrate").get("status")
    if st == "completed":
        break
    if st in ("failed", "cancelled"):
        sys.exit(f"qemu migrate {st}")
    time.sleep(0.05)
try:
    q.cmd("quit")
except Exception:
    pass
q.close()
p.wait(timeout=30)
killer.cancel()
mig_bytes = os.path.getsize(mig)
print(f"qemu migration file: {mig_bytes / 2**20:.1f} MiB", file=sys.stderr, flush=True)

# 2. ours: bake and one restore so the memory image is in the cache.
def timed(cmd):
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=300)
    ms = (time.monotonic() - t0) * 1000
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
    return ms, r.stderr.decode(errors="replace")

def resume_ms(log):
    for line in log.splitlines():
        if line.startswith('{"smrestore_timing"'):
            t = json.loads(line)  # builds before first_run_ms had resume_ms only
            return t.get("first_run_ms") or t.get("resume_ms")
    return None

timed([smrun, "--kernel", k, "--initrd", i, "--console", "none", "--snapshot-out", snap])
timed([smrestore, snap, "--no-stdin", "--", "/bin/true"])

def qemu_restore():
    if os.path.exists(qmp_path):
        os.unlink(qmp_path)
    t0 = time.monotonic()
    rp = subprocess.Popen(qemu + ["-incoming", f"exec:cat {mig}"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        c = Qmp(t0 + 60)
        st = None
        while time.monotonic() < t0 + 60:
            st = c.cmd("query-status")
            if st.get("status") == "running":
                ms = (time.monotonic() - t0) * 1000
                break
            if st.get("status") not in ("inmigrate", "prelaunch", "paused", "restore-vm"):
                raise RuntimeError(f"qemu restore ended in state {st}")
            time.sleep(0.001)
        else:
            raise TimeoutError(f"qemu restore not running after 60 s ({st})")
        c.close()
        return ms
    except Exception as e:
        stop(rp)
        sys.exit(f"qemu -incoming failed: {e}: {rp.stderr.read().decode(errors='replace')[-2000:]}")
    finally:
        stop(rp)

s = {"qemu_migration_bytes": mig_bytes, "smrestore_run_true_ms": [], "smrestore_resume_ms": [],
     "qemu_incoming_running_ms": [], "smrun_cold_run_true_ms": []}
# the harness retries once when the emulated host locks up: keep the samples
# of the first attempt and only add the runs still missing
if os.path.exists(out + "/samples.json"):
    s.update({k: v for k, v in json.load(open(out + "/samples.json")).items() if k in s})
    s["qemu_migration_bytes"] = mig_bytes
for n in range(len(s["qemu_incoming_running_ms"]), runs):
    ms, log = timed([smrestore, snap, "--no-stdin", "--timing", "--", "/bin/true"])
    s["smrestore_run_true_ms"].append(ms)
    r = resume_ms(log)
    if r is not None:
        s["smrestore_resume_ms"].append(r)
    s["qemu_incoming_running_ms"].append(qemu_restore())
    ms, _ = timed([smrun, "--kernel", k, "--initrd", i, "--console", "none", "--no-stdin",
                   "--", "/bin/true"])
    s["smrun_cold_run_true_ms"].append(ms)
    print(f"run {n + 1}: smrestore -- true {s['smrestore_run_true_ms'][-1]:.0f} ms "
          f"(resume {r} ms), qemu -incoming to running {s['qemu_incoming_running_ms'][-1]:.0f} ms, "
          f"smrun -- true {ms:.0f} ms", file=sys.stderr, flush=True)
    json.dump(s, open(out + "/samples.json", "w"))
PY

bench_kvmhost --timeout $((300 + runs * 60)) --rw "$out" -- python3 "$out/inner.py" "$out" "$build" "$runs"
bench_samples
python3 - "$out/samples.json" <<'PY'
import json, os, statistics, sys
s = json.load(open(sys.argv[1]))
print(f"samples: {json.dumps(s)}", file=sys.stderr)
q = s["qemu_incoming_running_ms"]
if not q or not s["smrestore_run_true_ms"]:
    sys.exit("restore_qemu bench: no complete samples")
qm = statistics.median(q)
where = "inside QEMU TCG nested KVM (absolute times are not bare metal); 256 MiB guests; " + os.environ.get("SM_BENCH_L1", "")
peer = "qemu -M microvm -incoming exec:cat FILE"
def row(metric, v, n, note):
    print(json.dumps({"area": "restore_qemu", "metric": metric, "unit": "ms",
                      "value": round(v, 1), "n": n, "peer": peer, "peer_value": round(qm, 1),
                      "ratio": round(v / qm, 3), "better": "lower", "note": note}))
if s["smrestore_resume_ms"]:
    row("restore_to_running", statistics.median(s["smrestore_resume_ms"]),
        len(s["smrestore_resume_ms"]),
        "smrestore --timing first_run_ms (start to first KVM_RUN) vs QEMU process start to QMP "
        f"query-status 'running' (polling included); qemu n={len(q)}, migration file "
        f"{s['qemu_migration_bytes'] / 2**20:.1f} MiB; same kernel and initramfs; {where}")
row("run_true_vs_qemu_running", statistics.median(s["smrestore_run_true_ms"]),
    len(s["smrestore_run_true_ms"]),
    "wall time of `smrestore SNAP -- true` (memory cached; includes running the command and "
    f"teardown, a superset of QEMU's restore to running); {where}")
PY
