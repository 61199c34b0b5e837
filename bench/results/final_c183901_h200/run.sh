#!/usr/bin/env bash
# The working tree: #15 bench record (repeats 5), GPU tests, no_malloc thrice, memcheck, racecheck.
set -uo pipefail
P=${RANKKV_P:?}
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T4 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
cd $S && mkdir -p bench/results
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j14 > /tmp/build_p.log 2>&1 || { grep -E "error" /tmp/build_p.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
wait
echo "built at $SECONDS s"
RANKKV_COMMIT=$P timeout 100 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > /tmp/b.txt 2>/tmp/bench.err
echo "== bench rc=$? at $SECONDS s"; awk '{print $4, $5, $6, $7, $NF}' /tmp/b.txt | tee $R/bench.txt
cp bench/results/cuda_h200.json $R/cuda_h200.json
./build/bin/test_cuda_gemv > $R/gemv.log 2>&1; echo "test_cuda_gemv rc=$?: $(tail -1 $R/gemv.log)"
timeout 250 ctest --test-dir build -L gpu -j4 --output-on-failure > $R/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed|DIFFERS" $R/gpu.log | cut -c1-160 | head -30
for i in 1 2 3; do ./build/bin/test_cuda_no_malloc > /tmp/nm.txt 2>&1; echo "no_malloc run $i rc=$? $(grep -c 'attempt 2' /tmp/nm.txt) second attempts"; cp /tmp/nm.txt $R/no_malloc_$i.txt; done
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/mc0.log 2>&1; echo "memcheck gemv rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc0.log | tail -1)"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/rankkv-generate --target cuda --max-new-tokens 8 > /tmp/mc2.log 2>&1; echo "memcheck generate nano rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc2.log | tail -1)"
timeout 90 compute-sanitizer --tool racecheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/rc0.log 2>&1; echo "racecheck gemv rc=$? at $SECONDS s: $(grep SUMMARY /tmp/rc0.log | tail -1)"
echo "done at $SECONDS s"
