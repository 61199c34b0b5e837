#!/usr/bin/env python3
"""Prints every mean the README quotes from this folder's runs: TTFT / TPOT in ms, the mean over
the rounds of each build's medians (run1_times.txt: b = HEAD, n = norm.patch; run2_times.txt:
b = HEAD + pad.patch, bpad = the same binary with RK_LAB_PAIR_PAD=25600, v1 = norm.patch,
v2 = norm_v2.patch)."""
import collections, os, re

def means(path):
    cur, acc = None, collections.defaultdict(list)
    for line in open(path):
        m = re.match(r"== (\S+) round", line)
        if m:
            cur = m.group(1)
            continue
        p = line.split()
        if cur and len(p) == 4 and p[1].isdigit():
            acc[(p[0], int(p[1]), cur)].append((float(p[2]), float(p[3])))
    return acc

def report(path, builds):
    """Each (kv, context) row of PATH: every build's means and its TPOT against the first's."""
    acc = means(path)
    print(f"{os.path.basename(path)}: mean of the rounds' medians, TTFT ms / TPOT ms")
    for kv, ctx in sorted({(k[0], k[1]) for k in acc}, key=lambda t: (t[0] != "full", t[0], t[1])):
        cols = []
        for b in builds:
            v = acc.get((kv, ctx, b))
            if v:
                t = sum(x[0] for x in v) / len(v); s = sum(x[1] for x in v) / len(v)
                cols.append(f"{b} {t:6.2f} / {s:.3f}")
        base = acc[(kv, ctx, builds[0])]
        b0 = sum(x[1] for x in base) / len(base)
        rel = [f"{b} {100 * (sum(x[1] for x in acc[(kv, ctx, b)]) / len(acc[(kv, ctx, b)]) / b0 - 1):+.1f} %"
               for b in builds[1:] if (kv, ctx, b) in acc]
        print(f"  {kv:8s} {ctx:5d}  " + "   ".join(cols) + "   TPOT " + ", ".join(rel))


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    report(os.path.join(here, "run1_times.txt"), ["b", "n"])
    report(os.path.join(here, "run2_times.txt"), ["b", "bpad", "v1", "v2"])
