#!/usr/bin/env bash
# Run 1: the decode attention's merge inside the split kernel. c is this tree with cluster.patch:
# a head's blocks along the cache are one thread-block cluster, each block merges its warps'
# partials in shared memory and block 0 merges the blocks' through distributed shared memory,
# so no merge kernel runs (RK_DECODE_FUSE=0 keeps the two kernels in the same binary). a is
# the tree without the patch. c's attention tests and CUDA-vs-CPU; the decode kernels alone
# under ncu; TPOT in alternating rounds of a, c and c with RK_DECODE_FUSE=0.
# Run on a tree with cluster.patch applied (git apply); carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c; mkdir -p /tmp/c
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/c
cp -r /tmp/c /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/decode_cluster_h200/cluster.patch > /dev/null) || { echo "patch failed"; exit 1; }
(cd /tmp/c && patch --dry-run -R -p1 < $P/bench/results/decode_cluster_h200/cluster.patch > /dev/null) || { echo "c is not the patched tree"; exit 1; }
T="rankkv-bench rankkv-make-random-model test_cuda_attention test_cuda_vs_cpu"
for d in a c; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
(cd /tmp/c && timeout 150 ./build/bin/test_cuda_attention > /tmp/t.txt 2>&1; echo "c: test_cuda_attention rc=$? $(tail -1 /tmp/t.txt) at $SECONDS s"
 grep -i fail /tmp/t.txt | head -20
 timeout 90 ./build/bin/test_cuda_vs_cpu > /tmp/t2.txt 2>&1; echo "c: test_cuda_vs_cpu rc=$? $(tail -1 /tmp/t2.txt) at $SECONDS s"
 grep -i fail /tmp/t2.txt | head -20) 2>&1 | tee $R/run1_tests.txt
M="--model /tmp/rnd --target cuda"
for d in a c; do
  timeout 60 ncu --clock-control none --kernel-name regex:decode_ --metrics gpu__time_duration.sum --csv /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 3 --kv full,snapkv --kv-budget 512 --repeats 1 > /tmp/ncu_$d.csv 2> /tmp/ncu.err
  echo "ncu $d rc=$? at $SECONDS s"; tail -2 /tmp/ncu.err
done
(cd /tmp && tar -cJf $R/run1_ncu.tar.xz ncu_a.csv ncu_c.csv)
for round in 1 2 3; do for d in a c c0; do
  [ $SECONDS -gt 530 ] && break 2
  b=/tmp/${d:0:1}/build/bin/rankkv-bench; f=1; [ $d = c0 ] && f=0
  RK_DECODE_FUSE=$f timeout 60 $b $M --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/dev/null
  echo "== $d round $round rc=$? at $SECONDS s"; cat /tmp/bt.txt
done; done 2>&1 | tee $R/run1_tpot.txt
echo "done at $SECONDS s"
