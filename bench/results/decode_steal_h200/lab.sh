#!/usr/bin/env bash
# Lab over HEAD: steal.patch with env switches (RK_STEAL bits 1 single, 2 pair, 4 sum, 8 f32out;
# RK_WAVE=1 full-wave grid without stealing; RK_SHAPE_LOG=1 prints each launch's shape).
set -uo pipefail
H=$PWD/.carry/h14
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S /tmp/a $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a/ && (cd $S && patch -p1 < $H/lab.patch > /dev/null) || exit 1
(cd /tmp/a && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j6 --target rankkv-bench > /tmp/build_a.log 2>&1) &
cd $S && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j10 --target rankkv-bench rankkv-make-random-model test_cuda_gemv > /tmp/build_b.log 2>&1 || { grep -E "error" /tmp/build_b.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
wait; echo "built at $SECONDS s"
M="--model build/random-pythia-2.8b --target cuda"
RK_SHAPE_LOG=1 RK_STEAL=0 ./build/bin/rankkv-bench $M --prompt-tokens 512 --new-tokens 2 --kv full --repeats 1 2>&1 >/dev/null | grep shape | sort | uniq -c > $R/shapes0.txt
RK_SHAPE_LOG=1 RK_STEAL=15 ./build/bin/rankkv-bench $M --prompt-tokens 512 --new-tokens 2 --kv full --repeats 1 2>&1 >/dev/null | grep shape | sort | uniq -c > $R/shapes15.txt
cat $R/shapes0.txt $R/shapes15.txt
for round in 1 2; do for v in A S15 S0 W S4 S2 S8; do
  BIN=./build/bin/rankkv-bench; E=""
  case $v in A) BIN=/tmp/a/build/bin/rankkv-bench;; S15) E="RK_STEAL=15";; S0) E="RK_STEAL=0";; W) E="RK_STEAL=0 RK_WAVE=1";; S4) E="RK_STEAL=4";; S2) E="RK_STEAL=2";; S8) E="RK_STEAL=8";; esac
  env $E timeout 60 $BIN $M --prompt-tokens 512,1920 --new-tokens 128 --kv full --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $v round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/lab.txt
for st in 0 15; do
  RK_STEAL=$st timeout 120 ncu --clock-control none --kernel-name regex:gemv_kernel --launch-skip 130 --launch-count 130 --metrics gpu__time_duration.sum --csv ./build/bin/rankkv-bench $M --prompt-tokens 1920 --new-tokens 6 --kv full --repeats 1 > $R/ncu_steal$st.csv 2>/tmp/ncu.err; echo "ncu $st rc=$? at $SECONDS s"; tail -3 /tmp/ncu.err
done
timeout 90 compute-sanitizer --tool memcheck ./build/bin/test_cuda_gemv > /tmp/mc.log 2>&1; echo "memcheck rc=$?"; head -60 /tmp/mc.log > $R/mc.txt; grep SUMMARY /tmp/mc.log
./build/bin/test_cuda_gemv > $R/gemv.log 2>&1; echo "gemv test rc=$?"; tail -3 $R/gemv.log
echo "done at $SECONDS s"
