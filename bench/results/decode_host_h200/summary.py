"""Means of the decode_host_h200 runs; run from this folder.
Run 1: b (HEAD 78faf3d) and n (page-locked host copies), both with lab.patch: each timed
generation's TPOT next to the same steps replayed back to back (one sync at the end), without
and with the device argmax. Run 2: b (page-locked copies) and n (+ greedy runs decoded ahead,
the prompt's argmax on the device)."""
import collections
import re


def bench_rows(path):
    rows, build = collections.defaultdict(list), None
    for line in open(path):
        if line.startswith("=="):
            build = line.split()[1]
        elif build and re.match(r"\w+ \d+ [\d.]+ [\d.]+$", line.strip()):
            kv, ctx, ttft, tpot = line.split()
            rows[(build, kv, int(ctx))].append((float(ttft), float(tpot)))
    return rows


def mean(v):
    return sum(v) / len(v)


for path in ["run1_times.txt", "run2_times.txt"]:
    rows = bench_rows(path)
    print(f"{path}: mean of the rounds' medians, TTFT ms / TPOT ms")
    for kv, ctx in sorted({(k[1], k[2]) for k in rows}, key=lambda x: (["full", "snapkv", "h2o"].index(x[0]), x[1])):
        b, n = rows[("b", kv, ctx)], rows[("n", kv, ctx)]
        tb, tn = mean([x[1] for x in b]), mean([x[1] for x in n])
        fb, fn = mean([x[0] for x in b]), mean([x[0] for x in n])
        print(f"  {kv:7} {ctx:5}  b {fb:6.2f} / {tb:.3f}   n {fn:6.2f} / {tn:.3f}"
              f"   TTFT {100 * (fn / fb - 1):+.1f} %  TPOT {100 * (tn / tb - 1):+.1f} %")

# Run 1's lab lines, in the bench's order: full, snapkv, h2o; each at 512 then 1920; four
# generations each (the warm-up, then 3 timed).
order = [(kv, ctx) for kv in ("full", "snapkv", "h2o") for ctx in (512, 1920)]
lab, build, i = collections.defaultdict(list), None, 0
for line in open("run1_times.txt"):
    if line.startswith("=="):
        build, i = line.split()[1], 0
    elif line.startswith("LAB"):
        v = dict(zip(line.split()[2::2], map(float, line.split()[3::2])))
        lab[(build,) + order[i // 4]].append(v)
        i += 1
print("\nrun 1: TPOT against the same steps replayed back to back, ms (mean of 12 generations)")
print("  build kv      ctx    TPOT  replay  +argmax  host share")
for key in sorted(lab, key=lambda k: (k[0], order.index(k[1:]))):
    v = lab[key]
    t, r, a = (mean([x[f] for x in v]) for f in ("tpot_ms", "replay_ms", "replay_topk_ms"))
    print(f"  {key[0]:5} {key[1]:7} {key[2]:5} {t:.3f}  {r:.3f}   {a:.3f}   {1e3 * (t - a):5.1f} us")

# Runs 4 and 5: nvidia-smi every 50 ms beside copies alone, decode alone and prefill alone (run4_marks.txt
# brackets each; within a bracket, the samples of the busy part: instant power over 300 W).
import os


def seconds(stamp):
    h, m, s = stamp.split(" ")[1].split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def power(run, kinds):
    print(f"\n{run}: the board while only one kind of work runs (samples with instant power > 300 W)")
    marks = [line.split(" ", 2) for line in open(f"{run}_marks.txt")]
    at = {kind.strip(): seconds(f"{d} {t}") for d, t, kind in marks}
    samples = []
    for line in list(open(f"{run}_power.csv"))[1:]:
        f = [x.strip() for x in line.split(",")]
        samples.append((seconds(f[0]), float(f[1].split()[0]), float(f[3].split()[0]), f[6]))
    for kind in kinds:
        busy = [s for s in samples if at[f"{kind} start"] <= s[0] <= at[f"{kind} end"] and s[1] > 300]
        capped = sum(1 for s in busy if int(s[3], 16) & 0x4)
        print(f"  {kind:8} {len(busy):3} samples: power {mean([s[1] for s in busy]):5.0f} W "
              f"({min(s[1] for s in busy):.0f}-{max(s[1] for s in busy):.0f}), SM clock "
              f"{mean([s[2] for s in busy]):5.0f} MHz ({min(s[2] for s in busy):.0f}-"
              f"{max(s[2] for s in busy):.0f}), software power cap in {capped}")
    for out in ("copy", "products", "decode"):
        if os.path.exists(f"{run}_{out}.txt"):
            print("  " + open(f"{run}_{out}.txt").read().strip().split("\n")[-1])


power("run4", ("copy", "decode", "prefill"))
if os.path.exists("run5_marks.txt"):
    power("run5", ("copy", "products", "decode"))
