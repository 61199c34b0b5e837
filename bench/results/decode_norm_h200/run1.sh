#!/usr/bin/env bash
# Run 1: a layer's add + LayerNorm folded into the one-row products around it (n: this tree;
# b = n - norm.patch, HEAD's code). On n: test_cuda_gemv and test_sequence cuda; greedy ids of
# both; three alternating rounds of b and n; then ctest -L gpu on n while time is left.
# Carry .carry/deps.tar.xz, .carry/mini2 and .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/decode_norm_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/b /tmp/shared; mkdir -p /tmp/n /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
cp -r /tmp/n /tmp/b && (cd /tmp/b && patch -R -p1 < $L/norm.patch > /dev/null) || { echo "patch b failed"; exit 1; }
( xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
  cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
  for f in goldens.json tokenizer.json model.safetensors; do xz -dc .carry/mini2/$f.xz > /tmp/shared/models/pythia-mini/$f; done ) &
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j11 > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
(cd /tmp/b && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench rankkv-generate > /tmp/build_b.log 2>&1 || { echo "build b failed"; grep error /tmp/build_b.log | head; }) &
wait; echo "built at $SECONDS s"
for t in "test_cuda_gemv" "test_sequence cuda"; do
  timeout 200 /tmp/n/build/bin/$t > /tmp/t.txt 2>&1; echo "$t rc=$? at $SECONDS s"; grep -iE "fail|checks" /tmp/t.txt | head -8; cat /tmp/t.txt >> $R/run1_tests_n.txt
done
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
for t in b n; do for kv in full h2o; do
  B=""; [ $kv = h2o ] && B="--kv-budget 512"
  timeout 120 /tmp/$t/build/bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run1_ids.txt
for round in 1 2 3; do for t in b n; do
  timeout 150 /tmp/$t/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
if [ $SECONDS -lt 360 ]; then
  (cd /tmp/n && timeout $((540 - SECONDS)) ctest --test-dir build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s")
  grep -E "tests passed|Failed|\*\*\*|check failed|FAIL" /tmp/gpu.log | cut -c1-200 | head -30; xz -c /tmp/gpu.log > $R/run1_gpu.log.xz
fi
xz -f $R/run1_tests_n.txt
echo "done at $SECONDS s"
