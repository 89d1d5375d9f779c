#!/bin/bash
# Density: N concurrent restores of one snapshot in the same emulated KVM
# host. Each runs `smrestore SNAP -- sh -c 'sleep S'`; while all are alive,
# PSS and USS (Private_Clean + Private_Dirty) of every smrestore process and
# its children (the VM lives in a child) are read from /proc/PID/smaps_rollup. Reports the share of restores that
# succeeded (exit 0), median per-VM PSS/USS and the total over all VMs.
#
#   bench/density.sh [N...]       (default 10 50; rows on stdout, see bench/run.sh)
#
# Env: SM_BUILD (default build), SM_KERNEL (default kernel/build.sh --path),
#      SM_DENSITY_GUEST_MIB (guest memory, default 128),
#      SM_DENSITY_HOST_MIB (emulated host memory, default 6144),
#      SM_BENCH_OUT (if set: raw samples to $SM_BENCH_OUT/density.samples.json).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(10 50)
guest_mib=${SM_DENSITY_GUEST_MIB:-128}
host_mib=${SM_DENSITY_HOST_MIB:-6144}
bench_init density smrun smrestore

cat >"$out/inner.py" <<'PY'
import json, os, shutil, subprocess, sys, time
from benchlib import Stage
out, build, guest_mib = sys.argv[1], sys.argv[2], sys.argv[3]
counts = [int(x) for x in sys.argv[4:]]
st = Stage(out, build, "densitybench")
smrun, smrestore, tmp, env = st.smrun, st.smrestore, st.tmp, st.env
k, i, snap = st.kernel, st.initrd, st.snap

def tree(pid):
    """PID and its descendants: smrestore's VM lives in a child (the process
    the caller waits for only waits for CMD's status), so a VM's memory is
    the sum over the tree."""
    pids = [pid]
    for p in pids:
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                pids += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
        except OSError:
            pass
    return pids

def rollup(pid):
    v = {}
    try:
        for q in tree(pid):
            for line in open(f"/proc/{q}/smaps_rollup"):
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "kB":
                    k = parts[0].rstrip(":")
                    v[k] = v.get(k, 0) + int(parts[1])
    except OSError:
        return None
    return {"pss_kib": v.get("Pss", 0),
            "uss_kib": v.get("Private_Clean", 0) + v.get("Private_Dirty", 0),
            "rss_kib": v.get("Rss", 0)}

def meminfo():
    return {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/meminfo")}

p = subprocess.run([smrun, "--kernel", k, "--initrd", i, "--console", "none",
                    "--mem", guest_mib, "--snapshot-out", snap],
                   stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=300)
if p.returncode != 0:
    sys.exit("bake failed: " + p.stderr.decode(errors="replace")[-2000:])
# one restore first so the memory image is unpacked into the cache
p = subprocess.run([smrestore, snap, "--no-stdin", "--", "/bin/true"],
                   stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=300)
if p.returncode != 0:
    sys.exit("first restore failed: " + p.stderr.decode(errors="replace")[-2000:])
print(f"host MemTotal {meminfo()['MemTotal'] // 1024} MiB, guest {guest_mib} MiB",
      file=sys.stderr, flush=True)
res = {"guest_mib": int(guest_mib), "host_mem_total_kib": meminfo()["MemTotal"], "runs": {}}
# the harness retries once when the emulated host locks up: keep the N
# already measured by the first attempt
if os.path.exists(out + "/samples.json"):
    res["runs"] = json.load(open(out + "/samples.json")).get("runs", {})
for n in counts:
    if str(n) in res["runs"]:
        continue
    # each VM sleeps long enough for all N to start and be sampled; the marker
    # file tells when its command really runs inside the guest
    marks = tmp + f"/marks{n}"
    os.makedirs(marks, exist_ok=True)
    sleep_s = 30 + n * 3
    procs = []
    t0 = time.monotonic()
    for j in range(n):
        procs.append(subprocess.Popen(
            [smrestore, snap, "--no-stdin", "--timeout", "120", "--",
             "sh", "-c", f"echo up; sleep {sleep_s}"],
            stdin=subprocess.DEVNULL, stdout=open(f"{marks}/{j}.out", "wb"),
            stderr=open(f"{marks}/{j}.err", "wb"), env=env))
    # wait until every VM printed "up" (its command runs) or exited, or timeout
    deadline = t0 + sleep_s - 5
    while time.monotonic() < deadline:
        up = sum(1 for j in range(n) if b"up" in open(f"{marks}/{j}.out", "rb").read())
        gone = sum(1 for q in procs if q.poll() is not None)
        if up + gone >= n:
            break
        time.sleep(0.5)
    all_up_s = time.monotonic() - t0
    up = [j for j in range(n) if b"up" in open(f"{marks}/{j}.out", "rb").read()]
    mem = {j: rollup(procs[j].pid) for j in up if procs[j].poll() is None}
    mem = {j: m for j, m in mem.items() if m}
    avail = meminfo()["MemAvailable"]
    rcs = []
    for q in procs:
        try:
            rcs.append(q.wait(timeout=sleep_s + 120))
        except subprocess.TimeoutExpired:
            q.kill(); rcs.append(q.wait())
    ok = sum(1 for r in rcs if r == 0)
    for j, r in enumerate(rcs):
        if r != 0:
            print(f"N={n} vm {j}: exit {r}: " +
                  open(f"{marks}/{j}.err", "rb").read().decode(errors="replace")[-500:],
                  file=sys.stderr)
    res["runs"][str(n)] = {"n": n, "ok": ok, "exit_codes": rcs, "up": len(up),
                           "start_to_all_up_s": all_up_s, "mem": list(mem.values()),
                           "mem_available_kib_while_up": avail}
    print(f"N={n}: {ok}/{n} succeeded, {len(up)} up after {all_up_s:.1f} s, "
          f"{len(mem)} sampled, MemAvailable {avail // 1024} MiB", file=sys.stderr, flush=True)
    json.dump(res, open(out + "/samples.json", "w"))
    shutil.rmtree(marks, ignore_errors=True)
PY

total=0
for n in "${counts[@]}"; do total=$((total + 60 + n * 8)); done
bench_kvmhost --mem "$host_mib" --timeout $((300 + total)) --rw "$out" -- \
	python3 "$out/inner.py" "$out" "$build" "$guest_mib" "${counts[@]}"
bench_samples
python3 - "$out/samples.json" <<'PY'
import json, os, statistics, sys
s = json.load(open(sys.argv[1]))
print(f"samples: {json.dumps(s)}", file=sys.stderr)
where = (f"{s['guest_mib']} MiB guests, one snapshot, inside QEMU TCG nested KVM "
         f"(emulated host {s['host_mem_total_kib'] // 1024} MiB)") + "; " + os.environ.get("SM_BENCH_L1", "")
def row(metric, unit, value, n, note, better):
    print(json.dumps({"area": "density", "metric": metric, "unit": unit, "value": value, "n": n,
                      "peer": None, "peer_value": None, "ratio": None, "better": better,
                      "note": note}))
for key, r in s["runs"].items():
    n = r["n"]
    row(f"N{n}_success", "%", round(100.0 * r["ok"] / n, 1), n,
        f"{r['ok']}/{n} concurrent `smrestore SNAP -- sh -c sleep` exited 0; {r['up']} ran "
        f"their command together; {where}", "higher")
    m = r["mem"]
    if not m:
        continue
    pss = [x["pss_kib"] / 1024 for x in m]
    uss = [x["uss_kib"] / 1024 for x in m]
    note = f"smaps_rollup of each smrestore while all {len(m)} sampled VMs ran; {where}"
    row(f"N{n}_pss_median_mib", "MiB", round(statistics.median(pss), 1), len(m), note, "lower")
    row(f"N{n}_uss_median_mib", "MiB", round(statistics.median(uss), 1), len(m), note, "lower")
    row(f"N{n}_pss_total_mib", "MiB", round(sum(pss), 1), len(m), note, "lower")
    row(f"N{n}_uss_total_mib", "MiB", round(sum(uss), 1), len(m), note, "lower")
PY
