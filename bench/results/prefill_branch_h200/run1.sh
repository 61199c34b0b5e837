#!/usr/bin/env bash
# Run 1: a prompt's fc1 GEMM + GELU on a stream of their own (branch.patch, switched by
# RK_BRANCH), beside QKV, rotary, the attention and dense on the main stream; fc2 waits for
# both. Modes: 0 off, 1 both streams at the default priority, 2 main stream highest and the
# branch lowest, 3 the branch highest. c is this tree with the patch; a is it without.
# Checks: test_cuda_vs_cpu and greedy ids under each mode; then TTFT/TPOT in three
# alternating rounds. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c; mkdir -p /tmp/c
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/c
cp -r /tmp/c /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/prefill_branch_h200/branch.patch > /dev/null) || { echo "patch failed"; exit 1; }
T="rankkv-bench rankkv-make-random-model rankkv-generate test_cuda_vs_cpu"
for d in a c; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
M="--model /tmp/rnd --target cuda"
run() { case $1 in a) timeout 120 /tmp/a/build/bin/$2 "${@:3}";; c*) RK_BRANCH=${1#c} timeout 120 /tmp/c/build/bin/$2 "${@:3}";; esac; }
head -c 3000 $P/README.md > /tmp/prompt.txt
for t in a c0 c1 c2 c3; do for kv in full snapkv h2o; do B="--kv-budget 512"; [ $kv = full ] && B=; run $t rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/$t $kv ids /"; done; done | tee $R/run1_ids.txt
for t in c1 c2; do run $t test_cuda_vs_cpu /tmp/rnd > /tmp/t.txt 2>&1; echo "$t: test_cuda_vs_cpu rc=$? $(tail -1 /tmp/t.txt)"; grep -i fail /tmp/t.txt | head -5; done 2>&1 | tee $R/run1_tests.txt
echo "checked at $SECONDS s"
for round in 1 2 3; do for t in a c0 c1 c2 c3; do
  run $t rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 16 --kv full,snapkv,h2o --kv-budget 512 --repeats 5 > /tmp/bt.txt 2>/dev/null
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
echo "done at $SECONDS s"
