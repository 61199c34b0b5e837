#!/usr/bin/env bash
# Timing lab: per-warp start / wait-passed / end times of the decode step's kernels, full cache.
# Run from the repository root at 9e2e677 with trace.patch applied (timing only; RK_TRACE=FILE turns
# it on), as 'bash .carry/h13/trace.sh'; unpack the traces (xz -d) and read them with
# trace_analysis.py (output trace.txt). Tracing costs 5-7 % of TPOT (the run's last lines).
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
cmake -S . -B build >/dev/null 2>&1
cmake --build build -j16 --target rankkv-bench rankkv-make-random-model > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
echo "ready at $SECONDS s"
for p in 512 1920; do
  RK_TRACE=/tmp/t$p.bin timeout 60 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens $p --new-tokens 16 --kv full --repeats 1 2>/tmp/err.txt | tail -2; grep "trace:" /tmp/err.txt
  xz -T8 -6 -c /tmp/t$p.bin > $R/trace_$p.bin.xz
done
timeout 60 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 16 --kv full --repeats 1 2>/dev/null | tail -3
ls -la $R; echo "done at $SECONDS s"
