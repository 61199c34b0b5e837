"""Means of the prefill_wgmma_h200 runs: the attention alone (run 2, test_cuda_attention --time,
three rounds) and the TTFT in the step (runs 1 and 2). Run from this folder."""
import collections
import re

alone = collections.defaultdict(list)
for line in open("run2_time.txt"):
    m = re.match(r"(\w+) r\d timing prefill n=(\d+)\D.*?([\d.]+) us per layer", line)
    if m:
        alone[(m[1], int(m[2]))].append(float(m[3]))
print("attention alone, us a layer (mean of 3 rounds)")
print("build   512   1024   1920")
for build in ["b", "v0", "v1", "v2", "v3", "v4"]:
    print(f"{build:5}" + "".join(f"{sum(alone[(build, n)]) / len(alone[(build, n)]):7.1f}"
                                 for n in (512, 1024, 1920)))


def ttft(path):
    rows, build = collections.defaultdict(list), None
    for line in open(path):
        if line.startswith("=="):
            build = line.split()[1]
        elif build and re.match(r"\w+ \d+ [\d.]+ [\d.]+", line):
            kv, ctx, t, _ = line.split()
            rows[(build, kv, int(ctx))].append(float(t))
    return rows


for path in ["run1_times.txt", "run2_ttft.txt"]:
    rows = ttft(path)
    print(f"\nTTFT ms, {path} (mean over its rounds)")
    for key in sorted(rows):
        print(f"{key[0]:3} {key[1]:7} {key[2]:5} {sum(rows[key]) / len(rows[key]):7.2f}")
