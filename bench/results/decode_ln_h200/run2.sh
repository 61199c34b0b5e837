#!/usr/bin/env bash
# Run 2: n = this tree (e4f7174, ln.patch landed). The #15 record command (RANKKV_COMMIT as given),
# greedy ids, ctest -L gpu, then memcheck of test_sequence cuda while time is left.
# Carry .carry/deps.tar.xz, .carry/mini2 and .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/shared; mkdir -p /tmp/n /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
( xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
  cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
  for f in goldens.json tokenizer.json model.safetensors; do xz -dc .carry/mini2/$f.xz > /tmp/shared/models/pythia-mini/$f; done ) &
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j16 > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
ln -s /tmp/rnd /tmp/n/build/random-pythia-2.8b
for kv in full h2o snapkv; do
  B=""; [ $kv != full ] && B="--kv-budget 512"
  timeout 120 /tmp/n/build/bin/rankkv-generate --model /tmp/rnd --target cuda --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/n $kv /"
done | tee $R/run2_ids.txt
(cd /tmp/n && RANKKV_COMMIT=$N_COMMIT timeout 150 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > $R/record_n.txt 2>&1; echo "record n rc=$? at $SECONDS s"; tail -9 $R/record_n.txt; cp bench/results/cuda_h200.json $R/cuda_h200_n.json)
(cd /tmp/n && timeout $((470 - SECONDS)) ctest --test-dir build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s")
grep -E "tests passed|Failed|\*\*\*|check failed|FAIL|Test #" /tmp/gpu.log | cut -c1-120 | tail -24; xz -c /tmp/gpu.log > $R/run2_gpu.log.xz
(cd /tmp/n && timeout $((550 - SECONDS)) compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_sequence cuda > /tmp/mc.log 2>&1; echo "memcheck test_sequence cuda rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1), $(tail -1 /tmp/mc.log)" | tee $R/run2_memcheck.txt)
echo "done at $SECONDS s"
