#!/usr/bin/env bash
# Run 5: where does run 3-4's H2O instability come from? branch7.patch adds mode 7 (mode 2's
# priorities, fc1 forked after QKV and joined before dense: no two GEMMs at once).
# 1. Full-cache perplexity of 4 windows of 1024 tokens (one 1024-row prefill each), printed to
#    17 digits, several times per mode: any bit that moves in a prefill moves it.
# 2. H2O greedy ids, five times per mode.  3. TTFT/TPOT, one round of a, c1, c2, c7.
# Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c; mkdir -p /tmp/c
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/c
cp -r /tmp/c /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/prefill_branch_h200/branch7.patch > /dev/null) || { echo "patch failed"; exit 1; }
T="rankkv-bench rankkv-make-random-model rankkv-generate rankkv-ppl"
for d in a c; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt; head -c 20000 $P/README.md > /tmp/text.txt
M="--model /tmp/rnd --target cuda"
run() { case $1 in a) timeout 120 /tmp/a/build/bin/$2 "${@:3}";; c*) RK_BRANCH=${1#c} timeout 120 /tmp/c/build/bin/$2 "${@:3}";; esac; }
for t in a a c1 c1 c2 c2 c2 c7 c7; do echo "$t ppl $(run $t rankkv-ppl $M --text /tmp/text.txt --window 1024 --chunk 1024 --max-windows 4 --json 2>/dev/null | tail -1 | grep -o '"ppl":[^,]*')"; done | tee $R/run5_ppl.txt
echo "ppl at $SECONDS s"
for t in c1 c2 c7; do for i in 1 2 3 4 5; do run $t rankkv-generate $M --kv h2o --kv-budget 512 --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t h2o /"; done; done | tee $R/run5_ids.txt
echo "ids at $SECONDS s"
for t in a c1 c2 c7; do
  run $t rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 5 > /tmp/bt.txt 2>/dev/null
  echo "== $t round 1 rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done 2>&1 | tee $R/run5_times.txt
echo "done at $SECONDS s"
