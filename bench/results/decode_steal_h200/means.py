#!/usr/bin/env python3
"""Mean TPOT (ms) per variant, method and context over the rounds of each run's output
(steal_ab.txt, lab1.txt .. lab7.txt in this folder). Usage: python3 means.py"""
import collections
import os
import re

RUNS = ["steal_ab.txt", "lab1.txt", "lab2.txt", "lab3.txt", "lab4.txt", "lab5.txt", "lab6.txt",
        "lab7.txt"]


def means(path):
    rows = collections.OrderedDict()
    variant = None
    for line in open(path):
        m = re.match(r"== (\S+) round", line)
        if m:
            variant = m.group(1)
            continue
        f = line.split()
        if variant and len(f) == 5:
            rows.setdefault((variant, f[0], f[1]), []).append(float(f[3]))
    return rows


here = os.path.dirname(os.path.abspath(__file__))
for run in RUNS:
    print(run)
    for (variant, method, ctx), tpot in means(os.path.join(here, run)).items():
        print("  %-8s %-7s %5s  %.3f  (%s)" % (variant, method, ctx, sum(tpot) / len(tpot),
                                               " ".join("%.3f" % t for t in tpot)))
