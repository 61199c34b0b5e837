#!/usr/bin/env bash
# Run 4: a668c2e (n: fc2 on the branch too, after fc1 + GELU and beside the attention; dense
# added on the main stream once both are done; fc2.patch is its diff from 4fb7601) against
# o = 4fb7601. TTFT/TPOT in three alternating rounds at 128, 512 and 1920 tokens (below 384 rows
# fc2's plan without workspace is another algorithm than with 32 MiB: run2_ws.txt); H2O's
# greedy ids (3 n, 2 o); the full cache's perplexity (the sum's order changed, so its bits may);
# then, only if n's full-cache TTFT is lower at 512 and at 1920, the record command and ctest -L
# gpu on n, alone on the GPU. Carry .carry/deps.tar.xz, .carry/mini2, .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/prefill_mlp_stream_h200; COMMIT=a668c2e
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
rm -rf /tmp/n /tmp/o; mkdir -p /tmp/n  # the tests find ../shared = /tmp/shared
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
cp -r /tmp/n /tmp/o && (cd /tmp/o && patch -R -p1 < $L/fc2.patch > /dev/null) || { echo "patch o failed"; exit 1; }
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j11 > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep error /tmp/build_n.log | head; }) &
(cd /tmp/o && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench rankkv-generate rankkv-ppl > /tmp/build_o.log 2>&1 || { echo "build o failed"; grep error /tmp/build_o.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/n/build/random-pythia-2.8b > /dev/null 2>&1
ln -sfn /tmp/n/build/random-pythia-2.8b /tmp/rnd
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt; head -c 20000 $P/README.md > /tmp/text.txt
M="--model /tmp/rnd --target cuda"
run() { timeout 120 /tmp/$1/build/bin/$2 "${@:3}"; }
for round in 1 2 3; do for t in o n; do
  run $t rankkv-bench $M --prompt-tokens 128,512,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 5 > /tmp/bt.txt 2>/dev/null
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run4_times.txt | grep "=="
for t in n o n o n; do run $t rankkv-generate $M --kv h2o --kv-budget 512 --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t h2o /"; done > $R/run4_ids.txt; sort $R/run4_ids.txt | uniq -c
for t in o n; do echo "$t ppl w800 $(run $t rankkv-ppl $M --text /tmp/text.txt --window 800 --chunk 800 --max-windows 4 --json 2>/dev/null | tail -1 | grep -o '"ppl":[^,]*')"; done | tee $R/run4_ppl.txt
mean() { awk -v b=$1 -v c=$2 '/^==/{t=$2} t==b && $1=="full" && $2==c {s+=$3; k++} END{printf "%.4f", s/k}' $R/run4_times.txt; }
better=1; for ctx in 512 1920; do o=$(mean o $ctx); n=$(mean n $ctx); echo "full $ctx: o $o n $n"; awk -v o=$o -v n=$n 'BEGIN{exit !(n < o)}' || better=0; done
if [ $better = 1 ]; then
  (cd /tmp/n && RANKKV_COMMIT=$COMMIT ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full,snapkv,h2o,streamingllm --kv-budget 512 --repeats 5 --out bench/results/cuda_h200.json > $R/run4_record.txt 2>&1; echo "record rc=$?"; cp bench/results/cuda_h200.json $R/)
  tail -9 $R/run4_record.txt
  wait; echo "gpu tests from $SECONDS s"
  timeout $((560 - SECONDS)) ctest --test-dir /tmp/n/build -L gpu --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s"
  grep -E "tests passed|Failed|\*\*\*|check failed" /tmp/gpu.log | cut -c1-160 | head -30
  grep -E "Test +#" /tmp/gpu.log > $R/run4_tests.txt; xz -c /tmp/gpu.log > $R/run4_gpu.log.xz
else echo "n not faster at both: no record, no tests"; fi
echo "done at $SECONDS s"
