#!/usr/bin/env bash
# Run 4: run 3 found H2O's greedy ids unstable under mode 2 only (main stream highest, side
# and branch lowest). branch4.patch adds mode 4 (main and side highest, branch lowest) and
# mode 5 (mode 2's priorities with no branch). H2O ids several times per mode, then TTFT/TPOT
# in three alternating rounds of a, c1, c2, c4. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c; mkdir -p /tmp/c
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/c
cp -r /tmp/c /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/prefill_branch_h200/branch4.patch > /dev/null) || { echo "patch failed"; exit 1; }
T="rankkv-bench rankkv-make-random-model rankkv-generate"
for d in a c; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
run() { case $1 in a) timeout 120 /tmp/a/build/bin/$2 "${@:3}";; c*) RK_BRANCH=${1#c} timeout 120 /tmp/c/build/bin/$2 "${@:3}";; esac; }
for t in a a c1 c1 c2 c2 c2 c4 c4 c4 c5 c5 c5; do run $t rankkv-generate $M --kv h2o --kv-budget 512 --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' > /tmp/ids.txt; echo "$t h2o $(md5sum < /tmp/ids.txt | cut -c1-12) $(tail -c 100 /tmp/ids.txt)"; done | tee $R/run4_ids.txt
echo "ids at $SECONDS s"
for round in 1 2 3; do for t in a c1 c2 c4; do
  run $t rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 5 > /tmp/bt.txt 2>/dev/null
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run4_times.txt
echo "done at $SECONDS s"
