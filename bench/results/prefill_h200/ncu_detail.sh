#!/usr/bin/env bash
# ncu detail of the prefill's non-GEMM kernels at 1920 (HEAD): speed of light, memory and warp-state sections.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
cmake -S . -B build >/dev/null 2>&1
cmake --build build -j16 --target rankkv-bench rankkv-make-random-model > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
echo "ready at $SECONDS s"
timeout 150 ncu --clock-control none -k regex:"qkv_rotary|gelu_kernel|add_layernorm|prefill_kernel" -c 4 --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 1920 --new-tokens 1 --kv full --repeats 1 > $R/ncu_detail_1920.txt 2> /tmp/ncu.err; echo "ncu rc=$? at $SECONDS s"; tail -3 /tmp/ncu.err
wc -l $R/ncu_detail_1920.txt
