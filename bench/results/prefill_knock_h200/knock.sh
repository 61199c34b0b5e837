#!/usr/bin/env bash
# TTFT with prefill launches left out (timing only, knock.patch): what each small kernel costs in the step.
set -uo pipefail
H=$PWD/bench/results/prefill_knock_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src4; R=$OUT/res; rm -rf $S; mkdir -p $S $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cd $S && patch -p1 < $H/knock.patch > /dev/null || exit 1
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j16 --target rankkv-bench rankkv-make-random-model > /tmp/build.log 2>&1 || { grep error /tmp/build.log | head; exit 1; }
echo "built at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
echo "model at $SECONDS s"
for round in 1 2; do for k in none rotary norm gelu attn; do
  RK_KNOCK=$k timeout 30 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 2 --kv full --repeats 5 > /tmp/b.txt 2>/dev/null
  echo "== $k round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
  [ $SECONDS -gt 200 ] && break 2
done; done 2>&1 | tee $R/knock.txt
