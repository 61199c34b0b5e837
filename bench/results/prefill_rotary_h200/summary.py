#!/usr/bin/env python3
"""Means of each run in this folder: TTFT and TPOT (ms) per build, method and prompt over the
alternating rounds (run*_ab.txt: a = the build before, b = the change; README, "Where a
prefill's time goes", says what each run's b was), and each kernel's time
alone under ncu (run*_ncu_<build>_<prompt>.csv, µs, over the layers profiled).
Usage: python3 summary.py"""
import collections
import csv
import glob
import os
import re

here = os.path.dirname(os.path.abspath(__file__))
for run in ("run1", "run2", "run3", "run4"):
    print(run)
    rows = collections.OrderedDict()
    build = None
    for line in open(os.path.join(here, run + "_ab.txt")):
        m = re.match(r"== (\S+) round", line)
        if m:
            build = m.group(1)
            continue
        f = line.split()
        if build and len(f) == 5:
            rows.setdefault((f[0], f[1], build), []).append((float(f[2]), float(f[3])))
    for (method, prompt, b), v in rows.items():
        print("  %-7s %5s %s  TTFT %.2f  TPOT %.3f" % (method, prompt, b,
              sum(x[0] for x in v) / len(v), sum(x[1] for x in v) / len(v)))
    for path in sorted(glob.glob(os.path.join(here, run + "_ncu_*.csv"))):
        times = collections.defaultdict(list)
        header = None
        for r in csv.reader(open(path)):
            if r and r[0] == "ID":
                header = r
            elif header and len(r) == len(header):
                x = dict(zip(header, r))
                if x["Metric Name"] == "gpu__time_duration.sum":
                    name = re.sub(r"^void \(anonymous namespace\)::|^void <unnamed>::", "",
                                  x["Kernel Name"]).split("(")[0]
                    times[name].append(float(x["Metric Value"].replace(",", "")) / 1000)
        for name, t in times.items():
            print("  %-24s %-36s %.1f us (%d launches)" % (os.path.basename(path)[5:-4], name,
                  sum(t) / len(t), len(t)))
