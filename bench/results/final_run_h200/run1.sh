#!/usr/bin/env bash
# The record at RANKKV_COMMIT (the #15 command, repeats 5), greedy ids, memcheck of
# test_sequence on the CUDA target. ctest -L gpu passed on the same code in
# ../decode_run_h200/run1.sh. Carry .carry/deps.tar.xz.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; rm -rf $S; mkdir -p $S $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j16 --target rankkv-bench rankkv-generate rankkv-make-random-model test_sequence > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
echo "built at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json build/random-pythia-2.8b/
M="--model build/random-pythia-2.8b --target cuda"
RANKKV_COMMIT=$RANKKV_COMMIT timeout 150 ./build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > $R/record.txt 2>&1; echo "record rc=$? at $SECONDS s"; cat $R/record.txt
cp bench/results/cuda_h200.json $R/cuda_h200.json
head -c 3000 README.md > /tmp/prompt.txt
for kv in full h2o; do B=""; [ $kv = h2o ] && B="--kv-budget 512"
  timeout 60 ./build/bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$kv /"
done | tee $R/ids.txt
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_sequence cuda > /tmp/mc.log 2>&1; echo "memcheck test_sequence cuda rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1), $(grep 'checks,' /tmp/mc.log | tail -1)" | tee $R/memcheck.txt
echo "done at $SECONDS s"
