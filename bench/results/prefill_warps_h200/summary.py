#!/usr/bin/env python3
"""Prints every mean the README quotes from this folder's run 2: TTFT / TPOT in ms, the mean over
the rounds of each build's medians (run2_times.txt: h = fea786e's code, n = h + warps.patch, the
prefill attention over fp16 caches in blocks of 8 warps). Run 1's n did not build (run1.sh's
output is in its files). The means are ../decode_norm_h200/summary.py's."""
import os, sys

sys.dont_write_bytecode = True

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "decode_norm_h200"))
from summary import report  # noqa: E402

report(os.path.join(here, "run2_times.txt"), ["h", "n"])
