#!/usr/bin/env bash
# A = 7025162 (the working tree with both.patch reversed), B = A + rot.patch (rotary only), C = the
# working tree (rotary + GELU). Bench alternated; C's repeats-5 run would have been the record (not kept);
# per-kernel ncu of the two kernels in A and C; GPU tests and memcheck on C.
# both.patch and rot.patch are this folder's loads_together.patch and loads_together_rotary.patch,
# under .carry/h13/ when it ran (RANKKV_P=ae5d60f bash .carry/h13/final.sh).
set -uo pipefail
H=$PWD/.carry/h13; P=${RANKKV_P:?}
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S /tmp/a /tmp/b $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a/ && (cd /tmp/a && patch -R -p1 < $H/both.patch > /dev/null) || exit 1
cp -r /tmp/a/. /tmp/b/ && (cd /tmp/b && patch -p1 < $H/rot.patch > /dev/null) || exit 1
grep -c kGeluChunks /tmp/a/kernels/elementwise.cu /tmp/b/kernels/elementwise.cu $S/kernels/elementwise.cu
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
(for t in a b; do cd /tmp/$t && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j3 --target rankkv-bench > /tmp/build_$t.log 2>&1; done) &
cd $S && mkdir -p bench/results
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j12 > /tmp/build_p.log 2>&1 || { grep -E "error" /tmp/build_p.log | head -30; exit 1; }
echo "built c at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
wait
ls /tmp/a/build/bin/rankkv-bench /tmp/b/build/bin/rankkv-bench > /dev/null || { tail -20 /tmp/build_a.log /tmp/build_b.log; exit 1; }
echo "built at $SECONDS s"
BIN() { case $1 in a) echo /tmp/a/build/bin/rankkv-bench;; b) echo /tmp/b/build/bin/rankkv-bench;; c) echo ./build/bin/rankkv-bench;; esac; }
for round in 1 2; do for t in a b c; do
  timeout 60 $(BIN $t) --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/ab.txt
for t in a c; do
  case $t in a) export RANKKV_COMMIT=7025162; OUTF=bench/results/r_a_5.json;; c) export RANKKV_COMMIT=$P; OUTF=bench/results/cuda_h200.json;; esac
  timeout 100 $(BIN $t) --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out $OUTF > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t ($RANKKV_COMMIT) repeats 5 rc=$? at $SECONDS s"; awk '{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done 2>&1 | tee $R/bench5.txt
unset RANKKV_COMMIT
cp bench/results/cuda_h200.json $R/cuda_h200.json; cp bench/results/r_a_5.json $R/bench_7025162.json
for t in a c; do timeout 60 ncu --clock-control none -k regex:"qkv_rotary|gelu" -c 6 --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --csv $(BIN $t) --model build/random-pythia-2.8b --target cuda --prompt-tokens 1920 --new-tokens 1 --kv full --repeats 1 > $R/ncu_$t.csv 2>/dev/null; echo "ncu $t rc=$? at $SECONDS s"; done
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/rankkv-generate --target cuda --max-new-tokens 8 > /tmp/mc2.log 2>&1; echo "memcheck generate nano rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc2.log | tail -1)"
timeout 200 ctest --test-dir build -L gpu -j4 --output-on-failure > $R/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed|DIFFERS" $R/gpu.log | cut -c1-160 | head -30
echo "done at $SECONDS s"
