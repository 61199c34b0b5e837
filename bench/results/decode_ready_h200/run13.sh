#!/usr/bin/env bash
# Run 13: H2O's decode mass inside its eviction (b, this tree: one side kernel a layer, as
# StreamingLLM has) against the tree before it (a: b with evict_mass.patch, the change's code
# diff, reversed), and c, timing only: b with the eviction not joined before the next layer's
# attention, which may then overwrite the scores the eviction reads (its choices can be wrong).
# Earlier runs removed the second side kernel (evict_mass_h200/) or the join (mass_ring.patch in
# h2o_decode_h200/) one at a time, and neither moved H2O's TPOT; c removes both. Greedy ids,
# 3 alternating rounds of SnapKV, H2O and StreamingLLM, then b's GPU tests that cover the
# eviction, and memcheck of test_kv_compress on cuda. Carry .carry/deps.tar.xz.
# test_kv_compress caught b adding each probability unrounded (the compiler fused it into the
# score's add; run13_tests.txt); evict_mass.patch here is the landed change, with the fix that
# run 14 (run14.sh) tested, so applied over b it does not reproduce run 13's b exactly.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/b /tmp/c; mkdir -p /tmp/b
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/b
cp -r /tmp/b /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/decode_ready_h200/evict_mass.patch > /dev/null) || { echo "reverse patch failed"; exit 1; }
cp -r /tmp/b /tmp/c && sed -i 's/fork_side(c, mass.scores ? SIDE_LEFTOVERS : 0);/fork_side(c, 0);/' /tmp/c/targets/cuda/cuda_ops.c
grep -c "fork_side(c, 0);" /tmp/c/targets/cuda/cuda_ops.c
for d in a c; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench rankkv-generate > /tmp/build_$d.log 2>&1 || echo "build $d failed") & done
(cd /tmp/b && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j6 > /tmp/build_b.log 2>&1 || { echo "build b failed"; grep error /tmp/build_b.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/b/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp /tmp/b/models/pythia-nano/tokenizer.json /tmp/rnd/
M="--model /tmp/rnd --target cuda"
for d in a b c; do for kv in full h2o; do /tmp/$d/build/bin/rankkv-generate $M --kv $kv $( [ $kv = h2o ] && echo --kv-budget 512) --max-new-tokens 64 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/$d $kv ids /"; done; done | tee $R/run13_ids.txt
for round in 1 2 3; do for d in a b c; do
  timeout 60 /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv snapkv,h2o,streamingllm --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/dev/null
  echo "== $d round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/bt.txt
done; done 2>&1 | tee $R/run13.txt
cd /tmp/b
for t in "test_kv_compress cuda" "test_kv_cuda_vs_cpu" "test_cuda_kv_quant"; do timeout 150 ./build/bin/$t > /tmp/t.txt 2>&1; echo "$t rc=$? $(tail -1 /tmp/t.txt) at $SECONDS s"; done | tee $R/run13_tests.txt
[ $SECONDS -lt 450 ] && { timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_kv_compress cuda > /tmp/mc.log 2>&1; echo "memcheck test_kv_compress cuda rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1)"; } | tee -a $R/run13_tests.txt
echo "done at $SECONDS s"
