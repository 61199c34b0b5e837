#!/usr/bin/env python3
"""Warp-stall samples of the products' kernels under ncu (runs 8 and 12:
run<N>_<build>_source.csv.xz, ncu's source page, one table per profiled launch). Per build and kernel, summed over its
launches: samples by stall reason, then the instructions that hold the most samples with their
main reasons. Usage: python3 stalls.py [folder of the CSVs, this one by default]"""
import collections
import csv
import glob
import lzma
import os
import re
import sys

here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


def tables(path):
    """(kernel name, rows as dicts) for each launch in a source-page CSV."""
    name, header, rows = None, None, []
    for rec in csv.reader(lzma.open(path, "rt")):
        if rec and rec[0] == "Kernel Name":
            if name:
                yield name, rows
            name, header, rows = rec[1], None, []
        elif header is None:
            header = rec
        elif rec:
            rows.append(dict(zip(header, rec)))
    if name:
        yield name, rows


def num(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return 0.0


for path in sorted(glob.glob(os.path.join(here, "run*_*_source.csv.xz"))):
    build = re.match(r"(run\d+_\w+?)_source", os.path.basename(path)).group(1)
    kernels = collections.OrderedDict()
    for name, rows in tables(path):
        kind = "pair" if "(int)2, (int)5" in name else "sum" if "(int)8, (int)7" in name else name
        k = kernels.setdefault(kind, {"reasons": collections.Counter(), "inst": collections.OrderedDict(), "n": 0})
        k["n"] += 1
        for i, r in enumerate(rows):
            src = " ".join(r["Source"].split())
            key = (i, src)
            slot = k["inst"].setdefault(key, collections.Counter())
            for col, v in r.items():
                if col.startswith("stall_") and "Not Issued" not in col:
                    slot[col[6:]] += num(v)
                    k["reasons"][col[6:]] += num(v)
    for kind, k in kernels.items():
        total = sum(k["reasons"].values())
        print("%s %s: %d launches, %d samples" % (build, kind, k["n"], total))
        print("   " + "  ".join("%s %.1f%%" % (r, 100 * v / total) for r, v in k["reasons"].most_common(7)))
        top = sorted(k["inst"].items(), key=lambda kv: -sum(kv[1].values()))[:8]
        for (i, src), c in top:
            s = sum(c.values())
            print("   %4d %-44s %5.1f%%  %s" % (i, src[:44], 100 * s / total,
                  " ".join("%s %.0f%%" % (r, 100 * v / s) for r, v in c.most_common(2))))
