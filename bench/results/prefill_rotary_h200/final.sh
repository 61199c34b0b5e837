#!/usr/bin/env bash
# A = f8b047c (this tree with code.patch reversed), B = this tree (60d3d71). Greedy ids, 2 alternating
# rounds, the record run of B (the #15 command, repeats 5), ncu of rotary and LayerNorm in B, GPU tests
# and memcheck on B.
set -uo pipefail
H=$PWD/.carry/h15
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src2; R=$OUT/res; rm -rf $S /tmp/a2 /tmp/shared; mkdir -p $S /tmp/a2 $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a2/ && (cd /tmp/a2 && patch -R -p1 < $H/code.patch > /dev/null) || exit 1
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
(cd /tmp/a2 && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j4 --target rankkv-bench rankkv-generate > /tmp/build_a.log 2>&1) &
cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j12 > /tmp/build_b.log 2>&1 || { grep -E "error" /tmp/build_b.log | head -30; exit 1; }
echo "built b at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json build/random-pythia-2.8b/
wait
ls /tmp/a2/build/bin/rankkv-bench > /dev/null || { tail -20 /tmp/build_a.log; exit 1; }
echo "built at $SECONDS s"
BIN() { case $1 in a) echo /tmp/a2/build/bin/$2;; b) echo $S/build/bin/$2;; esac; }
M="--model build/random-pythia-2.8b --target cuda"
for t in a b; do $(BIN $t rankkv-generate) $M --max-new-tokens 64 --ignore-eos --json --quiet > /tmp/g.txt 2>/dev/null; echo "generate $t rc=$? ids md5 $(grep -o '"output_ids":[^]]*' /tmp/g.txt | md5sum)"; done | tee $R/ids.txt
for round in 1 2; do for t in a b; do
  timeout 60 $(BIN $t rankkv-bench) $M --prompt-tokens 512,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/ab.txt
RANKKV_COMMIT=60d3d71 timeout 100 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > $R/record.txt 2>&1; echo "record rc=$? at $SECONDS s"; cat $R/record.txt
cp bench/results/cuda_h200.json $R/cuda_h200.json
for p in 1920 512; do timeout 60 ncu --clock-control none -k regex:"qkv_rotary|layernorm" -c 8 --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__registers_per_thread --csv ./build/bin/rankkv-bench $M --prompt-tokens $p --new-tokens 1 --kv full --repeats 1 > $R/ncu_$p.csv 2>/dev/null; echo "ncu $p rc=$? at $SECONDS s"; done
timeout 200 ctest --test-dir build -L gpu -j4 --output-on-failure > $R/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed|DIFFERS" $R/gpu.log | cut -c1-160 | head -30
[ $SECONDS -lt 500 ] && { timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_attention --quick > /tmp/mc.log 2>&1; echo "memcheck attention rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1)"; }
[ $SECONDS -lt 520 ] && { timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 ./build/bin/test_cuda_attention --quick > /tmp/rc.log 2>&1; echo "racecheck attention rc=$? at $SECONDS s: $(tail -1 /tmp/rc.log)"; }
[ $SECONDS -lt 540 ] && { timeout 50 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/rankkv-generate --target cuda --max-new-tokens 8 > /tmp/mc2.log 2>&1; echo "memcheck generate nano rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc2.log | tail -1)"; }
echo "done at $SECONDS s"
