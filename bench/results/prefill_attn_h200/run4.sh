#!/usr/bin/env bash
# Run 4: e, this tree: snake.patch (run 3's c) and stages.patch (the prefill's fp16 tiles in a
# ring of three buffers up to head size 128, loads two tiles ahead, one barrier a tile), against
# c (e without stages.patch) and a (c without snake.patch). e's attention tests; the prefill
# attention alone under ncu at 512, 1024 and 1920 for each; TTFT in three alternating rounds.
# Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; D=$P/bench/results/prefill_attn_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c /tmp/e; mkdir -p /tmp/e
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/e
cp -r /tmp/e /tmp/c && (cd /tmp/c && patch -R -p1 < $D/stages.patch > /dev/null) || { echo "patch c failed"; exit 1; }
cp -r /tmp/c /tmp/a && (cd /tmp/a && patch -R -p1 < $D/snake.patch > /dev/null) || { echo "patch a failed"; exit 1; }
T="rankkv-bench rankkv-make-random-model test_cuda_attention"
for d in a c e; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j5 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
(cd /tmp/e && timeout 150 ./build/bin/test_cuda_attention > /tmp/t.txt 2>&1; echo "e: test_cuda_attention rc=$? $(tail -1 /tmp/t.txt) at $SECONDS s") | tee $R/run4_tests.txt
M="--model /tmp/rnd --target cuda"
for d in a c e; do
  timeout 60 ncu --clock-control none --kernel-name regex:prefill_kernel --metrics gpu__time_duration.sum --csv /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1024,1920 --new-tokens 1 --kv full --repeats 1 > /tmp/ncu_$d.csv 2> /tmp/ncu.err
  echo "ncu $d rc=$? at $SECONDS s"
done
(cd /tmp && tar -cJf $R/run4_ncu.tar.xz ncu_a.csv ncu_c.csv ncu_e.csv)
for round in 1 2 3; do for d in a c e; do
  [ $SECONDS -gt 540 ] && break 2
  timeout 40 /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 1 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/dev/null
  echo "== $d round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6}' /tmp/bt.txt
done; done 2>&1 | tee $R/run4_ttft.txt
echo "done at $SECONDS s"
