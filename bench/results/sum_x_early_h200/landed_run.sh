#!/usr/bin/env bash
# A = 10692c7 (sum's second input fetched after the wait), P = the working tree (fetched before
# it): #15 bench alternated, P's repeats-5 run is the record; test_cuda_gemv, its negative
# control (the middle kernel allowing the sum to launch before it waits), memcheck.
set -uo pipefail
H=$PWD/.carry/h11; P=${RANKKV_P:?}
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S /tmp/a $R
tar --exclude=./.carry -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a/ && tar -xf $H/base.tar -C /tmp/a
grep -c ldcg /tmp/a/kernels/gemv.cu $S/kernels/gemv.cu
(cd /tmp/a && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench > /tmp/build_a.log 2>&1) &
(mkdir -p /tmp/neg && sed -e '/^__global__ void waiting_middle/,/^}/{s/rk_wait_previous();/rk_allow_next_X();/;s/rk_allow_next();/rk_wait_previous();/;s/rk_allow_next_X();/rk_allow_next();/}' $S/test/test_cuda_gemv.cu > /tmp/neg/neg.cu && grep -A5 "^__global__ void waiting_middle" /tmp/neg/neg.cu && nvcc -O3 -arch=sm_90a -std=c++17 -I$S/kernels -I$S/test /tmp/neg/neg.cu $S/kernels/gemv.cu -o /tmp/neg/neg > /tmp/neg/build.log 2>&1; echo "neg built rc=$?") &
cd $S && mkdir -p bench/results
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j9 > /tmp/build_p.log 2>&1 || { grep -E "error" /tmp/build_p.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
wait
ls /tmp/a/build/bin/rankkv-bench || { tail -20 /tmp/build_a.log; exit 1; }
echo "built at $SECONDS s"
for rep in 3 5; do for t in a p; do
  case $t in a) BIN=/tmp/a/build/bin/rankkv-bench; export RANKKV_COMMIT=10692c7;; p) BIN=./build/bin/rankkv-bench; export RANKKV_COMMIT=$P;; esac
  OUTF=bench/results/r_${t}_$rep.json; [ $t = p ] && [ $rep = 5 ] && OUTF=bench/results/cuda_h200.json
  timeout 100 $BIN --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats $rep --out $OUTF > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t ($RANKKV_COMMIT) repeats $rep rc=$? at $SECONDS s"; awk '{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/bench.txt
unset RANKKV_COMMIT
cp bench/results/cuda_h200.json $R/cuda_h200.json; cp bench/results/r_a_5.json $R/bench_10692c7.json
./build/bin/test_cuda_gemv > $R/gemv.log 2>&1; echo "test_cuda_gemv rc=$?: $(tail -1 $R/gemv.log)"
for i in 1 2 3; do /tmp/neg/neg > $R/neg_$i.log 2>&1; echo "negative control run $i rc=$?: $(grep -c 'round' $R/neg_$i.log) rounds off; $(tail -1 $R/neg_$i.log)"; done
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/mc0.log 2>&1; echo "memcheck gemv rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc0.log | tail -1)"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/rankkv-generate --target cuda --max-new-tokens 8 > /tmp/mc2.log 2>&1; echo "memcheck generate nano rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc2.log | tail -1)"
echo "done at $SECONDS s"
