#!/usr/bin/env bash
# Run 2: n = this tree (landed.patch: the sum's fc2 input through cp.async.ca, as run 1's knob 2),
# h = n - landed.patch (HEAD), l = n + lab2.patch (the fill after the wait, the pair's x and the
# sum's first input, as cp.async too: RK_LAB_XFILL 1 = .ca, 2 = .cg). test_sequence cuda and
# test_cuda_gemv on l with each knob; greedy ids of h, n, l1, l2; three alternating rounds of
# h, n, l1, l2; then ctest -L gpu on n.
# Carry .carry/deps.tar.xz, .carry/mini2 and .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/gemv_fill_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/h /tmp/l /tmp/shared; mkdir -p /tmp/n /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
cp -r /tmp/n /tmp/h && (cd /tmp/h && patch -R -p1 < $L/landed.patch > /dev/null) || { echo "patch h failed"; exit 1; }
cp -r /tmp/n /tmp/l && (cd /tmp/l && patch -p1 < $L/lab2.patch > /dev/null) || { echo "patch l failed"; exit 1; }
( xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
  cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
  for f in goldens.json tokenizer.json model.safetensors; do xz -dc .carry/mini2/$f.xz > /tmp/shared/models/pythia-mini/$f; done ) &
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
(cd /tmp/h && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j3 --target rankkv-bench rankkv-generate > /tmp/build_h.log 2>&1 || { echo "build h failed"; grep -A3 error /tmp/build_h.log | head; }) &
(cd /tmp/l && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench rankkv-generate test_sequence test_cuda_gemv > /tmp/build_l.log 2>&1 || { echo "build l failed"; grep -A3 error /tmp/build_l.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
for k in 1 2; do for t in test_sequence test_cuda_gemv; do
  a=""; [ $t = test_sequence ] && a=cuda
  RK_LAB_XFILL=$k timeout 100 /tmp/l/build/bin/$t $a > /tmp/t.txt 2>&1; echo "l$k $t rc=$? at $SECONDS s: $(tail -1 /tmp/t.txt)"
  cat /tmp/t.txt >> $R/run2_tests.txt
done; done
for t in h n l1 l2; do for kv in full h2o; do
  bin=/tmp/$t/build/bin; k=0; case $t in l*) bin=/tmp/l/build/bin; k=${t#l};; esac
  B=""; [ $kv = h2o ] && B="--kv-budget 512"
  RK_LAB_XFILL=$k timeout 120 $bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run2_ids.txt
for round in 1 2 3; do for t in h n l1 l2; do
  bin=/tmp/$t/build/bin; k=0; case $t in l*) bin=/tmp/l/build/bin; k=${t#l};; esac
  RK_LAB_XFILL=$k timeout 150 $bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run2_times.txt
(cd /tmp/n && timeout $((550 - SECONDS)) ctest --test-dir build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s")
grep -E "tests passed|Failed|\*\*\*|check failed|FAIL" /tmp/gpu.log | cut -c1-200 | head -30; xz -c /tmp/gpu.log > $R/run2_gpu.log.xz
xz -f $R/run2_tests.txt
echo "done at $SECONDS s"
