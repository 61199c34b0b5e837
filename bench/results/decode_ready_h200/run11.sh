#!/usr/bin/env bash
# Run 11: x's fill with its loads out together (B, this tree) against the tree before it (A: B with
# fill.patch, the commit's kernels/gemv.cu diff, reversed). Greedy ids, 3
# alternating rounds, the record run of B (the #15 command, repeats 5), the GPU tests, memcheck
# and racecheck of test_cuda_gemv. Carry .carry/deps.tar.xz, .carry/mini2, .carry/wiki.test.raw.xz
# and fill.patch from this folder; RANKKV_COMMIT names B's commit.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src11; R=$OUT/res; rm -rf $S /tmp/a11 /tmp/shared; mkdir -p $S /tmp/a11 $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a11/ && (cd /tmp/a11 && patch -R -p1 < $P/bench/results/decode_ready_h200/fill.patch > /dev/null) || { echo "reverse patch failed"; exit 1; }
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
(cd /tmp/a11 && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j4 --target rankkv-bench rankkv-generate > /tmp/build_a.log 2>&1) &
cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j12 > /tmp/build_b.log 2>&1 || { grep -E "error" /tmp/build_b.log | head -30; exit 1; }
echo "built b at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json build/random-pythia-2.8b/
wait
ls /tmp/a11/build/bin/rankkv-bench > /dev/null || { tail -20 /tmp/build_a.log; exit 1; }
echo "built at $SECONDS s"
BIN() { case $1 in a) echo /tmp/a11/build/bin/$2;; b) echo $S/build/bin/$2;; esac; }
M="--model build/random-pythia-2.8b --target cuda"
for t in a b; do for kv in full h2o; do $(BIN $t rankkv-generate) $M --kv $kv $( [ $kv = h2o ] && echo --kv-budget 512) --max-new-tokens 64 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/$t $kv ids /"; done; done | tee $R/run11_ids.txt
for round in 1 2 3; do for t in a b; do
  timeout 60 $(BIN $t rankkv-bench) $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/run11.txt
RANKKV_COMMIT=$RANKKV_COMMIT timeout 120 ./build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > $R/record.txt 2>&1; echo "record rc=$? at $SECONDS s"; cat $R/record.txt
cp bench/results/cuda_h200.json $R/cuda_h200.json
timeout 200 ctest --test-dir build -L gpu -j4 --output-on-failure > $R/run11_gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed|DIFFERS" $R/run11_gpu.log | cut -c1-160 | head -30
[ $SECONDS -lt 500 ] && { timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/mc.log 2>&1; echo "memcheck test_cuda_gemv rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1)"; }
[ $SECONDS -lt 530 ] && { timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 ./build/bin/test_cuda_gemv > /tmp/rc.log 2>&1; echo "racecheck test_cuda_gemv rc=$? at $SECONDS s: $(tail -1 /tmp/rc.log)"; }
echo "done at $SECONDS s"
