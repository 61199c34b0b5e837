#!/usr/bin/env bash
# Run 4: where the board's power goes, at 91468b2. nvidia-smi samples power, SM clock and the
# clock-event reasons every 50 ms while, in turn: idle; device-to-device copies only (power_copy.cu,
# 3 s); decode only (one 64-token prompt, 1984 greedy steps, full cache; the warm-up and one timed
# run); idle; prefill only (1920-token prompts, one new token, 50 repeats). Then test_sequence on
# the CUDA target. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/decode_host_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n; mkdir -p /tmp/n
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j14 --target rankkv-bench rankkv-make-random-model test_sequence > /tmp/build_n.log 2>&1 || { echo "build failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
nvcc -O2 -o /tmp/power_copy $L/power_copy.cu &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/
M="--model /tmp/rnd --target cuda"
nvidia-smi --query-gpu=timestamp,power.draw.instant,power.draw.average,clocks.sm,clocks.mem,temperature.gpu,clocks_event_reasons.active --format=csv -lms 50 > $R/run4_power.csv 2>&1 &
SMI=$!
mark() { echo "$(date +%Y/%m/%d\ %H:%M:%S.%N | cut -c1-23) $1" >> $R/run4_marks.txt; }
sleep 1.5; mark "copy start"; /tmp/power_copy 3 | tee $R/run4_copy.txt; mark "copy end"
sleep 1.5; mark "decode start"
/tmp/n/build/bin/rankkv-bench $M --prompt-tokens 64 --new-tokens 1984 --kv full --repeats 1 2>/dev/null | tail -2 | tee $R/run4_decode.txt; mark "decode end"
sleep 1.5; mark "prefill start"
/tmp/n/build/bin/rankkv-bench $M --prompt-tokens 1920 --new-tokens 1 --kv full --repeats 50 2>/dev/null | tail -2 | tee $R/run4_prefill.txt; mark "prefill end"
sleep 1; kill $SMI
cat $R/run4_marks.txt
timeout 200 /tmp/n/build/bin/test_sequence cuda > $R/run4_test_sequence.txt 2>&1; echo "test_sequence cuda rc=$? $(tail -1 $R/run4_test_sequence.txt)"
echo "done at $SECONDS s"
