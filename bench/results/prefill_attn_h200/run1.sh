#!/usr/bin/env bash
# Run 1: prefill attention shapes with more warps an SM (shapes.patch, timing only: RK_PF picks
# the head_dim-80 fp16 prefill's shape, 0 being HEAD's). Each variant: test_cuda_attention,
# then every prefill attention launch of a 512- and a 1920-token prefill under ncu, then TTFT
# in two alternating rounds. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/l; mkdir -p /tmp/l
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/l
cd /tmp/l && patch -p1 < $P/bench/results/prefill_attn_h200/shapes.patch > /dev/null || { echo "patch failed"; exit 1; }
git log --oneline -1 2>/dev/null
cmake -S . -B build > /dev/null 2>&1
cmake --build build -j16 --target rankkv-bench rankkv-make-random-model test_cuda_attention > /tmp/build.log 2>&1 || { grep error /tmp/build.log | head -20; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
echo "ready at $SECONDS s"
V="0 1 2 3 4 5 6"
for v in $V; do RK_PF=$v timeout 60 ./build/bin/test_cuda_attention > /tmp/t.txt 2>&1; echo "RK_PF=$v test_cuda_attention rc=$? $(tail -1 /tmp/t.txt) at $SECONDS s"; done | tee $R/tests.txt
M="--model /tmp/rnd --target cuda"
for v in $V; do
  RK_PF=$v timeout 60 ncu --clock-control none --kernel-name regex:prefill_kernel --metrics gpu__time_duration.sum --csv ./build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 1 --kv full --repeats 1 > $R/ncu_$v.csv 2> /tmp/ncu.err
  echo "ncu RK_PF=$v rc=$? at $SECONDS s"
done
for round in 1 2; do for v in $V; do
  [ $SECONDS -gt 520 ] && break 2
  RK_PF=$v timeout 40 ./build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 1 --kv full --repeats 3 > /tmp/bt.txt 2>/dev/null
  echo "== RK_PF=$v round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6}' /tmp/bt.txt
done; done 2>&1 | tee $R/ttft.txt
(cd $R && tar -cJf ncu.tar.xz ncu_*.csv && rm ncu_*.csv)
echo "done at $SECONDS s"
