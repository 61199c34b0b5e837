#!/usr/bin/env bash
# A = df8be35 (fc2 input before the wait), P = the working tree (B-first sum, staging 4 loads in flight): bench A/B, GPU tests.
set -uo pipefail
H=$PWD/.carry/h11; P=${RANKKV_P:?}
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S /tmp/a $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a/ && tar -xf $H/base3.tar -C /tmp/a
grep -c part_barrier /tmp/a/kernels/gemv.cu $S/kernels/gemv.cu
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T4 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
(cd /tmp/a && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench > /tmp/build_a.log 2>&1) &
cd $S && mkdir -p bench/results
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j10 > /tmp/build_p.log 2>&1 || { grep -E "error" /tmp/build_p.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
wait
ls /tmp/a/build/bin/rankkv-bench || { tail -20 /tmp/build_a.log; exit 1; }
echo "built at $SECONDS s"
for rep in 3 3; do for t in a p; do
  case $t in a) BIN=/tmp/a/build/bin/rankkv-bench; export RANKKV_COMMIT=df8be35;; p) BIN=./build/bin/rankkv-bench; export RANKKV_COMMIT=$P;; esac
  OUTF=bench/results/r_${t}.json
  timeout 100 $BIN --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats $rep --out $OUTF > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t ($RANKKV_COMMIT) repeats $rep rc=$? at $SECONDS s"; awk '{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/bench.txt
unset RANKKV_COMMIT
cp bench/results/r_a.json $R/bench_a.json; cp bench/results/r_p.json $R/bench_p.json
./build/bin/test_cuda_gemv > $R/gemv.log 2>&1; echo "test_cuda_gemv rc=$?: $(tail -1 $R/gemv.log)"
timeout 230 ctest --test-dir build -L gpu -j4 --output-on-failure > $R/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed|DIFFERS" $R/gpu.log | cut -c1-160 | head -30
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/mc0.log 2>&1; echo "memcheck gemv rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc0.log | tail -1)"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/rankkv-generate --target cuda --max-new-tokens 8 > /tmp/mc2.log 2>&1; echo "memcheck generate nano rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc2.log | tail -1)"
echo "done at $SECONDS s"
