#!/usr/bin/env bash
# Run 7: H2O's second output is one late near-tie flipping, so the perturbation is small. Run 5's
# perplexity (1024-row prefills) was bit-identical in every mode; are 800-row prefills, H2O's
# prompt's shape here, too? Full-cache perplexity of 4 windows of 800 tokens, printed to 17
# digits, in a, c1, c2 and c7 (branch7.patch). Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c; mkdir -p /tmp/c
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/c
cp -r /tmp/c /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/prefill_branch_h200/branch7.patch > /dev/null) || { echo "patch failed"; exit 1; }
T="rankkv-make-random-model rankkv-ppl"
for d in a c; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 20000 $P/README.md > /tmp/text.txt
M="--model /tmp/rnd --target cuda"
run() { case $1 in a) timeout 120 /tmp/a/build/bin/$2 "${@:3}";; c*) RK_BRANCH=${1#c} timeout 120 /tmp/c/build/bin/$2 "${@:3}";; esac; }
for t in a c2 c1 c2 a c2 c7 c2 c1 c7; do echo "$t ppl w800 $(run $t rankkv-ppl $M --text /tmp/text.txt --window 800 --chunk 800 --max-windows 4 --json 2>/dev/null | tail -1 | grep -o '"ppl":[^,]*')"; done | tee $R/run7_ppl.txt
echo "done at $SECONDS s"
