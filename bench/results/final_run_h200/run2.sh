#!/usr/bin/env bash
# test_sequence on the CUDA target after the review (whole runs only after the prompt; the
# past-the-plan case as a whole run). Carry .carry/deps.tar.xz.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; rm -rf $S; mkdir -p $S $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j16 --target test_sequence > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
echo "built at $SECONDS s"
timeout 60 ./build/bin/test_sequence cuda 2>&1 | tee $R/test_sequence_cuda.txt | grep -E "greedy|checks"
echo "done at $SECONDS s"
