#!/usr/bin/env python3
"""Mean TPOT (ms) per build, method and context over the rounds of each run (run1.txt ..
run12.txt; the first build of each is its base), then the S2UR instructions in the one-row products' two
kernels of the step (the
QKV + fc1 pair, gemv_kernel<false, 2, 5>, and the dense + fc2 sum, gemv_kernel<false, 8, 7>)
in each build's SASS kept here. Usage: python3 means.py"""
import collections
import glob
import lzma
import os
import re

here = os.path.dirname(os.path.abspath(__file__))


def means(path):
    rows = collections.OrderedDict()
    build = None
    for line in open(path):
        m = re.match(r"== (\S+) round", line)
        if m:
            build = m.group(1)
            continue
        f = line.split()
        if build and len(f) == 5:
            rows.setdefault((f[0], f[1]), collections.OrderedDict()).setdefault(build, []).append(
                float(f[3]))
    return rows


runs = [p for p in glob.glob(os.path.join(here, "run*.txt"))
        if re.fullmatch(r"run\d+\.txt", os.path.basename(p))]
for run in sorted(runs, key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)))):
    print(os.path.basename(run))
    for (method, ctx), builds in means(run).items():
        first = next(iter(builds.values()))
        base = sum(first) / len(first)
        print("  %-7s %5s  " % (method, ctx) + "  ".join(
            "%s %.3f (%+.1f %%)" % (b, sum(t) / len(t), 100 * (sum(t) / len(t) / base - 1))
            for b, t in builds.items()))

KERNELS = {"pair": "gemv_kernelILb0ELi2ELi5E", "sum": "gemv_kernelILb0ELi8ELi7E"}
print("S2UR instructions a kernel")
for path in sorted(glob.glob(os.path.join(here, "*.sass.xz"))):
    counts = dict.fromkeys(KERNELS, 0)
    kernel = None
    for line in lzma.open(path, "rt"):
        if "Function :" in line:
            kernel = next((k for k, sym in KERNELS.items() if sym in line), None)
        elif kernel and "S2UR" in line:
            counts[kernel] += 1
    print("  %-24s %s" % (os.path.basename(path),
                          "  ".join("%s %d" % (k, n) for k, n in counts.items())))
