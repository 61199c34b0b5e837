#!/usr/bin/env python3
"""Prints every mean the README quotes from this folder's run: TTFT / TPOT in ms, the mean over
the rounds of each build's medians (run1_times.txt: h = c340441's code, n = h + append.patch, the
quantized caches' rotary + append with every element's loads before its stores and the step's
positions read before the wait). The means are ../decode_norm_h200/summary.py's."""
import os, sys

sys.dont_write_bytecode = True

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "decode_norm_h200"))
from summary import report  # noqa: E402

report(os.path.join(here, "run1_times.txt"), ["h", "n"])
