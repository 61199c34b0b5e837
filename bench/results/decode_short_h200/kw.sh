#!/usr/bin/env bash
# A = HEAD (e689c88), K = HEAD + kw32_all.patch (32-key decode slices at every cache length).
set -uo pipefail
H=$PWD/.carry/h12
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S $R /tmp/bins
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cd $S
cmake -S . -B build >/dev/null 2>&1
B() { cmake --build build -j16 --target rankkv-bench rankkv-make-random-model test_cuda_attention > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }; mkdir -p /tmp/bins/$1; cp build/bin/rankkv-bench build/bin/test_cuda_attention /tmp/bins/$1/; echo "built $1 at $SECONDS s"; }
B a
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
patch -p1 < $H/kw32_all.patch > /dev/null || exit 1; B k
timeout 100 /tmp/bins/k/test_cuda_attention > /tmp/t.log 2>&1; echo "k test_cuda_attention rc=$? $(tail -1 /tmp/t.log)"; grep "timing decode" /tmp/t.log
grep "timing decode" /dev/null
for round in 1 2; do for t in a k; do
  timeout 80 /tmp/bins/$t/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1024,1920 --new-tokens 128 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/kw.txt
echo "done at $SECONDS s"
