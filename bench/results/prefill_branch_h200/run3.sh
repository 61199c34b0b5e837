#!/usr/bin/env bash
# Run 3: run 2's H2O greedy ids differed between a and c2 (full and SnapKV did not). Is H2O's
# output stable run to run in a, and which part of the patch moves it: the arena layout (c0:
# the patched binary, branch off), the branch (c1), the priorities (c2, c3)? Then
# test_kv_cuda_vs_cpu (H2O evicting on pythia-mini against the CPU target) for a and c2.
# Carry .carry/deps.tar.xz, .carry/mini2, .carry/wiki.test.raw.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c /tmp/shared; mkdir -p /tmp/c /tmp/shared/models/pythia-mini /tmp/shared/data/wikitext-2
xz -dc .carry/wiki.test.raw.xz > /tmp/shared/data/wikitext-2/wiki.test.raw
cp .carry/mini2/config.json /tmp/shared/models/pythia-mini/
xz -dc .carry/mini2/goldens.json.xz > /tmp/shared/models/pythia-mini/goldens.json
xz -dc .carry/mini2/tokenizer.json.xz > /tmp/shared/models/pythia-mini/tokenizer.json
xz -T2 -dc .carry/mini2/model.safetensors.xz > /tmp/shared/models/pythia-mini/model.safetensors &
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/c
cp -r /tmp/c /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/prefill_branch_h200/branch2.patch > /dev/null) || { echo "patch failed"; exit 1; }
T="rankkv-make-random-model rankkv-generate test_kv_cuda_vs_cpu"
for d in a c; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
run() { case $1 in a) timeout 120 /tmp/a/build/bin/$2 "${@:3}";; c*) RK_BRANCH=${1#c} timeout 120 /tmp/c/build/bin/$2 "${@:3}";; esac; }
for kv in h2o streamingllm; do for t in a a c0 c1 c2 c2 c3; do run $t rankkv-generate $M --kv $kv --kv-budget 512 --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' > /tmp/ids.txt; echo "$t $kv $(md5sum < /tmp/ids.txt | cut -c1-12) $(head -c 120 /tmp/ids.txt)"; done; done | tee $R/run3_ids.txt
echo "ids at $SECONDS s"
for t in a c2; do (cd /tmp/${t:0:1} && RK_BRANCH=2 timeout 200 ./build/bin/test_kv_cuda_vs_cpu > /tmp/t_$t.txt 2>&1; echo "$t: test_kv_cuda_vs_cpu rc=$? $(tail -1 /tmp/t_$t.txt)"; grep -i fail /tmp/t_$t.txt | head -5); done 2>&1 | tee $R/run3_tests.txt
echo "done at $SECONDS s"
