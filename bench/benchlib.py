# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the bench areas' Python parts (bench/lib.sh sets PYTHONPATH).

Inside the emulated host: stage() copies the kernel and initramfs to tmpfs,
timed() runs a tool and times it, smrestore_timing() reads smrestore's
--timing line. Outside: row() prints one row for bench/run.sh.
"""
import json
import os
import shutil
import subprocess
import sys
import time


class Stage:
    """vmlinux + initrd.cpio copied from OUT to /tmp/NAME, a cache and tool paths."""

    def __init__(self, out, build, name):
        self.tmp = "/tmp/" + name
        os.makedirs(self.tmp, exist_ok=True)
        for f in ("vmlinux", "initrd.cpio"):
            shutil.copy(os.path.join(out, f), self.tmp)
        self.kernel, self.initrd = self.tmp + "/vmlinux", self.tmp + "/initrd.cpio"
        self.snap = self.tmp + "/snap"
        self.smrun, self.smrestore = build + "/tools/smrun", build + "/tools/smrestore"
        self.env = dict(os.environ, SM_CACHE=self.tmp + "/cache",
                        SM_AGENT=build + "/agent/sminit")

    def smrun_cmd(self, *args):
        return [self.smrun, "--kernel", self.kernel, "--initrd", self.initrd,
                "--console", "none", *args]

    def timed(self, cmd, timeout=300):
        """Run CMD; (wall ms, stderr text). Exits the script when CMD fails."""
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.env, timeout=timeout)
        ms = (time.monotonic() - t0) * 1000
        if p.returncode != 0:
            sys.exit(f"{cmd[0]} failed ({p.returncode}): "
                     f"{p.stderr.decode(errors='replace')[-2000:]}")
        return ms, p.stderr.decode(errors="replace")


def json_line(log, key):
    """The first line of LOG that is a JSON object with KEY, parsed, or {}."""
    for line in log.splitlines():
        if line.startswith('{"' + key + '"'):
            return json.loads(line)
    return {}


def smrestore_timing(log):
    return json_line(log, "smrestore_timing")


def load_samples(path, base):
    """BASE updated with the keys of BASE found in PATH (a retried emulated host
    keeps the samples of the first attempt)."""
    if os.path.exists(path):
        base.update({k: v for k, v in json.load(open(path)).items() if k in base})
    return base


def row(area, metric, unit, value, n, peer=None, peer_value=None, better="lower", note=None,
        ratio=None):
    if ratio is None and peer_value:
        ratio = round(value / peer_value, 3)
    print(json.dumps({"area": area, "metric": metric, "unit": unit, "value": value, "n": n,
                      "peer": peer, "peer_value": peer_value, "ratio": ratio,
                      "better": better, "note": note}))
