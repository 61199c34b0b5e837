#!/usr/bin/env bash
# Run 14: the landed eviction with the mass (246982b), after run 13's bit-for-bit failure was
# fixed: test_kv_compress on cuda, the record run (the #15 command, repeats 5), the GPU tests,
# memcheck of test_kv_compress on cuda. Carry .carry/deps.tar.xz, .carry/mini2 and
# .carry/wiki.test.raw.xz; RANKKV_COMMIT names the commit.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src14; R=$OUT/res; rm -rf $S /tmp/shared; mkdir -p $S $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j14 > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
echo "built at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json build/random-pythia-2.8b/
wait
./build/bin/test_kv_compress cuda > /tmp/t.txt 2>&1; echo "test_kv_compress cuda rc=$? $(tail -1 /tmp/t.txt)" | tee $R/run14_tests.txt
M="--model build/random-pythia-2.8b --target cuda"
RANKKV_COMMIT=$RANKKV_COMMIT timeout 150 ./build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > $R/record.txt 2>&1; echo "record rc=$? at $SECONDS s"; cat $R/record.txt
cp bench/results/cuda_h200.json $R/cuda_h200.json
timeout 240 ctest --test-dir build -L gpu -j4 --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed|DIFFERS" /tmp/gpu.log | cut -c1-160 | head -30; xz -c /tmp/gpu.log > $R/run14_gpu.log.xz
[ $SECONDS -lt 480 ] && { timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_kv_compress cuda > /tmp/mc.log 2>&1; echo "memcheck test_kv_compress cuda rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1), $(grep 'checks,' /tmp/mc.log | tail -1)"; } | tee -a $R/run14_tests.txt
echo "done at $SECONDS s"
