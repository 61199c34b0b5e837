#!/usr/bin/env bash
# Builds gemm_lab.c from this folder and runs it with --sum on the device: random weights and
# inputs, and dense + fc2 as one GEMM over their inputs side by side against the two; output
# gemm_sum.txt. Carry .carry/deps.tar.xz.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
CU=$(dirname $(dirname $(which nvcc)))
gcc -O2 -std=c11 bench/results/prefill_h200/gemm_lab.c -I$CU/include -L$CU/lib64 -lcublasLt -lcudart -o /tmp/gemm_lab || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv
timeout 200 /tmp/gemm_lab --sum 2>&1 | tee $R/gemm_sum.txt
