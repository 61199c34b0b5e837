#!/usr/bin/env bash
# Run 1: the host copies through page-locked memory (n: this tree; b = n - pinned.patch), both
# with lab.patch (timing only: after each timed generation, the same number of one-token steps
# replayed back to back with one sync at the end, without and with the device argmax, so that
# the step's time on the GPU shows apart from the host's round trip). The tests the change
# touches on n, greedy ids of both, then three alternating rounds of b and n.
# Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/decode_host_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/b; mkdir -p /tmp/n
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
cp -r /tmp/n /tmp/b && (cd /tmp/b && patch -R -p1 < $L/pinned.patch > /dev/null) || { echo "patch b failed"; exit 1; }
for t in n b; do (cd /tmp/$t && patch -p1 < $L/lab.patch > /dev/null) || { echo "lab patch $t failed"; exit 1; }; done
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j10 --target rankkv-bench rankkv-generate rankkv-make-random-model test_cuda_no_malloc test_kv_compress test_cuda_kv_quant > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
(cd /tmp/b && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j6 --target rankkv-bench rankkv-generate > /tmp/build_b.log 2>&1 || { echo "build b failed"; grep error /tmp/build_b.log | head; }) &
wait; echo "built at $SECONDS s"
for t in "test_cuda_no_malloc" "test_kv_compress cuda" "test_cuda_kv_quant"; do
  timeout 200 /tmp/n/build/bin/$t > /tmp/t.txt 2>&1; echo "$t rc=$? at $SECONDS s"; tail -2 /tmp/t.txt; cat /tmp/t.txt >> $R/run1_tests_n.txt
done
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
for t in b n; do for kv in full h2o; do
  B=""; [ $kv = h2o ] && B="--kv-budget 512"
  timeout 120 /tmp/$t/build/bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run1_ids.txt
for round in 1 2 3; do for t in b n; do
  RK_LAB_REPLAY=1 timeout 150 /tmp/$t/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt; grep LAB /tmp/be.txt
done; done 2>&1 | tee $R/run1_times.txt
echo "done at $SECONDS s"
