#!/usr/bin/env bash
# Lab: fc2 launched between the attention's split and merge (RK_FC2_FIRST), then the merge, then
# dense with fc2's fp32 output added. Run from the repository root at 7025162 with lab.patch applied
# (timing only; the switch is off by default). Output: fc2_lab.txt, fc2_checks.txt.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
cmake -S . -B build >/dev/null 2>&1
cmake --build build -j16 --target rankkv-bench rankkv-make-random-model test_cuda_vs_cpu rankkv-generate > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
echo "built at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1 &
for e in "" "RK_FC2_FIRST=1"; do env $e timeout 150 ./build/bin/test_cuda_vs_cpu > /tmp/t.log 2>&1; echo "test_cuda_vs_cpu [$e] rc=$? $(tail -2 /tmp/t.log | tr '\n' ' ')"; done 2>&1 | tee $R/tests.txt
wait; echo "model at $SECONDS s"
for e in "" "RK_FC2_FIRST=1"; do env $e ./build/bin/rankkv-generate --target cuda --max-new-tokens 48 > /tmp/gen.txt 2>/dev/null; echo "generate [$e] rc=$? md5 $(md5sum < /tmp/gen.txt)"; done | tee -a $R/tests.txt
CONFIGS=${CONFIGS:-"base F base F E0F"}
envof() { case $1 in base) echo "";; F) echo RK_FC2_FIRST=1;; E0F) echo RK_FC2_FIRST=1 RK_EARLY_ROWS=0;; *) echo "$1" | tr ',' ' ';; esac; }
for round in 1 2 3; do for c in $CONFIGS; do
  env $(envof $c) timeout 60 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $c round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
  [ $SECONDS -gt 500 ] && break 2
done; done 2>&1 | tee $R/fc2_lab.txt
echo "done at $SECONDS s"
