#!/usr/bin/env bash
# Run 1: the stop's review commit (the last layer's GEMM plans made once each): ctest -L gpu and
# memcheck of test_sequence cuda (its last_layer_tail case runs those plans).
# Carry .carry/deps.tar.xz, .carry/mini2 and .carry/wiki.test.raw.xz.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; rm -rf $S /tmp/shared; mkdir -p $S $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
for f in goldens.json tokenizer.json model.safetensors; do xz -dc .carry/mini2/$f.xz > /tmp/shared/models/pythia-mini/$f & done
cd $S && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j14 > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
wait; echo "built at $SECONDS s"
timeout 300 ctest --test-dir build -L gpu -j4 --output-on-failure > $R/run1_gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"
grep -E "tests passed|Failed|\*\*\*|check failed" $R/run1_gpu.log | cut -c1-160 | head -30; xz -f $R/run1_gpu.log
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_sequence cuda > /tmp/mc.log 2>&1
echo "memcheck test_sequence cuda rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1), $(grep 'checks,' /tmp/mc.log | tail -1)" | tee $R/run1_memcheck.txt
echo "done at $SECONDS s"
