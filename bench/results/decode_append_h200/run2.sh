#!/usr/bin/env bash
# Run 2 (prepared 2026-12-02, not yet run): the sanitizers on 679bf12's append. memcheck and
# racecheck of test_cuda_attention --quick (its fused-call cases hold the append) and of
# test_sequence cuda.
# Carry .carry/deps.tar.xz.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; rm -rf $S; mkdir -p $S $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j16 --target test_cuda_attention test_sequence > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
echo "built at $SECONDS s"
for tool in memcheck racecheck; do for t in "test_cuda_attention --quick" "test_sequence cuda"; do
  timeout 200 compute-sanitizer --tool $tool --error-exitcode 9 ./build/bin/$t > /tmp/s.log 2>&1
  echo "$tool $t rc=$? at $SECONDS s: $(grep -E 'SUMMARY|hazard' /tmp/s.log | tail -1), $(grep 'checks,' /tmp/s.log | tail -1)" | tee -a $R/run2.txt
done; done
echo "done at $SECONDS s"
