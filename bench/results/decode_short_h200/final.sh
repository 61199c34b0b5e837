#!/usr/bin/env bash
# A = 42d78ec (kernels/, test/ from base.tar), P = the working tree: #15 bench alternated (P's
# repeats-5 run is the record), GPU tests, memcheck, racecheck, then the order test's negative control.
set -uo pipefail
H=$PWD/.carry/h12; P=${RANKKV_P:?}
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S /tmp/a $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a/ && tar -xf $H/base.tar -C /tmp/a
grep -c kEarlyMergeRows /tmp/a/kernels/attention_kernels.cuh $S/kernels/attention_kernels.cuh
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
(cd /tmp/a && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j4 --target rankkv-bench > /tmp/build_a.log 2>&1) &
cd $S && mkdir -p bench/results
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j12 > /tmp/build_p.log 2>&1 || { grep -E "error" /tmp/build_p.log | head -30; exit 1; }
echo "built p at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
wait
ls /tmp/a/build/bin/rankkv-bench > /dev/null || { tail -20 /tmp/build_a.log; exit 1; }
echo "built at $SECONDS s"
for rep in 3 5; do for t in a p; do
  case $t in a) BIN=/tmp/a/build/bin/rankkv-bench; export RANKKV_COMMIT=42d78ec;; p) BIN=./build/bin/rankkv-bench; export RANKKV_COMMIT=$P;; esac
  OUTF=bench/results/r_${t}_$rep.json; [ $t = p ] && [ $rep = 5 ] && OUTF=bench/results/cuda_h200.json
  timeout 100 $BIN --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats $rep --out $OUTF > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t ($RANKKV_COMMIT) repeats $rep rc=$? at $SECONDS s"; awk '{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/bench.txt
unset RANKKV_COMMIT
cp bench/results/cuda_h200.json $R/cuda_h200.json; cp bench/results/r_a_5.json $R/bench_42d78ec.json; cp bench/results/r_a_3.json $R/bench3_42d78ec.json; cp bench/results/r_p_3.json $R/bench3_$P.json
timeout 250 ctest --test-dir build -L gpu -j4 --output-on-failure > $R/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed|DIFFERS" $R/gpu.log | cut -c1-160 | head -30
./build/bin/test_cuda_gemv > $R/gemv.log 2>&1; echo "test_cuda_gemv rc=$?: $(tail -1 $R/gemv.log)"
./build/bin/test_cuda_attention > $R/attention.log 2>&1; echo "test_cuda_attention rc=$?: $(tail -1 $R/attention.log)"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/mc0.log 2>&1; echo "memcheck gemv rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc0.log | tail -1)"
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_attention --quick > /tmp/mc1.log 2>&1; echo "memcheck attention --quick rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc1.log | tail -1)"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/rankkv-generate --target cuda --max-new-tokens 8 > /tmp/mc2.log 2>&1; echo "memcheck generate nano rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc2.log | tail -1)"
timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/rc0.log 2>&1; echo "racecheck gemv rc=$? at $SECONDS s: $(grep SUMMARY /tmp/rc0.log | tail -1)"
patch -p1 < $H/neg.patch > /dev/null && cmake --build build -j12 --target test_cuda_gemv > /dev/null 2>&1
for i in 1 2; do ./build/bin/test_cuda_gemv > $R/negative_control_$i.txt 2>&1; echo "negative control $i rc=$? (expect failures): $(tail -1 $R/negative_control_$i.txt)"; done
echo "done at $SECONDS s"
