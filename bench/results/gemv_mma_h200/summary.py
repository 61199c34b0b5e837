"""The MMA lab's power phases: nvidia-smi's samples between each phase's start and end lines in
run1_lab.txt (instant power over 300 W), beside the lab's own timings. Run from this folder."""


def seconds(stamp):
    h, m, s = stamp.split(" ")[1].split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def mean(v):
    return sum(v) / len(v)


import re

lab = open("run1_lab.txt").read().splitlines()
stamped = re.compile(r"\d{4}/\d\d/\d\d ")
for line in lab:
    if not stamped.match(line):
        print(line)
at = {}
for line in lab:
    if stamped.match(line):
        f = line.split(" ")
        at[(f[2], f[3].rstrip(":"))] = seconds(f"{f[0]} {f[1]}")
samples = []
for line in list(open("run1_power.csv"))[1:]:
    f = [x.strip() for x in line.split(",")]
    samples.append((seconds(f[0]), float(f[1].split()[0]), float(f[3].split()[0]), f[6]))
print("\npower while each chain runs alone (samples with instant power > 300 W)")
for phase in ("landed", "mma"):
    busy = [s for s in samples if at[(phase, "start")] <= s[0] <= at[(phase, "end")] and s[1] > 300]
    capped = sum(1 for s in busy if int(s[3], 16) & 0x4)
    print(f"  {phase:7} {len(busy):3} samples: power {mean([s[1] for s in busy]):5.0f} W "
          f"({min(s[1] for s in busy):.0f}-{max(s[1] for s in busy):.0f}), SM clock "
          f"{mean([s[2] for s in busy]):5.0f} MHz ({min(s[2] for s in busy):.0f}-"
          f"{max(s[2] for s in busy):.0f}), software power cap in {capped}")
    print("   " + next(l for l in lab if f" {phase} end" in l))
