#!/usr/bin/env bash
# Run 1: where the dense + fc2 sum's blocks fetch fc2's input (20 KB, before their wait).
# v = HEAD + fill.patch, one binary, RK_LAB_XFILL: 0 = __ldcg, as HEAD (L2 only, each block its
# own copy); 1 = __ldca (through L1, so the blocks of one SM share it); 2 = cp.async.ca (L1,
# all of a thread's copies in flight at once); 3 = cp.async.cg (L2, async). h = HEAD.
# On v with each knob: test_sequence cuda, test_cuda_gemv, greedy ids; then four alternating
# rounds of h and v0..v3. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/gemv_fill_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/v /tmp/h; mkdir -p /tmp/v
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/v
cp -r /tmp/v /tmp/h && (cd /tmp/h && patch -R -p1 < $L/fill.patch > /dev/null) || { echo "patch h failed"; exit 1; }
(cd /tmp/v && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j10 > /tmp/build_v.log 2>&1 || { echo "build v failed"; grep -A3 error /tmp/build_v.log | head -30; }) &
(cd /tmp/h && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j6 --target rankkv-bench rankkv-generate > /tmp/build_h.log 2>&1 || { echo "build h failed"; grep -A3 error /tmp/build_h.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/v/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
for k in 1 2 3; do for t in test_sequence test_cuda_gemv; do
  a=""; [ $t = test_sequence ] && a=cuda
  RK_LAB_XFILL=$k timeout 100 /tmp/v/build/bin/$t $a > /tmp/t.txt 2>&1; echo "v$k $t rc=$? at $SECONDS s: $(grep -ciE 'fail' /tmp/t.txt) lines with fail"; tail -1 /tmp/t.txt
  cat /tmp/t.txt >> $R/run1_tests.txt
done; done
for t in h v0 v1 v2 v3; do for kv in full h2o; do
  bin=/tmp/v/build/bin; k=${t#v}; [ $t = h ] && { bin=/tmp/h/build/bin; k=0; }
  B=""; [ $kv = h2o ] && B="--kv-budget 512"
  RK_LAB_XFILL=$k timeout 120 $bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run1_ids.txt
for round in 1 2 3 4; do for t in h v0 v1 v2 v3; do
  bin=/tmp/v/build/bin; k=${t#v}; [ $t = h ] && { bin=/tmp/h/build/bin; k=0; }
  RK_LAB_XFILL=$k timeout 150 $bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
xz -f $R/run1_tests.txt
echo "done at $SECONDS s"
