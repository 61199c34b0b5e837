#!/usr/bin/env bash
# Next session: A = HEAD, B = HEAD + steal.patch (split-row products take their groups from a counter,
# full wave). Bench alternated (3 rounds, full/snapkv/h2o at 512 and 1920), test_cuda_gemv on B,
# ctest -L gpu on B, memcheck + racecheck of test_cuda_gemv on B. Carry .carry/deps.tar.xz,
# .carry/h13, .carry/mini2, .carry/wiki.test.raw.xz (move events_K4.json out first).
set -uo pipefail
H=$PWD/.carry/h13
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S /tmp/a $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a/ && (cd $S && patch -p1 < $H/steal.patch > /dev/null) || exit 1
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
(cd /tmp/a && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j4 --target rankkv-bench > /tmp/build_a.log 2>&1) &
cd $S && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j12 > /tmp/build_b.log 2>&1 || { grep -E "error" /tmp/build_b.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
wait; echo "built at $SECONDS s"
./build/bin/test_cuda_gemv > $R/gemv.log 2>&1; echo "test_cuda_gemv rc=$?: $(tail -1 $R/gemv.log)"
for round in 1 2 3; do for t in a b; do
  case $t in a) BIN=/tmp/a/build/bin/rankkv-bench;; b) BIN=./build/bin/rankkv-bench;; esac
  timeout 60 $BIN --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/ab.txt
timeout 200 ctest --test-dir build -L gpu -j4 --output-on-failure > $R/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed" $R/gpu.log | head
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/mc.log 2>&1; echo "memcheck gemv rc=$?: $(grep SUMMARY /tmp/mc.log | tail -1)"
timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/rc.log 2>&1; echo "racecheck gemv rc=$?: $(grep SUMMARY /tmp/rc.log | tail -1)"
echo "done at $SECONDS s"
