#!/usr/bin/env bash
# a = HEAD; j = gemv_j (gemv_job's extra field only); w = gemv_w (feature off);
# aE, wE: the same binaries with CUDA_MODULE_LOADING=EAGER (every kernel placed at start-up).
set -uo pipefail
H=$PWD/bench/results/decode_ready_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
for d in a j w; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; [ $d = a ] || (cd /tmp/$d && patch -p1 < $H/gemv_$d.patch > /dev/null) || { echo "patch $d failed"; exit 1; }; done
for d in a j w; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench $( [ $d = a ] && echo rankkv-make-random-model) > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done; wait
echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1; echo "model at $SECONDS s"
for round in 1 2 3; do for t in a aE j w wE; do
  d=${t%E}; [ $t = $d ] && L=LAZY || L=EAGER
  CUDA_MODULE_LOADING=$L timeout 60 /tmp/$d/build/bin/rankkv-bench --model /tmp/rnd --target cuda --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/b.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; [ $SECONDS -gt 400 ] && break; done 2>&1 | tee $R/run4.txt
echo "done at $SECONDS s"
