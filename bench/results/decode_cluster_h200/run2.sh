#!/usr/bin/env bash
# Run 2: why run 1's cluster-merged decode attention was slower. This tree is cluster2.patch:
# run 1's patch with block 0 reading every block's partial in one round of distributed
# shared-memory loads, and, below 1024 cached rows, the next kernel let launch after the
# cluster's first barrier instead of at the end. RK_DECODE_FUSE picks, in one binary:
# 1 the merge in the split kernel (clusters), 2 the two kernels with the split launched as
# clusters (what the cluster launch alone costs), 0 the two kernels as landed.
# Quick attention tests of 1 and 2; the decode kernels alone under ncu; TPOT in alternating
# rounds. Run on a tree with cluster2.patch applied (git apply); carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/c; mkdir -p /tmp/c
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/c
T="rankkv-bench rankkv-make-random-model test_cuda_attention"
(cd /tmp/c && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j16 --target $T > /tmp/build_c.log 2>&1) || { echo "build failed"; grep error /tmp/build_c.log | head; exit 1; }
echo "built at $SECONDS s"
/tmp/c/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
for f in 1 2; do (cd /tmp/c && RK_DECODE_FUSE=$f timeout 60 ./build/bin/test_cuda_attention --quick > /tmp/t.txt 2>&1; echo "fuse $f: test_cuda_attention --quick rc=$? $(tail -1 /tmp/t.txt) at $SECONDS s"; grep -i fail /tmp/t.txt | head); done 2>&1 | tee $R/run2_tests.txt
M="--model /tmp/rnd --target cuda"
for f in 0 1 2; do
  RK_DECODE_FUSE=$f timeout 60 ncu --clock-control none --kernel-name regex:decode_ --metrics gpu__time_duration.sum --csv /tmp/c/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 3 --kv full,snapkv --kv-budget 512 --repeats 1 > /tmp/ncu_$f.csv 2> /tmp/ncu.err
  echo "ncu $f rc=$? at $SECONDS s"; tail -2 /tmp/ncu.err
done
(cd /tmp && tar -cJf $R/run2_ncu.tar.xz ncu_0.csv ncu_1.csv ncu_2.csv)
for round in 1 2 3; do for f in 1 2 0; do
  [ $SECONDS -gt 500 ] && break 2
  RK_DECODE_FUSE=$f timeout 60 /tmp/c/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/dev/null
  echo "== fuse $f round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run2_tpot.txt
echo "done at $SECONDS s"
