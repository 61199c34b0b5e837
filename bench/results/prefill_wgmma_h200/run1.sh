#!/usr/bin/env bash
# Run 1: the prefill attention on warpgroup MMAs (n: this tree; b = n - wgmma.patch, the
# mma.sync kernel). test_cuda_attention on n (every case against the float64 reference, then
# its timings), TTFT in two alternating rounds of b and n, H2O's greedy ids on n, and
# test_cuda_attention on b for its timings. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/prefill_wgmma_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/b; mkdir -p /tmp/n
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
cp -r /tmp/n /tmp/b && (cd /tmp/b && patch -R -p1 < $L/wgmma.patch > /dev/null) || { echo "patch b failed"; exit 1; }
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j10 --target rankkv-bench rankkv-generate rankkv-make-random-model test_cuda_attention > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
(cd /tmp/b && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j6 --target rankkv-bench test_cuda_attention > /tmp/build_b.log 2>&1 || { echo "build b failed"; grep error /tmp/build_b.log | head; }) &
wait; echo "built at $SECONDS s"
timeout 200 /tmp/n/build/bin/test_cuda_attention > $R/run1_test_n.txt 2>&1; echo "test n rc=$? at $SECONDS s"
grep -E "FAIL|check|timing" $R/run1_test_n.txt | head -20
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
run() { timeout 120 /tmp/$1/build/bin/$2 "${@:3}"; }
for round in 1 2; do for t in b n; do
  run $t rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 5 > /tmp/bt.txt 2>/dev/null
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
for i in 1 2 3; do run n rankkv-generate $M --kv h2o --kv-budget 512 --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/n h2o /"; done | tee $R/run1_ids.txt
[ $SECONDS -lt 400 ] && { timeout $((520 - SECONDS)) /tmp/b/build/bin/test_cuda_attention > $R/run1_test_b.txt 2>&1; echo "test b rc=$? at $SECONDS s"; grep timing $R/run1_test_b.txt; }
echo "done at $SECONDS s"
