#!/usr/bin/env bash
# Run 1: mma_lab.cu on the device (every variant's time and its difference from the landed
# kernel's output; then the landed chain and the chosen MMA chain for 3 s each) with nvidia-smi
# sampling power and SM clock every 50 ms. Carry nothing.
set -uo pipefail
L=$PWD/bench/results/gemv_mma_h200; R=$OUT/res; mkdir -p $R
nvcc -O3 -arch=sm_90a -std=c++17 -Ikernels $L/mma_lab.cu -o /tmp/mma_lab || exit 1
echo "built at $SECONDS s"
nvidia-smi --query-gpu=timestamp,power.draw.instant,power.draw.average,clocks.sm,clocks.mem,temperature.gpu,clocks_event_reasons.active --format=csv -lms 50 > $R/run1_power.csv 2>&1 &
SMI=$!
sleep 1
timeout 200 /tmp/mma_lab 3 | tee $R/run1_lab.txt
sleep 1; kill $SMI
echo "done at $SECONDS s"
