#!/usr/bin/env python3
"""The hot path of the one-row products' loop in each build's SASS kept here: the pair
(gemv_kernel<false, 2, 5>) and the sum (gemv_kernel<false, 8, 7>). The loop is the span of the
kernel's last backward branch; its hot path runs from the loop's head to the first SHFL.BFLY
(a row's reduction, once a row). Per build: instructions on the hot path, the sum of their
stall counts (the control bits' fixed cycles, not waits on memory), those from the head to the
batch's last weight load (LDG), and where the first wait on the scoreboard that the weight loads
set comes, against the first weight load. Usage: python3 sass_loop.py"""
import glob
import lzma
import os
import re

KERNELS = {"pair": "gemv_kernelILb0ELi2ELi5E", "sum": "gemv_kernelILb0ELi8ELi7E"}
here = os.path.dirname(os.path.abspath(__file__))


def instructions(path, symbol):
    """(address, text, stall, write barrier, wait mask) of each instruction of SYMBOL."""
    out, inside, pending = [], False, None
    for line in lzma.open(path, "rt"):
        if "Function :" in line:
            inside = symbol in line
            continue
        if not inside:
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s*(.*?)\s*;\s*/\* 0x[0-9a-f]{16} \*/", line)
        if m:
            pending = (int(m.group(1), 16), m.group(2))
            continue
        m = re.match(r"\s*/\* (0x[0-9a-f]{16}) \*/", line)
        if m and pending:
            ctrl = int(m.group(1), 16) >> 41
            out.append(pending + (ctrl & 0xF, (ctrl >> 5) & 7, (ctrl >> 11) & 0x3F))
            pending = None
    return out


def hot_path(ins):
    head, end = None, None
    for addr, text, *_ in ins:
        m = re.search(r"BRA (0x[0-9a-f]+)", text)
        if m and int(m.group(1), 16) < addr:
            head, end = int(m.group(1), 16), addr
    body = [i for i in ins if head <= i[0] <= end]
    cut = next(n for n, i in enumerate(body) if "SHFL.BFLY" in i[1])
    return body[:cut]


for path in sorted(glob.glob(os.path.join(here, "*.sass.xz"))):
    for name, symbol in KERNELS.items():
        hot = hot_path(instructions(path, symbol))
        loads = [n for n, i in enumerate(hot) if "LDG" in i[1]]
        barrier = hot[loads[-1]][3]
        waiter = next(n for n, i in enumerate(hot) if i[4] >> barrier & 1)
        print("%-26s %-4s hot path %3d instructions, %4d stall cycles, %3d from the head to the"
              " last LDG; first wait for the loads at %d (%s), first LDG at %d" % (
                  os.path.basename(path), name, len(hot), sum(i[2] for i in hot),
                  sum(i[2] for i in hot[:loads[-1]]), waiter, hot[waiter][1].split()[0],
                  loads[0]))
