#!/usr/bin/env bash
# Builds and runs gemm_lab.c (under .carry/h13/gemm/ when it ran) on the device; output gemm_lab.txt.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
CU=$(dirname $(dirname $(which nvcc)))
gcc -O2 -std=c11 .carry/h13/gemm/gemm_lab.c -I$CU/include -L$CU/lib64 -lcublasLt -lcudart -o /tmp/gemm_lab || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv
timeout 200 /tmp/gemm_lab 2>&1 | tee $R/gemm_lab.txt
