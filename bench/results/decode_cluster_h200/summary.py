#!/usr/bin/env python3
"""Means of runs 1 and 2 (decode merge in thread-block clusters): TPOT per build over the
alternating rounds, and each decode kernel alone under ncu, in us (first half of a kernel's
launches: the 512-token prompt; second half: 1920). Run from this folder."""
import collections
import csv
import io
import re
import tarfile


def tpot_rounds(path):
    """{build: {(method, context): [tpot, ...]}} from a run's == headers and its rows."""
    means = collections.defaultdict(lambda: collections.defaultdict(list))
    build = None
    for line in open(path):
        f = line.split()
        if line.startswith("=="):
            build = " ".join(f[1:-5]) if f[1] == "fuse" else f[1]
        elif build and len(f) == 3:
            means[build][(f[0], int(f[1]))].append(float(f[2]))
        elif build and len(f) >= 7 and f[0] == "rnd":
            means[build][(f[3], int(f[4]))].append(float(f[6]))
    return means


def ncu_kernels(tar_path):
    out = {}
    with tarfile.open(tar_path) as t:
        for m in t.getmembers():
            text = t.extractfile(m).read().decode()
            hdr, times = None, collections.OrderedDict()
            for r in csv.reader(io.StringIO(text)):
                if r and r[0] == "ID":
                    hdr = r
                elif hdr and len(r) == len(hdr):
                    x = dict(zip(hdr, r))
                    name = re.sub(r"\(.*", "", x["Kernel Name"]).replace("void ", "")
                    key = name + " grid " + x["Grid Size"]
                    times.setdefault(key, []).append(float(x["Metric Value"].replace(",", "")))
            out[m.name] = times
    return out


for run, names in (("run1", {"a": "a (HEAD)", "c": "c (merge in clusters)",
                             "c0": "c, RK_DECODE_FUSE=0 (two kernels)"}),
                   ("run2", {"fuse 0 round": "RK_DECODE_FUSE=0 (two kernels)",
                             "fuse 1 round": "1 (merge in clusters)",
                             "fuse 2 round": "2 (two kernels, split as clusters)"})):
    print(f"== {run}: TPOT, ms, mean over rounds")
    m = tpot_rounds(f"{run}_tpot.txt")
    keys = sorted({k for b in m.values() for k in b})
    print(f"{'method context':24}" + "".join(f"{names.get(b, b):>36}" for b in m))
    for k in keys:
        print(f"{k[0] + ' ' + str(k[1]):24}" +
              "".join(f"{sum(m[b][k]) / len(m[b][k]):36.3f}" for b in m))
    print(f"== {run}: decode kernels alone under ncu, us (512 / 1920)")
    for f, times in ncu_kernels(f"{run}_ncu.tar.xz").items():
        print(f"  {f}")
        for key, v in times.items():
            h = len(v) // 2
            print(f"    {key:60} {sum(v[:h]) / h / 1e3:6.2f} / {sum(v[h:]) / (len(v) - h) / 1e3:6.2f}"
                  f"  ({len(v)} launches)")
