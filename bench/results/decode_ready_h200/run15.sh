#!/usr/bin/env bash
# Run 15: the review commit 8bd15e7 (the eviction's mass passed by value; host code only) on the
# device: ctest -L gpu (test_kv_cuda_vs_cpu has H2O evicting on pythia-mini against the CPU
# target). Carry .carry/deps.tar.xz, .carry/mini2, .carry/wiki.test.raw.xz.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src15; R=$OUT/res; rm -rf $S /tmp/shared; mkdir -p $S $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j14 > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
wait
echo "built at $SECONDS s"
timeout 300 ctest --test-dir build -L gpu -j4 --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed" /tmp/gpu.log | cut -c1-160 | head -30; xz -c /tmp/gpu.log > $R/run15_gpu.log.xz
echo "done at $SECONDS s"
