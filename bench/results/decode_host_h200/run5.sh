#!/usr/bin/env bash
# Run 5: which part of a decode step draws the power, at 9b4f3de. nvidia-smi samples every 50 ms
# while, in turn, each alone on the GPU: device-to-device copies (power_copy.cu, 3 s); the one-row
# products only (power_lab.cu: 32 layers of QKV + fc1 and dense + fc2, 3 s); the whole decode
# (one 64-token prompt, 1984 greedy steps, full cache). Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/decode_host_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n; mkdir -p /tmp/n
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j12 --target rankkv-bench rankkv-make-random-model > /tmp/build_n.log 2>&1 || { echo "build failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
nvcc -O2 -o /tmp/power_copy $L/power_copy.cu &
nvcc -O3 -arch=sm_90a -std=c++17 -Ikernels $L/power_lab.cu -o /tmp/power_lab &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/
nvidia-smi --query-gpu=timestamp,power.draw.instant,power.draw.average,clocks.sm,clocks.mem,temperature.gpu,clocks_event_reasons.active --format=csv -lms 50 > $R/run5_power.csv 2>&1 &
SMI=$!
mark() { echo "$(date +%Y/%m/%d\ %H:%M:%S.%N | cut -c1-23) $1" >> $R/run5_marks.txt; }
sleep 1.5; mark "copy start"; /tmp/power_copy 3 | tee $R/run5_copy.txt; mark "copy end"
sleep 1.5; mark "products start"; /tmp/power_lab 3 | tee $R/run5_products.txt; mark "products end"
sleep 1.5; mark "decode start"
/tmp/n/build/bin/rankkv-bench --model /tmp/rnd --target cuda --prompt-tokens 64 --new-tokens 1984 --kv full --repeats 1 2>/dev/null | tail -2 | tee $R/run5_decode.txt; mark "decode end"
sleep 1; kill $SMI
cat $R/run5_marks.txt
echo "done at $SECONDS s"
