#!/bin/bash
# Boot time: VMM start -> guest agent ready, our monitor (smrun) against
# QEMU `-M microvm` booting the same vmlinux and initramfs with the same
# kernel command line, measured alternately in the same emulated KVM host.
#
#   bench/boot.sh [RUNS]          (default 5; rows on stdout, see bench/run.sh)
#
# The common end point is the line "sminit: ready" that the agent writes to
# the serial console when SMINIT_MARK=1 is on the command line, right after
# it mounted the filesystems and started listening on vsock; both VMMs are
# timed from just before their process starts to that line. smrun's own
# vsock readiness (the agent's READY frame) is reported as a second row.
# Kernel and initramfs are copied to tmpfs first so 9p reads do not count.
# Env: SM_BUILD (default build), SM_KERNEL (default kernel/build.sh --path).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
bench_init boot smrun

cat >"$out/inner.py" <<'PY'
import json, os, shutil, statistics, subprocess, sys, threading, time
out, smrun, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
tmp = "/tmp/bootbench"
os.makedirs(tmp, exist_ok=True)
for f in ("vmlinux", "initrd.cpio"):
    shutil.copy(os.path.join(out, f), tmp)
k, i = tmp + "/vmlinux", tmp + "/initrd.cpio"
base = ("console=ttyS0 reboot=k panic=-1 pci=off nomodules quiet i8042.nokbd i8042.noaux "
        "tsc=reliable no_timer_check rdinit=/init SMINIT_MARK=1")
MARK = b"sminit: ready"

def until_mark(cmd, stream):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
                         stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL)
    killer = threading.Timer(120, p.kill)  # a stuck boot must not stall the bench
    killer.start()
    f = p.stdout if stream == "stdout" else p.stderr
    t_mark, rest = None, b""
    deadline = t0 + 120
    for line in f:
        if MARK in line and t_mark is None:
            t_mark = (time.monotonic() - t0) * 1000
            if stream == "stdout":
                break
        rest += line
        if time.monotonic() > deadline:
            break
    if stream == "stdout":
        p.kill()
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
    if stream == "stderr":
        rest += f.read()
    killer.cancel()
    return t_mark, rest.decode(errors="replace")

ours, vsock, qemu = [], [], []
failures = {"smrun": 0, "qemu": 0}
for n in range(runs):
    t, log = until_mark([smrun, "--kernel", k, "--initrd", i, "--console", "-", "--no-stdin",
                         "--append", "SMINIT_MARK=1", "--timing", "--", "/bin/true"], "stderr")
    if t is None:
        print("smrun did not reach the agent:\n" + log[-3000:], file=sys.stderr)
        failures["smrun"] += 1
    else:
        ours.append(t)
    for line in log.splitlines():
        if line.startswith('{"smrun_timing"'):
            vsock.append(json.loads(line)["start_to_ready_ms"])
    t, log = until_mark(["qemu-system-x86_64", "-M", "microvm,x-option-roms=off", "-enable-kvm",
                         "-cpu", "host", "-m", "256", "-smp", "1", "-nodefaults",
                         "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
                         "-kernel", k, "-initrd", i, "-append", base,
                         "-device", "virtio-rng-device"], "stdout")
    if t is None:
        print("qemu did not reach the agent:\n" + log[-3000:], file=sys.stderr)
        failures["qemu"] += 1
    else:
        qemu.append(t)
    print(f"run {n + 1}: smrun {ours[-1] if ours else 0:.0f} ms, qemu {qemu[-1] if qemu else 0:.0f} ms",
          file=sys.stderr, flush=True)
    json.dump({"smrun": ours, "smrun_vsock": vsock, "qemu": qemu, "failures": failures},
              open(out + "/samples.json", "w"))
PY

bench_kvmhost --timeout $((120 + runs * 90)) --rw "$out" -- python3 "$out/inner.py" "$out" "$build/tools/smrun" "$runs"
bench_samples
python3 - "$out/samples.json" <<'PY'
import json, os, statistics, sys
s = json.load(open(sys.argv[1]))
fails = s.pop("failures", {})
m = {k: statistics.median(v) for k, v in s.items() if v}
if "smrun" not in m or "qemu" not in m:
    sys.exit(f"boot bench: no complete samples ({fails})")
n = len(s["smrun"])
print(f"samples: {json.dumps(s)}", file=sys.stderr)
note = ("VMM start to 'sminit: ready' on serial; inside QEMU TCG nested KVM; same kernel, "
        f"initramfs, cmdline; qemu n={len(s['qemu'])}; failed boots {fails}") + "; " + os.environ.get("SM_BENCH_L1", "")
print(json.dumps({"area": "boot", "metric": "start_to_agent_ready", "unit": "ms",
                  "value": round(m["smrun"], 1), "n": n, "peer": "qemu -M microvm",
                  "peer_value": round(m["qemu"], 1), "ratio": round(m["smrun"] / m["qemu"], 3),
                  "better": "lower", "note": note}))
if "smrun_vsock" in m:
    print(json.dumps({"area": "boot", "metric": "start_to_vsock_ready", "unit": "ms",
                      "value": round(m["smrun_vsock"], 1), "n": len(s["smrun_vsock"]),
                      "peer": None, "peer_value": None, "ratio": None, "better": "lower",
                      "note": "smrun: VMM start to the agent's READY frame over vsock"}))
PY
