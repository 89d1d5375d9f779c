#!/usr/bin/env python3
"""Write the seed corpus for fuzz/fuse_fuzz.c into fuzz/corpus/fuse/."""
import os
import struct

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "fuse")
os.makedirs(here, exist_ok=True)


def req(op, nodeid, body=b"", unique=9):
    return struct.pack("<IIQQIIIHH", 40 + len(body), op, unique, nodeid, 0, 0, 0, 0, 0) + body


def frame(r, cap_sel=5, flags=0):
    return struct.pack("<BBH", cap_sel, flags, len(r)) + r


def seq(*reqs):
    return b"\x00" + b"".join(frame(r) for r in reqs)


read_in = lambda fh, off, size: struct.pack("<QQIIQII", fh, off, size, 0, 0, 0, 0)
seeds = {
    "lookup": seq(req(1, 1, b"a\0"), req(1, 2, b"l\0"), req(5, 4)),
    "getattr": seq(req(3, 3, struct.pack("<IIQ", 0, 0, 0))),
    "open_read": seq(req(14, 3, struct.pack("<II", 0, 0)), req(15, 3, read_in(1, 0, 4096)),
                     req(18, 3, struct.pack("<QIIQ", 1, 0, 0, 0))),
    "readdirplus": seq(req(27, 1, struct.pack("<II", 0, 0)), req(44, 1, read_in(1, 0, 4096)),
                       req(28, 1, read_in(1, 0, 80))),
    "write": seq(req(16, 3, struct.pack("<QQIIQII", 0, 3, 4, 0, 0, 0, 0) + b"abcd")),
    "mkdir_rename": seq(req(9, 1, struct.pack("<II", 0o755, 0) + b"n\0"),
                        req(45, 1, struct.pack("<QII", 2, 1, 0) + b"a\0z\0")),
    "xattr": seq(req(21, 3, struct.pack("<II", 2, 0) + b"user.x\0hi"),
                 req(22, 3, struct.pack("<II", 64, 0) + b"user.x\0"),
                 req(23, 3, struct.pack("<II", 64, 0))),
    "setupmapping": seq(req(48, 3, struct.pack("<QQQQQ", 2**64 - 1, 0, 4096, 2, 0)),
                        req(49, 3, struct.pack("<I", 1) + struct.pack("<QQ", 0, 4096))),
    "batch_forget": seq(req(42, 0, struct.pack("<II", 2, 0) + struct.pack("<QQQQ", 3, 1, 4, 1))),
    "create_unlink": seq(req(35, 2, struct.pack("<IIII", 0o2, 0o644, 0, 0) + b"f\0"),
                         req(10, 2, b"f\0")),
}
# DAX blob: window 1<<32 + 64 MiB, cap 32 MiB, two entries.
entries = [(0, 2 << 20, 3, 0, 1), (4 << 20, 4096, 5, 8192, 3)]
blob = b"DAXS" + struct.pack("<IQQQQII", 1, 1 << 32, 64 << 20, 32 << 20,
                             sum(e[1] for e in entries), len(entries), 0)
for e in entries:
    blob += struct.pack("<QQQQII", *e, 0)
seeds["dax_blob"] = b"\x02" + blob
# Node table: FUSN header + passthrough table with nodes "a" (2), "d" (3),
# "d/b" (4) and a file handle on node 2.
nodes = [(2, 1, 1, 1, b"a"), (3, 2, 1, 1, b"d"), (4, 3, 1, 3, b"d/b")]
pt = struct.pack("<QQII", 5, 4, len(nodes), 1)
for nid, gen, nl, par, path in nodes:
    pt += struct.pack("<QQQQII", nid, gen, nl, par, len(path), 0) + path
pt += struct.pack("<QQII", 0, 2, 0, 0)
fusn = b"FUSN" + struct.pack("<IIIQQ", 1, 1, 36, 0, len(pt)) + pt
seeds["node_table"] = b"\x03" + fusn
for name in ["lookup", "open_read", "readdirplus", "getattr", "xattr", "setupmapping"]:
    seeds[name + "_pt"] = b"\x01" + seeds[name][1:]  # same requests, read-only passthrough
for name, data in seeds.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {here}")
