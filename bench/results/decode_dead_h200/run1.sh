#!/usr/bin/env bash
# Run 1: decode split blocks past the step's rows leave before they wait for the previous
# kernel, instead of after, so that they hold no SM slot beside it (at cap 2048 and 512-640
# cached rows, 5 of a head's 8 blocks). c is this tree, with dead_blocks.patch applied
# (git apply); a is it without. c's attention tests; TPOT in four alternating rounds.
# Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c; mkdir -p /tmp/c
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/c
cp -r /tmp/c /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/decode_dead_h200/dead_blocks.patch > /dev/null) || { echo "patch failed"; exit 1; }
T="rankkv-bench rankkv-make-random-model test_cuda_attention"
for d in a c; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
M="--model /tmp/rnd --target cuda"
for round in 1 2 3 4; do for d in a c; do
  timeout 60 /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/dev/null
  echo "== $d round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_tpot.txt
(cd /tmp/c && timeout 150 ./build/bin/test_cuda_attention > /tmp/t.txt 2>&1; echo "c: test_cuda_attention rc=$? $(tail -1 /tmp/t.txt) at $SECONDS s"; grep -i fail /tmp/t.txt | head) 2>&1 | tee $R/run1_tests.txt
echo "done at $SECONDS s"
