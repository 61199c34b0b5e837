#!/usr/bin/env bash
# Run 2: run 1 again without its checks of h, after run 1's n failed to build (smartkv's tile
# loader needs a multiple of the block's threads; warps.patch now takes 8 warps only over fp16
# caches). h = this tree (fea786e's code); n = h + warps.patch. test_cuda_attention --quick on n;
# greedy ids of h and n; three alternating rounds of h and n (TTFT).
# Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/prefill_warps_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/h; mkdir -p /tmp/h
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/h
cp -r /tmp/h /tmp/n && (cd /tmp/n && patch -p1 < $L/warps.patch > /dev/null) || { echo "patch n failed"; exit 1; }
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-generate test_cuda_attention rankkv-make-random-model > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
(cd /tmp/h && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-generate > /tmp/build_h.log 2>&1 || { echo "build h failed"; grep -A3 error /tmp/build_h.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
(cd /tmp/n && timeout 60 ./build/bin/test_cuda_attention --quick > /tmp/t.txt 2>&1; echo "test_cuda_attention --quick n rc=$? at $SECONDS s: $(tail -1 /tmp/t.txt)"; cp /tmp/t.txt $R/run2_tests_n.txt)
for t in h n; do for kv in full h2o snapkv; do
  B=""; [ $kv != full ] && B="--kv-budget 512"
  timeout 120 /tmp/$t/build/bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run2_ids.txt
for round in 1 2 3; do for t in h n; do
  timeout 150 /tmp/$t/build/bin/rankkv-bench $M --prompt-tokens 512,1024,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run2_times.txt
echo "done at $SECONDS s"
