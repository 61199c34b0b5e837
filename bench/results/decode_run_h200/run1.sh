#!/usr/bin/env bash
# Run 1: a greedy run of 16 steps recorded and replayed as one graph, its inputs copied in and
# its ids copied out once (n: this tree; h = n - run.patch, HEAD's code), and, in the same run,
# the L2-traffic test of ../decode_norm_h200 (t = h + traffic.patch: RK_LAB_PAIR_EXTRA=5 makes
# each block of the QKV + fc1 pair copy 20 KB more from L2 before its wait). On n: test_sequence
# cuda, test_cuda_no_malloc, test_api; greedy ids of h and n; three alternating rounds of h, n,
# t with 0 and with 5; then ctest -L gpu on n while time is left.
# Carry .carry/deps.tar.xz, .carry/mini2 and .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/decode_run_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/h /tmp/t /tmp/shared; mkdir -p /tmp/n /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
cp -r /tmp/n /tmp/h && (cd /tmp/h && patch -R -p1 < $L/run.patch > /dev/null) || { echo "patch h failed"; exit 1; }
cp -r /tmp/h /tmp/t && (cd /tmp/t && patch -p1 < $P/bench/results/decode_norm_h200/traffic.patch > /dev/null) || { echo "patch t failed"; exit 1; }
( xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
  cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
  for f in goldens.json tokenizer.json model.safetensors; do xz -dc .carry/mini2/$f.xz > /tmp/shared/models/pythia-mini/$f; done ) &
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
for t in h t; do (cd /tmp/$t && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j4 --target rankkv-bench rankkv-generate > /tmp/build_$t.log 2>&1 || { echo "build $t failed"; grep -A3 error /tmp/build_$t.log | head; }) & done
wait; echo "built at $SECONDS s"
for t in "test_sequence cuda" "test_cuda_no_malloc"; do
  timeout 200 /tmp/n/build/bin/$t > /tmp/t.txt 2>&1; echo "$t rc=$? at $SECONDS s"; grep -iE "greedy|fail|checks" /tmp/t.txt | head -8; cat /tmp/t.txt >> $R/run1_tests_n.txt
done
(cd /tmp/n/build && ctest -R 'test_api' --output-on-failure > /tmp/t.txt 2>&1; echo "ctest test_api rc=$?"; tail -2 /tmp/t.txt; cat /tmp/t.txt >> $R/run1_tests_n.txt)
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
for t in h n; do for kv in full h2o; do
  B=""; [ $kv = h2o ] && B="--kv-budget 512"
  timeout 120 /tmp/$t/build/bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run1_ids.txt
for round in 1 2 3; do for t in h n t0 t5; do
  bin=/tmp/$t/build/bin/rankkv-bench; extra=""
  case $t in t0) bin=/tmp/t/build/bin/rankkv-bench; extra=0;; t5) bin=/tmp/t/build/bin/rankkv-bench; extra=5;; esac
  RK_LAB_PAIR_EXTRA=$extra timeout 150 $bin $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
if [ $SECONDS -lt 330 ]; then
  (cd /tmp/n && timeout $((540 - SECONDS)) ctest --test-dir build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s")
  grep -E "tests passed|Failed|\*\*\*|check failed|FAIL" /tmp/gpu.log | cut -c1-200 | head -30; xz -c /tmp/gpu.log > $R/run1_gpu.log.xz
fi
xz -f $R/run1_tests_n.txt
echo "done at $SECONDS s"
