#!/usr/bin/env bash
# Lab: weights prefetched into L2 (cp.async.bulk.prefetch) in the decode step's latency-bound windows,
# and products held to fewer blocks an SM. Run from the repository root at 7025162 with lab.patch
# applied (timing only; every knob off by default) and the device's libraries in .carry/deps.tar.xz.
# One build; the knobs (environment) select each variant; the variants alternate, ROUNDS times.
#   run 1: bash warm.sh                                   -> warm_lab1.txt
#   run 2: CONFIGS="base PP3 SP2 PP3,RK_WARM_SUM_KB=16 S16" ROUNDS=3 bash warm.sh -> warm_lab2.txt
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
cmake -S . -B build >/dev/null 2>&1
cmake --build build -j16 --target rankkv-bench rankkv-make-random-model > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
echo "built at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
echo "model at $SECONDS s"
CONFIGS=${CONFIGS:-"base P16 P64 S16 S64 A512 A1024 P64S64 P64A1024 E0S64"}
envof() { case $1 in
  base) echo "";; P16) echo RK_WARM_PAIR_KB=16;; P64) echo RK_WARM_PAIR_KB=64;;
  S16) echo RK_WARM_SUM_KB=16;; S64) echo RK_WARM_SUM_KB=64;;
  A512) echo RK_WARM_ATTN_ROWS=512;; A1024) echo RK_WARM_ATTN_ROWS=1024;;
  P64S64) echo RK_WARM_PAIR_KB=64 RK_WARM_SUM_KB=64;;
  P64A1024) echo RK_WARM_PAIR_KB=64 RK_WARM_ATTN_ROWS=1024;;
  E0S64) echo RK_EARLY_ROWS=0 RK_WARM_SUM_KB=64;;
  PP3) echo RK_PAIR_PER_SM=3;; SP2) echo RK_SUM_PER_SM=2;;
  PP3,*) echo RK_PAIR_PER_SM=3 ${1#PP3,};;
  *) echo "$1" | tr ',' ' ';; esac; }
for round in $(seq ${ROUNDS:-2}); do for c in $CONFIGS; do
  env $(envof $c) timeout 60 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $c round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
  [ $SECONDS -gt 520 ] && break 2
done; done 2>&1 | tee $R/warm_lab.txt  # renamed warm_lab1.txt / warm_lab2.txt
echo "done at $SECONDS s"
