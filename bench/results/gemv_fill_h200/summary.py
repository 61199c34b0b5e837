#!/usr/bin/env python3
"""Prints every mean the README quotes from this folder's runs: TTFT / TPOT in ms, the mean over
the rounds of each build's medians (run1_times.txt: h = HEAD, v0..v3 = HEAD + fill.patch with
RK_LAB_XFILL 0..3; run2_times.txt: h = HEAD, n = landed.patch, l1 and l2 = n + lab2.patch with
RK_LAB_XFILL 1 and 2). The means are ../decode_norm_h200/summary.py's."""
import os, sys

sys.dont_write_bytecode = True

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "decode_norm_h200"))
from summary import report  # noqa: E402

report(os.path.join(here, "run1_times.txt"), ["h", "v0", "v1", "v2", "v3"])
report(os.path.join(here, "run2_times.txt"), ["h", "n", "l1", "l2"])
