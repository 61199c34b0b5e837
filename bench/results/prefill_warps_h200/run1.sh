#!/usr/bin/env bash
# Run 1: h = this tree (fea786e); n = h + warps.patch (prefill attention blocks of 8 warps instead
# of 4: each K/V tile shared by twice the row tiles, one block an SM at 1920). test_cuda_attention
# on n; greedy ids of h and n; three alternating rounds of h and n (TTFT); then, on h, ctest -L gpu
# and memcheck of test_cuda_kv_quant int4 and int8 while time is left.
# Carry .carry/deps.tar.xz, .carry/mini2 and .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/prefill_warps_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/h /tmp/shared; mkdir -p /tmp/h /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/h
cp -r /tmp/h /tmp/n && (cd /tmp/n && patch -p1 < $L/warps.patch > /dev/null) || { echo "patch n failed"; exit 1; }
( xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
  cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
  for f in goldens.json tokenizer.json model.safetensors; do xz -dc .carry/mini2/$f.xz > /tmp/shared/models/pythia-mini/$f; done ) &
(cd /tmp/h && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j11 > /tmp/build_h.log 2>&1 || { echo "build h failed"; grep -A3 error /tmp/build_h.log | head -30; }) &
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench rankkv-generate test_cuda_attention > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/h/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
(cd /tmp/n && timeout 120 ./build/bin/test_cuda_attention > /tmp/t.txt 2>&1; echo "test_cuda_attention n rc=$? at $SECONDS s: $(tail -1 /tmp/t.txt)"; cp /tmp/t.txt $R/run1_tests_n.txt)
for t in h n; do for kv in full h2o snapkv; do
  B=""; [ $kv != full ] && B="--kv-budget 512"
  timeout 120 /tmp/$t/build/bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run1_ids.txt
for round in 1 2 3; do for t in h n; do
  timeout 150 /tmp/$t/build/bin/rankkv-bench $M --prompt-tokens 512,1024,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
(cd /tmp/h && timeout $((470 - SECONDS)) ctest --test-dir build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests h rc=$? at $SECONDS s")
grep -E "tests passed|Failed|\*\*\*|check failed|FAIL|Test #" /tmp/gpu.log | cut -c1-120 | tail -24; xz -c /tmp/gpu.log > $R/run1_gpu_h.log.xz
for f in int4 int8; do
  (cd /tmp/h && timeout $((560 - SECONDS)) compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_kv_quant $f > /tmp/s.log 2>&1; echo "memcheck test_cuda_kv_quant $f h rc=$? at $SECONDS s: $(grep SUMMARY /tmp/s.log | tail -1), $(grep 'checks,' /tmp/s.log | tail -1)" | tee -a $R/run1_memcheck_h.txt)
done
echo "done at $SECONDS s"
