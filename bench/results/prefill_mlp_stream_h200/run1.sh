#!/usr/bin/env bash
# Run 1: cae111f (a prompt's fc1 + GELU on a lowest-priority stream; stream.patch is its diff
# from 3fb84fa) against b = 3fb84fa. p = cae111f + ws_probe.patch prints the workspace each GEMM
# plan's algorithm needs and what the heuristic picks under smaller limits. Then: TTFT/TPOT in
# three alternating rounds; H2O's greedy ids (10 n, 3 b; prefill_branch_h200's prompt and
# flags); the full cache's perplexity to 17 digits (4 windows of 800); the record command for
# bench/results/cuda_h200.json; ctest -L gpu on n, alone on the GPU.
# Carry .carry/deps.tar.xz, .carry/mini2, .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/prefill_mlp_stream_h200; COMMIT=cae111f
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
rm -rf /tmp/n /tmp/b /tmp/p; mkdir -p /tmp/n  # the tests find ../shared = /tmp/shared
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
cp -r /tmp/n /tmp/b && (cd /tmp/b && patch -R -p1 < $L/stream.patch > /dev/null) || { echo "patch b failed"; exit 1; }
cp -r /tmp/n /tmp/p && (cd /tmp/p && patch -p1 < $L/ws_probe.patch > /dev/null) || { echo "patch p failed"; exit 1; }
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j10 > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep error /tmp/build_n.log | head; }) &
(cd /tmp/b && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j4 --target rankkv-bench rankkv-generate rankkv-ppl > /tmp/build_b.log 2>&1 || { echo "build b failed"; grep error /tmp/build_b.log | head; }) &
(cd /tmp/p && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j2 --target rankkv-generate > /tmp/build_p.log 2>&1 || { echo "build p failed"; grep error /tmp/build_p.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/n/build/random-pythia-2.8b > /dev/null 2>&1
ln -sfn /tmp/n/build/random-pythia-2.8b /tmp/rnd
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt; head -c 20000 $P/README.md > /tmp/text.txt
M="--model /tmp/rnd --target cuda"
run() { timeout 120 /tmp/$1/build/bin/$2 "${@:3}"; }
RK_LAB_WS=1 run p rankkv-generate $M --prompt-file /tmp/prompt.txt --max-new-tokens 1 --quiet 2>&1 >/dev/null | grep "^ws" > $R/run1_ws.txt; echo "probe: $(wc -l < $R/run1_ws.txt) plans at $SECONDS s"
for round in 1 2 3; do for t in b n; do
  run $t rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 5 > /tmp/bt.txt 2>/dev/null
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt | grep "=="
for i in $(seq 10); do for t in n $( [ $i -le 3 ] && echo b ); do run $t rankkv-generate $M --kv h2o --kv-budget 512 --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t h2o /"; done; done > $R/run1_ids.txt; sort $R/run1_ids.txt | uniq -c
for t in b n n; do echo "$t ppl w800 $(run $t rankkv-ppl $M --text /tmp/text.txt --window 800 --chunk 800 --max-windows 4 --json 2>/dev/null | tail -1 | grep -o '"ppl":[^,]*')"; done | tee $R/run1_ppl.txt
echo "record at $SECONDS s"
(cd /tmp/n && RANKKV_COMMIT=$COMMIT ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > $R/run1_record.txt 2>&1; echo "record rc=$?"; cp bench/results/cuda_h200.json $R/)
cat $R/run1_record.txt | head -20
wait; echo "gpu tests from $SECONDS s"
timeout $((550 - SECONDS)) ctest --test-dir /tmp/n/build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"
grep -E "tests passed|Failed|\*\*\*|check failed" /tmp/gpu.log | cut -c1-160 | head -30
grep -E "Test +#" /tmp/gpu.log > $R/run1_tests.txt; xz -c /tmp/gpu.log > $R/run1_gpu.log.xz
echo "done at $SECONDS s"
