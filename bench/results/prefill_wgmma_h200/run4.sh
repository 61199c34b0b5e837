#!/usr/bin/env bash
# Run 4: the review commit (gemm_on takes the workspace size only; host code, the same CUDA calls) on
# the device: ctest -L gpu, alone on the GPU, and H2O's greedy ids
# twice. Carry .carry/deps.tar.xz, .carry/mini2, .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
rm -rf /tmp/n; mkdir -p /tmp/n  # the tests find ../shared = /tmp/shared
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j16 > /tmp/build_n.log 2>&1 || { echo "build failed"; grep error /tmp/build_n.log | head; })
wait; echo "built at $SECONDS s"
timeout 300 ctest --test-dir /tmp/n/build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"
grep -E "tests passed|Failed|\*\*\*|check failed" /tmp/gpu.log | cut -c1-160 | head -30
grep -E "Test +#" /tmp/gpu.log > $R/run4_tests.txt
head -c 3000 $P/README.md > /tmp/prompt.txt; cp $P/models/pythia-nano/tokenizer.json /tmp/n/build/random-pythia-2.8b/ 2>/dev/null
for i in 1 2; do timeout 120 /tmp/n/build/bin/rankkv-generate --model /tmp/n/build/random-pythia-2.8b --target cuda --kv h2o --kv-budget 512 --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/n h2o /"; done | tee $R/run4_ids.txt
echo "done at $SECONDS s"
