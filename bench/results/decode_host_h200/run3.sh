#!/usr/bin/env bash
# Run 3: 03437ff on the device: the record (the #15 command, repeats 5, nvidia-smi sampling the
# clocks beside it), the GPU tests alone on the GPU, greedy ids, memcheck of test_sequence on the
# CUDA target. Carry .carry/deps.tar.xz, .carry/mini2 and .carry/wiki.test.raw.xz;
# RANKKV_COMMIT names the commit.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src3; R=$OUT/res; rm -rf $S /tmp/shared; mkdir -p $S $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
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
M="--model build/random-pythia-2.8b --target cuda"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -lms 100 > $R/run3_clocks.csv 2>&1 &
SMI=$!
RANKKV_COMMIT=$RANKKV_COMMIT timeout 150 ./build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > $R/record.txt 2>&1; echo "record rc=$? at $SECONDS s"; cat $R/record.txt
kill $SMI
cp bench/results/cuda_h200.json $R/cuda_h200.json
head -c 3000 README.md > /tmp/prompt.txt
for kv in full h2o; do B=""; [ $kv = h2o ] && B="--kv-budget 512"
  for i in 1 2; do timeout 120 ./build/bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$kv /"; done
done | tee $R/run3_ids.txt
timeout 300 ctest --test-dir build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed" /tmp/gpu.log | cut -c1-160 | head -30; xz -c /tmp/gpu.log > $R/run3_gpu.log.xz
[ $SECONDS -lt 480 ] && { timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_sequence cuda > /tmp/mc.log 2>&1; echo "memcheck test_sequence cuda rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1), $(grep 'checks,' /tmp/mc.log | tail -1)"; } | tee $R/run3_memcheck.txt
echo "done at $SECONDS s"
