#!/usr/bin/env python3
"""Means of the branch runs' TTFT and TPOT per build and mode, and the H2O greedy-id counts.
Run from this folder: python3 summary.py"""
import collections
import re

for run in ("run1", "run2", "run4", "run5"):
    times = collections.defaultdict(lambda: collections.defaultdict(list))
    build = None
    for line in open(f"{run}_times.txt"):
        f = line.split()
        if line.startswith("=="):
            build = f[1]
        elif build and len(f) == 4 and f[0] != "kv":
            times[(f[0], int(f[1]))][build].append((float(f[2]), float(f[3])))
    builds = list(next(iter(times.values())).keys())
    print(f"{run}: mean TTFT ms / TPOT ms over {len(next(iter(times.values()))['a'])} round(s)")
    print(f"  {'kv context':16}" + "".join(f"{b:>16}" for b in builds))
    for key, per in times.items():
        cells = []
        for b in builds:
            ttft = sum(t for t, _ in per[b]) / len(per[b])
            tpot = sum(p for _, p in per[b]) / len(per[b])
            cells.append(f"{ttft:7.2f} / {tpot:5.3f}")
        print(f"  {key[0] + ' ' + str(key[1]):16}" + "".join(f"{c:>16}" for c in cells))
    a = {k: sum(t for t, _ in v["a"]) / len(v["a"]) for k, v in times.items()}
    for b in builds[1:]:
        ch = [f"{k[0]} {k[1]} {100 * (sum(t for t, _ in v[b]) / len(v[b]) / a[k] - 1):+.1f}%"
              for k, v in times.items()]
        print(f"  TTFT of {b} against a: " + ", ".join(ch))
    print()

counts = collections.defaultdict(collections.Counter)
for run in ("run2", "run3", "run4", "run5", "run6", "run9"):
    for line in open(f"{run}_ids.txt"):
        f = line.split()
        if len(f) >= 3 and f[1] == "h2o":
            digest = f[3] if f[2] == "ids" else f[2]  # run 2 wrote "ids" before the md5
            build = f[0] + (" at 3fb84fa" if run == "run9" else "")
            counts[build][re.sub(r"\W", "", digest)[:12]] += 1
print("H2O greedy ids (md5 prefix) per build and mode, runs 2-6 and 9 (run 9: c and o over 3fb84fa):")
for t in sorted(counts):
    print(f"  {t:14} " + ", ".join(f"{h}: {n}" for h, n in counts[t].most_common()))
