#!/usr/bin/env bash
# Run 1: n = this tree (679bf12: append.patch, the decode attention's append with its loads
# before its stores and the step's first position read before the wait); h = n - append.patch
# (e4f7174's code). test_cuda_attention and test_sequence cuda on n; greedy ids of h and n;
# three alternating rounds of h and n; the #15 record command on n (RANKKV_COMMIT as given);
# ctest -L gpu on n while time is left.
# Carry .carry/deps.tar.xz, .carry/mini2 and .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/decode_append_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/h /tmp/shared; mkdir -p /tmp/n /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
cp -r /tmp/n /tmp/h && (cd /tmp/h && patch -R -p1 < $L/append.patch > /dev/null) || { echo "patch h failed"; exit 1; }
( xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
  cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
  for f in goldens.json tokenizer.json model.safetensors; do xz -dc .carry/mini2/$f.xz > /tmp/shared/models/pythia-mini/$f; done ) &
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j11 > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
(cd /tmp/h && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench rankkv-generate > /tmp/build_h.log 2>&1 || { echo "build h failed"; grep -A3 error /tmp/build_h.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
ln -s /tmp/rnd /tmp/n/build/random-pythia-2.8b
M="--model /tmp/rnd --target cuda"
for t in "test_sequence cuda" "test_cuda_attention --quick"; do
  (cd /tmp/n && timeout 100 ./build/bin/$t > /tmp/t.txt 2>&1; echo "$t rc=$? at $SECONDS s: $(tail -1 /tmp/t.txt)"; cat /tmp/t.txt >> $R/run1_tests.txt)
done
for t in h n; do for kv in full h2o snapkv; do
  B=""; [ $kv != full ] && B="--kv-budget 512"
  timeout 120 /tmp/$t/build/bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run1_ids.txt
for round in 1 2 3; do for t in h n; do
  timeout 150 /tmp/$t/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
(cd /tmp/n && RANKKV_COMMIT=$N_COMMIT timeout 150 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > $R/record_n.txt 2>&1; echo "record n rc=$? at $SECONDS s"; tail -9 $R/record_n.txt; cp bench/results/cuda_h200.json $R/cuda_h200_n.json)
(cd /tmp/n && timeout $((455 - SECONDS)) ctest --test-dir build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s")
grep -E "tests passed|Failed|\*\*\*|check failed|FAIL|Test #" /tmp/gpu.log | cut -c1-120 | tail -24; xz -c /tmp/gpu.log > $R/run1_gpu.log.xz
xz -f $R/run1_tests.txt
echo "done at $SECONDS s"
