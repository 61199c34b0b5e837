#!/usr/bin/env python3
"""Means of runs 1, 2 and 4's TTFT and TPOT per build, H2O's greedy-id counts, the perplexities,
and how many fc1 plans run 2's probe found needing no workspace. Run from this folder:
python3 summary.py"""
import collections

for run in ("run1", "run2", "run4"):
    times = collections.defaultdict(lambda: collections.defaultdict(list))
    build = None
    for line in open(f"{run}_times.txt"):
        f = line.split()
        if line.startswith("=="):
            build = f[1]
        elif build and len(f) == 4 and f[0] != "kv":
            times[(f[0], int(f[1]))][build].append((float(f[2]), float(f[3])))
    builds = list(next(iter(times.values())).keys())
    base = builds[0]
    print(f"{run}: mean TTFT ms / TPOT ms, change against {base} (b = 3fb84fa, o = 4fb7601)")
    for key, per in times.items():
        mean = {b: [sum(x[i] for x in per[b]) / len(per[b]) for i in (0, 1)] for b in builds}
        cells = [f"{b} {mean[b][0]:6.2f} / {mean[b][1]:5.3f}" for b in builds]
        change = [f"{b} TTFT {100 * (mean[b][0] / mean[base][0] - 1):+.1f}% "
                  f"TPOT {100 * (mean[b][1] / mean[base][1] - 1):+.1f}%" for b in builds if b != base]
        print(f"  {key[0]:6} {key[1]:5}  " + "   ".join(cells) + "   | " + ", ".join(change))
    ids = collections.Counter(tuple(line.split()[0::2]) for line in open(f"{run}_ids.txt"))
    print("  H2O ids: " + ", ".join(f"{b} {h}: {n}" for (b, h), n in sorted(ids.items())))
    print("  ppl: " + "; ".join(line.strip() for line in open(f"{run}_ppl.txt")))
    print()

fc1 = [line for line in open("run2_ws.txt") if " limit 0:" in line]
same = [line for line in fc1 if "needs 0 | <=32M: same" in line]
print(f"run2: fc1 plans with no workspace: {len(fc1)}; the same algorithm as with 32 MiB: {len(same)}")
