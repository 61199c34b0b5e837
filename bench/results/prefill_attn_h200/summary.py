#!/usr/bin/env python3
"""Prints the mean ncu time of the prefill attention kernel by launch shape (grid, block) for
each build or variant of run 1 (RK_PF=0..6, shapes.patch), run 2 (a: before, b: key groups),
run 3 (a, c: snake.patch), run 4 (a, c, e: c with stages.patch) and run 5 (a, b:
prefill_rotary.patch; grids (512, 1, 1) and (1920, 1, 1) there are a's rotary kernel), and the
TTFT means of their alternating rounds (run 5's b0: b with RK_PF_ROT=0)."""
import collections, csv, io, re, sys, tarfile

def ncu_means(tarball):
    out = {}
    with tarfile.open(tarball) as t:
        for m in sorted(t.getmembers(), key=lambda m: m.name):
            rows = list(csv.reader(io.TextIOWrapper(t.extractfile(m))))
            hdr, d = None, collections.defaultdict(list)
            for r in rows:
                if 'Kernel Name' in r:
                    hdr = r
                    continue
                if hdr and len(r) == len(hdr):
                    x = dict(zip(hdr, r))
                    v = float(x['Metric Value'].replace(',', ''))
                    if x['Metric Unit'] in ('ns', 'nsecond'):
                        v /= 1000
                    d[(x['Grid Size'], x['Block Size'])].append(v)
            out[m.name] = {k: sum(a) / len(a) for k, a in d.items()}
    return out

def ttft_means(path):
    d, cur = collections.defaultdict(list), None
    for line in open(path):
        m = re.match(r'== (\S+) round', line)
        if m:
            cur = m.group(1)
            continue
        f = line.split()
        if cur and len(f) == 3:
            d[(cur, f[0], f[1])].append(float(f[2]))
    return {k: sum(a) / len(a) for k, a in d.items()}

for run in (1, 2, 3, 4, 5):
    print(f'run {run}: prefill attention alone under ncu, us a layer (mean of its 64 launches)')
    for name, shapes in ncu_means(f'run{run}_ncu.tar.xz').items():
        print(' ', name, ' '.join(f'grid{g} block{b}: {v:.1f}' for (g, b), v in sorted(shapes.items())))
    print(f'run {run}: TTFT ms, mean of the alternating rounds')
    for (who, kv, ctx), v in sorted(ttft_means(f'run{run}_ttft.txt').items()):
        print(f'  {who:10s} {kv:7s} {ctx:5s} {v:.2f}')
