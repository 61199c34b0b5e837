#!/usr/bin/env python3
"""Run 1's TPOT means, a (HEAD) and c (dead_blocks.patch), over the four alternating rounds.
Run from this folder."""
import collections

runs = collections.defaultdict(lambda: collections.defaultdict(list))
build = None
for line in open("run1_tpot.txt"):
    f = line.split()
    if line.startswith("=="):
        build = f[1]
    elif build and len(f) == 3:
        runs[build][(f[0], int(f[1]))].append(float(f[2]))
print(f"{'method context':20}{'a, ms':>8}{'c, ms':>8}{'c/a':>8}")
for key in runs["a"]:
    a = sum(runs["a"][key]) / len(runs["a"][key])
    c = sum(runs["c"][key]) / len(runs["c"][key])
    print(f"{key[0] + ' ' + str(key[1]):20}{a:8.3f}{c:8.3f}{(c / a - 1) * 100:+7.1f}%")
