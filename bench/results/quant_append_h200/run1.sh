#!/usr/bin/env bash
# Run 1 (prepared 2026-12-02, not yet run): h = this tree; n = h + append.patch (the int8/int4/
# int2 caches' few-row rotary + append with every element's loads before its stores and the
# step's positions and rows read before the wait, as 679bf12 did for the fp16 decode attention).
# test_cuda_kv_quant and test_kv_cuda_vs_cpu on n; greedy ids of h and n per format; three
# alternating rounds of h and n (TPOT of the quantized caches).
# Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/quant_append_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/h; mkdir -p /tmp/h
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/h
cp -r /tmp/h /tmp/n && (cd /tmp/n && patch -p1 < $L/append.patch > /dev/null) || { echo "patch n failed"; exit 1; }
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-generate test_cuda_kv_quant test_kv_cuda_vs_cpu rankkv-make-random-model > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
(cd /tmp/h && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-generate > /tmp/build_h.log 2>&1 || { echo "build h failed"; grep -A3 error /tmp/build_h.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
for t in test_cuda_kv_quant test_kv_cuda_vs_cpu; do
  (cd /tmp/n && timeout 100 ./build/bin/$t > /tmp/t.txt 2>&1; echo "$t rc=$? at $SECONDS s: $(tail -1 /tmp/t.txt)"; cat /tmp/t.txt >> $R/run1_tests.txt)
done
for t in h n; do for f in int8 int4 int2; do
  timeout 120 /tmp/$t/build/bin/rankkv-generate $M --kv-dtype $f --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $f /"
done; done | tee $R/run1_ids.txt
for round in 1 2 3; do for t in h n; do
  timeout 150 /tmp/$t/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full --kv-dtype int8,int4,int2 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4"-"$2, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
xz -f $R/run1_tests.txt
echo "done at $SECONDS s"
