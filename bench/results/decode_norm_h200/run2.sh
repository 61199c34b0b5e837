#!/usr/bin/env bash
# Run 2: why run 1's folded norm was slower. Three builds: b = HEAD + pad.patch (a lab knob,
# RK_LAB_PAIR_PAD, adds shared memory to the pair's blocks), v1 = HEAD + norm.patch (run 1's
# n), v2 = this tree (the norm's weights where its outputs go, biases in shared memory, x in
# registers: 20 KB a pair block instead of v1's 35 and HEAD's 10). test_cuda_gemv and
# test_sequence cuda on v2; greedy ids of v2; two alternating rounds of b, b with 25600 bytes of
# pad (v1's pair blocks' size), v1 and v2. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/decode_norm_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/v2 /tmp/v1 /tmp/b; mkdir -p /tmp/v2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/v2
cp -r /tmp/v2 /tmp/b && (cd /tmp/b && patch -R -p1 < $L/norm_v2.patch > /dev/null && patch -p1 < $L/pad.patch > /dev/null) || { echo "patch b failed"; exit 1; }
cp -r /tmp/b /tmp/v1 && (cd /tmp/v1 && patch -R -p1 < $L/pad.patch > /dev/null && patch -p1 < $L/norm.patch > /dev/null) || { echo "patch v1 failed"; exit 1; }
(cd /tmp/v2 && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j6 --target rankkv-bench rankkv-generate rankkv-make-random-model test_cuda_gemv test_sequence > /tmp/build_v2.log 2>&1 || { echo "build v2 failed"; grep -A3 error /tmp/build_v2.log | head -30; }) &
for t in b v1; do (cd /tmp/$t && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench > /tmp/build_$t.log 2>&1 || { echo "build $t failed"; grep -A3 error /tmp/build_$t.log | head; }) & done
wait; echo "built at $SECONDS s"
for t in "test_cuda_gemv" "test_sequence cuda"; do
  timeout 200 /tmp/v2/build/bin/$t > /tmp/t.txt 2>&1; echo "$t rc=$? at $SECONDS s"; grep -iE "fail|checks" /tmp/t.txt | head -8; cat /tmp/t.txt >> $R/run2_tests_v2.txt
done
/tmp/v2/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
for kv in full h2o; do
  B=""; [ $kv = h2o ] && B="--kv-budget 512"
  timeout 120 /tmp/v2/build/bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/v2 $kv /"
done | tee $R/run2_ids.txt
for round in 1 2; do for t in b bpad v1 v2; do
  bin=/tmp/$t/build/bin/rankkv-bench; pad=""
  [ $t = bpad ] && { bin=/tmp/b/build/bin/rankkv-bench; pad=25600; }
  RK_LAB_PAIR_PAD=$pad timeout 150 $bin $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run2_times.txt
xz -f $R/run2_tests_v2.txt
echo "done at $SECONDS s"
