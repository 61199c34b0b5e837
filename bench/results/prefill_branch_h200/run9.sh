#!/usr/bin/env bash
# Run 9 (it ran as run8.sh; renamed, run 8 being pdl_event): the prompt mass kernel's cp.async wait (3fb84fa) on the device. a = 3fb84fa;
# c = a + branch7.patch; o = c with mass_fix.patch reverted (the kernel as it was in runs 1-7).
# ctest -L gpu on a, in the background, while H2O's greedy ids (runs 2-6's prompt and flags) run
# 15 times in each of c2 and c7 and 10 times in o2. If the missing wait was the cause, c shows only
# the first form (ba2c8f74268b) and o still shows the second (b0e105cc761c).
# Carry .carry/deps.tar.xz, .carry/mini2, .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/prefill_branch_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
rm -rf /tmp/a /tmp/c /tmp/o; mkdir -p /tmp/a  # the tests find ../shared = /tmp/shared
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/a
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
cp -r /tmp/a /tmp/c && (cd /tmp/c && patch -p1 < $L/branch7.patch > /dev/null) || { echo "patch c failed"; exit 1; }
cp -r /tmp/c /tmp/o && (cd /tmp/o && patch -R -p1 < $L/mass_fix.patch > /dev/null) || { echo "patch o failed"; exit 1; }
T="rankkv-make-random-model rankkv-generate"
(cd /tmp/a && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 > /tmp/build_a.log 2>&1 || { echo "build a failed"; grep error /tmp/build_a.log | head; }) &
for d in c o; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j4 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
(timeout 330 ctest --test-dir /tmp/a/build -L gpu -j4 --output-on-failure > /tmp/gpu.log 2>&1; echo "gpu tests rc=$? at $SECONDS s" >> /tmp/gpu.log) &
/tmp/c/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
run() { RK_BRANCH=${1#?} timeout 120 /tmp/${1:0:1}/build/bin/$2 "${@:3}"; }
for i in $(seq 15); do for t in c2 c7 $( [ $i -le 10 ] && echo o2 ); do run $t rankkv-generate $M --kv h2o --kv-budget 512 --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t h2o /"; done; done | tee $R/run9_ids.txt
echo "ids done at $SECONDS s"
wait
tail -1 /tmp/gpu.log; grep -E "tests passed|Failed|\*\*\*|check failed" /tmp/gpu.log | cut -c1-160 | head -30
grep -E "Test +#" /tmp/gpu.log > $R/run9_tests.txt; xz -c /tmp/gpu.log > $R/run9_gpu.log.xz
echo "done at $SECONDS s"
