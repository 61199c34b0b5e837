#!/usr/bin/env bash
# Run 3: the sanitizers on the landed change (3e541c7's code): memcheck and racecheck of
# test_cuda_gemv (the sum's cp.async.ca copies and the barrier after them).
# Carry .carry/deps.tar.xz.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; rm -rf $S; mkdir -p $S $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j16 --target test_cuda_gemv > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
echo "built at $SECONDS s"
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/mc.log 2>&1; echo "memcheck test_cuda_gemv rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1), $(grep 'checks,' /tmp/mc.log | tail -1)" | tee -a $R/run3.txt
timeout 75 compute-sanitizer --tool racecheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/rc.log 2>&1; echo "racecheck test_cuda_gemv rc=$? at $SECONDS s: $(grep -E 'SUMMARY|hazard' /tmp/rc.log | tail -1), $(grep 'checks,' /tmp/rc.log | tail -1)" | tee -a $R/run3.txt
echo "done at $SECONDS s"
