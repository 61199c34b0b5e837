#!/usr/bin/env bash
# A = HEAD; L = lab.patch (merge triggers the sum before it waits when *pos >= RK_EARLY_KEYS;
# RK_KW32: 32-key decode slices for caps <= 1024); E = L + staged.patch (fc2 streamed first).
set -uo pipefail
H=$PWD/.carry/h12
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S $R /tmp/bins
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cd $S
cmake -S . -B build >/dev/null 2>&1
B() { cmake --build build -j16 --target rankkv-bench rankkv-make-random-model test_cuda_gemv test_cuda_attention > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }; mkdir -p /tmp/bins/$1; cp build/bin/rankkv-bench build/bin/test_cuda_gemv build/bin/test_cuda_attention /tmp/bins/$1/; echo "built $1 at $SECONDS s"; }
B a
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1 &
patch -p1 < $H/lab.patch > /dev/null || exit 1; B l
patch -p1 < $H/staged.patch > /dev/null || exit 1; B e
wait
for v in "RK_EARLY_KEYS=0" "RK_KW32=1 RK_EARLY_KEYS=99999999"; do env $v /tmp/bins/l/test_cuda_attention > /tmp/t.log 2>&1; echo "l [$v] test_cuda_attention rc=$? $(tail -1 /tmp/t.log)"; done 2>&1 | tee $R/tests.txt
run() { local name=$1 bin=$2; shift 2
  env "$@" timeout 80 /tmp/bins/$bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1024,1920 --new-tokens 128 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $name round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt; }
for round in 1 2; do
  run A a X=1
  run B_early_always l RK_EARLY_KEYS=0
  run F_kw32_late l RK_KW32=1 RK_EARLY_KEYS=99999999
  run G_kw32_early1024 l RK_KW32=1 RK_EARLY_KEYS=1024
  run C_staged_early e RK_EARLY_KEYS=0
  run S_staged_late e RK_EARLY_KEYS=99999999
done 2>&1 | tee $R/ab.txt
echo "done at $SECONDS s"
