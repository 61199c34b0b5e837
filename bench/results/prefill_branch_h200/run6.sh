#!/usr/bin/env bash
# Run 6: more samples of H2O's greedy ids. Runs 2-5 saw the second output (b0e105cc761c) only
# with the branch at a lower priority than the main stream (modes 2, 4, 7): 6 of 19, against
# 0 of 8 for mode 1 and 0 of 3 for mode 5 (mode 2's priorities with no branch). Ten each of
# modes 1 and 5 and four of a tell whether the priorities alone expose it. Same binaries as
# run 5 (branch7.patch). Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c; mkdir -p /tmp/c
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/c
cp -r /tmp/c /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/prefill_branch_h200/branch7.patch > /dev/null) || { echo "patch failed"; exit 1; }
T="rankkv-make-random-model rankkv-generate"
for d in a c; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
run() { case $1 in a) timeout 120 /tmp/a/build/bin/$2 "${@:3}";; c*) RK_BRANCH=${1#c} timeout 120 /tmp/c/build/bin/$2 "${@:3}";; esac; }
for i in 1 2 3 4 5 6 7 8 9 10; do for t in c5 c1 $( [ $i -le 4 ] && echo a ); do run $t rankkv-generate $M --kv h2o --kv-budget 512 --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t h2o /"; done; done | tee $R/run6_ids.txt
echo "done at $SECONDS s"
