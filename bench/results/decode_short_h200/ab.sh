#!/usr/bin/env bash
# A = HEAD, B = merge allows the sum to launch before it waits, C = B + fc2's weights streamed
# before the wait (staged.patch). Builds made one after another in one tree; binaries alternate.
set -uo pipefail
H=$PWD/.carry/h12
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S $R /tmp/bins
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cd $S
cmake -S . -B build >/dev/null 2>&1
B() { cmake --build build -j16 --target rankkv-bench rankkv-make-random-model test_cuda_gemv test_cuda_vs_cpu > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }; mkdir -p /tmp/bins/$1; cp build/bin/rankkv-bench build/bin/test_cuda_gemv build/bin/test_cuda_vs_cpu /tmp/bins/$1/; echo "built $1 at $SECONDS s"; }
B a
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1 &
patch -p1 < $H/merge_early.patch > /dev/null || exit 1; B b
patch -p1 < $H/staged.patch > /dev/null || exit 1; B c
wait
for t in b c; do for x in test_cuda_gemv test_cuda_vs_cpu; do timeout 120 /tmp/bins/$t/$x > /tmp/t.log 2>&1; echo "$t $x rc=$? $(tail -1 /tmp/t.log)"; done; done 2>&1 | tee $R/tests.txt
for round in 1 2; do for t in a b c; do
  timeout 60 /tmp/bins/$t/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/ab.txt
echo "done at $SECONDS s"
