#!/usr/bin/env bash
# Run 5: rotary folded into the prefill attention (b, this tree: prefill_rotary.patch). Over an
# fp16 cache a prompt's attention takes its queries, keys and values from the QKV product,
# rotates them in shared memory and appends its own rows to the cache, so no rotary kernel runs
# before it (RK_PF_ROT=0 keeps the rotary launch, for the same binary). a is the tree before.
# b's attention tests (quick: they include the prefill rotary cases) and the CUDA-vs-CPU
# logits; the prefill attention alone under ncu at 512 and 1920; TTFT in three alternating
# rounds of a, b and b with RK_PF_ROT=0. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/b; mkdir -p /tmp/b
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/b
cp -r /tmp/b /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/prefill_attn_h200/prefill_rotary.patch > /dev/null) || { echo "reverse patch failed"; exit 1; }
(cd /tmp/a && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j7 --target rankkv-bench > /tmp/build_a.log 2>&1 || echo "build a failed") &
(cd /tmp/b && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j9 --target rankkv-bench rankkv-make-random-model test_cuda_attention test_cuda_vs_cpu > /tmp/build_b.log 2>&1 || { echo "build b failed"; grep error /tmp/build_b.log | head; }) &
wait; echo "built at $SECONDS s"
cd /tmp/b
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
{
timeout 60 ./build/bin/test_cuda_attention --quick > /tmp/t.txt 2>&1; echo "test_cuda_attention --quick rc=$? $(tail -1 /tmp/t.txt) at $SECONDS s"
grep -E "^rotary" /tmp/t.txt
timeout 100 ./build/bin/test_cuda_vs_cpu build/random-pythia-2.8b > /tmp/t.txt 2>&1; echo "test_cuda_vs_cpu rc=$? at $SECONDS s"; tail -3 /tmp/t.txt
} 2>&1 | tee $R/run5_tests.txt
M="--model /tmp/b/build/random-pythia-2.8b --target cuda"
for d in a b; do
  timeout 60 ncu --clock-control none --kernel-name regex:"prefill_kernel|qkv_rotary" --metrics gpu__time_duration.sum --csv /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 1 --kv full --repeats 1 > /tmp/ncu_$d.csv 2> /tmp/ncu.err
  echo "ncu $d rc=$? at $SECONDS s"
done
(cd /tmp && tar -cJf $R/run5_ncu.tar.xz ncu_a.csv ncu_b.csv)
for round in 1 2 3; do for d in a b b0; do
  [ $SECONDS -gt 330 ] && break 2
  bin=/tmp/${d:0:1}/build/bin/rankkv-bench
  RK_PF_ROT=$([ $d = b0 ] && echo 0 || echo 1) timeout 40 $bin $M --prompt-tokens 512,1920 --new-tokens 1 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/dev/null
  echo "== $d round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6}' /tmp/bt.txt
done; done 2>&1 | tee $R/run5_ttft.txt
echo "done at $SECONDS s"
