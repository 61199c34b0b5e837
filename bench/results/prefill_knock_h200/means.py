#!/usr/bin/env python3
"""Mean TTFT (ms) over the rounds of this folder's runs, and what each launch left out saved,
in µs a layer (32 layers): knock.txt (consumers read zeros), knock2.txt (consumers read the
last real pass's output), ln_rows.txt (the LayerNorm shapes by prompt length).
Usage: python3 means.py"""
import collections
import os
import re

here = os.path.dirname(os.path.abspath(__file__))
LAYERS = 32


def knock_zeros(path):
    ttft, variant = collections.defaultdict(list), None
    for line in open(path):
        m = re.match(r"== (\S+) round", line)
        if m:
            variant = m.group(1)
            continue
        f = line.split()
        if variant and len(f) == 5:
            ttft[(variant, int(f[1]))].append(float(f[2]))
    return ttft


def tagged(path, tag):
    ttft = collections.defaultdict(list)
    for line in open(path):
        f = line.split()
        if len(f) == 5 and f[0] == tag:
            ttft[(f[1], int(f[3]))].append(float(f[4]))
    return ttft


def saved(ttft, title):
    print(title)
    mean = {k: sum(v) / len(v) for k, v in ttft.items()}
    for (variant, prompt) in sorted(mean, key=lambda k: (k[1], k[0])):
        base = mean[("none", prompt)]
        print("  %-7s %5d  %6.2f ms  saved %6.1f us a layer  (%s)" % (
            variant, prompt, mean[(variant, prompt)],
            1000 * (base - mean[(variant, prompt)]) / LAYERS,
            " ".join("%.2f" % t for t in ttft[(variant, prompt)])))


saved(knock_zeros(os.path.join(here, "knock.txt")), "knock.txt: left out of every prefill")
saved(tagged(os.path.join(here, "knock2.txt"), "knock"),
      "knock2.txt: left out from the second prefill on")
print("ln_rows.txt: TTFT, block a row (rows 100000) against a warp a row (rows 64)")
rows = tagged(os.path.join(here, "ln_rows.txt"), "rows")
for prompt in sorted({p for _, p in rows}):
    block, warp = (sum(rows[(r, prompt)]) / len(rows[(r, prompt)]) for r in ("100000", "64"))
    print("  %5d  %6.2f  %6.2f ms  (%+.1f %%)" % (prompt, block, warp, 100 * (warp / block - 1)))
