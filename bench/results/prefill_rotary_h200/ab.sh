#!/usr/bin/env bash
# A = HEAD (the working tree with new.patch reversed), B = the working tree (prefill rotary through
# shared memory, prompt LayerNorms a warp a row). Greedy ids; TTFT/TPOT alternating; ncu of the two
# kernels in both; GPU tests and memcheck on B.
set -uo pipefail
H=$PWD/.carry/h15
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; rm -rf $S /tmp/a /tmp/shared; mkdir -p $S /tmp/a $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a/ && (cd /tmp/a && patch -R -p1 < $H/new.patch > /dev/null) || exit 1
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
(cd /tmp/a && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j4 --target rankkv-bench rankkv-generate > /tmp/build_a.log 2>&1) &
cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j12 > /tmp/build_b.log 2>&1 || { grep -E "error" /tmp/build_b.log | head -30; exit 1; }
echo "built b at $SECONDS s"
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json /tmp/rnd/
wait
ls /tmp/a/build/bin/rankkv-bench > /dev/null || { tail -20 /tmp/build_a.log; exit 1; }
echo "built at $SECONDS s"
BIN() { case $1 in a) echo /tmp/a/build/bin/$2;; b) echo $S/build/bin/$2;; esac; }
M="--model /tmp/rnd --target cuda"
for t in a b; do $(BIN $t rankkv-generate) $M --max-new-tokens 64 --ignore-eos --json --quiet > /tmp/g.txt 2>/dev/null; echo "generate $t rc=$? ids md5 $(grep -o '"output_ids":[^]]*' /tmp/g.txt | md5sum)"; done | tee $R/ids.txt
for round in 1 2 3; do for t in a b; do
  timeout 60 $(BIN $t rankkv-bench) $M --prompt-tokens 512,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/ab.txt
for t in a b; do for p in 1920 512; do timeout 60 ncu --clock-control none -k regex:"qkv_rotary|layernorm" -c 8 --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__registers_per_thread --csv $(BIN $t rankkv-bench) $M --prompt-tokens $p --new-tokens 1 --kv full --repeats 1 > $R/ncu_${t}_$p.csv 2>/dev/null; echo "ncu $t $p rc=$? at $SECONDS s"; done; done
timeout 200 ctest --test-dir build -L gpu -j4 --output-on-failure > $R/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"; grep -E "tests passed|Failed|\*\*\*|check failed|DIFFERS" $R/gpu.log | cut -c1-160 | head -30
[ $SECONDS -lt 500 ] && { timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/test_cuda_attention --quick > /tmp/mc.log 2>&1; echo "memcheck attention rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc.log | tail -1)"; }
[ $SECONDS -lt 530 ] && { timeout 50 compute-sanitizer --tool memcheck --error-exitcode 9 ./build/bin/rankkv-generate --target cuda --max-new-tokens 8 > /tmp/mc2.log 2>&1; echo "memcheck generate nano rc=$? at $SECONDS s: $(grep SUMMARY /tmp/mc2.log | tail -1)"; }
echo "done at $SECONDS s"
