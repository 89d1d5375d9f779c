#!/usr/bin/env python3
"""Compare two root filesystem trees entry by entry: type, mode, owner,
symlink target, device number, regular file content. Exit 1 on a difference."""
import hashlib
import os
import stat
import sys


def scan(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            rec = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
            if stat.S_ISLNK(st.st_mode):
                rec.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                rec.append(h.hexdigest())
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                rec.append(st.st_rdev)
            out[rel] = rec
    return out


def main():
    a, b = scan(sys.argv[1]), scan(sys.argv[2])
    bad = 0
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            bad += 1
            if bad <= 20:
                print(f"differs: {k}: {a.get(k)} vs {b.get(k)}")
    print(f"compared {len(a)} vs {len(b)} entries, {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
