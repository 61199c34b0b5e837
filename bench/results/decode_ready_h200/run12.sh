#!/usr/bin/env bash
# Run 12, prepared and not run (no device time was left; about 5 minutes on an H200): what is
# left in HEAD's products after the row barrier and the fill. The split lab at HEAD (whether the
# split rule's choices still hold now that a pair's rows meet at barriers of their own), then
# run 8's ncu profile of two pairs and two sums of a decode step at 1920, HEAD only; summarise
# with python3 stalls.py after copying run12_h_source.csv.xz here as run8_h_source.csv.xz.
# Then block_stage.patch (s): the products' fill of x and the prefill rotary's staging of a
# token through one helper, kernels/block_stage.cuh. It moves the pair from 64 registers back to
# 61 and the sum from 79 to 77, so it lands only if it is not slower: test_cuda_gemv and
# test_cuda_attention on s, greedy ids, 3 alternating rounds of h and s.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/h; mkdir -p /tmp/h; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/h
(cd /tmp/h && nvcc -O3 -arch=sm_90a -std=c++17 -Ikernels bench/results/gemv_split_h200/split_lab.cu -o /tmp/split_lab) &
(cd /tmp/h && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j12 --target rankkv-bench rankkv-make-random-model > /tmp/build_h.log 2>&1 || { echo "build failed"; grep error /tmp/build_h.log | head; }) &
wait; echo "built at $SECONDS s"
timeout 120 /tmp/split_lab > $R/run12_split_lab.txt 2>&1; echo "split lab rc=$? at $SECONDS s"; tail -20 $R/run12_split_lab.txt
/tmp/h/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1; echo "model at $SECONDS s"
timeout 200 ncu --clock-control none --kernel-name-base mangled --kernel-name 'regex:gemv_kernelILb0ELi(2ELi5|8ELi7)E' \
  --launch-skip 64 --launch-count 4 --set full -f -o /tmp/rep_h \
  /tmp/h/build/bin/rankkv-bench --model /tmp/rnd --target cuda --kv full --repeats 1 --prompt-tokens 1920 --new-tokens 4 > /tmp/ncu_h.log 2>&1
echo "ncu rc=$? at $SECONDS s"
ncu -i /tmp/rep_h.ncu-rep --page details --csv > $R/run12_h_details.csv
ncu -i /tmp/rep_h.ncu-rep --page source --csv --print-source sass | xz > $R/run12_h_source.csv.xz
grep -E '"(Duration|Memory Throughput|Registers Per Thread)"' $R/run12_h_details.csv | awk -F'","' '{print $1, substr($5,1,50), $(NF-2), $(NF-1), $NF}' | sed 's/"//g'
rm -rf /tmp/s; mkdir -p /tmp/s; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/s
(cd /tmp/s && patch -p1 < bench/results/decode_ready_h200/block_stage.patch > /dev/null && cmake -S . -B build >/dev/null 2>&1 &&
  cmake --build build -j12 --target rankkv-bench rankkv-generate test_cuda_gemv test_cuda_attention > /tmp/build_s.log 2>&1) || { echo "build s failed"; grep error /tmp/build_s.log | head; exit 1; }
(cd /tmp/h && cmake --build build -j12 --target rankkv-generate > /dev/null 2>&1)
for t in test_cuda_gemv test_cuda_attention; do (cd /tmp/s && timeout 120 ./build/bin/$t > /tmp/t.txt 2>&1; echo "$t s rc=$? $(tail -1 /tmp/t.txt)"); done | tee $R/run12_tests_s.txt
cp /tmp/h/models/pythia-nano/tokenizer.json /tmp/rnd/
for d in h s; do /tmp/$d/build/bin/rankkv-generate --model /tmp/rnd --target cuda --max-new-tokens 64 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/$d ids /"; done | tee $R/run12_ids.txt
for round in 1 2 3; do for a in h s; do
  timeout 60 /tmp/$a/build/bin/rankkv-bench --model /tmp/rnd --target cuda --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/dev/null
  echo "== $a round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/run12.txt
echo "done at $SECONDS s"
