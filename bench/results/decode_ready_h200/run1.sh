#!/usr/bin/env bash
# Lab: the split attention waits for a counter of QKV rows instead of the whole QKV + fc1 pair.
# a = HEAD; l = ready.patch, RK_READY=0 (code in, off), 1, 2.
set -uo pipefail
H=$PWD/bench/results/decode_ready_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
for d in a l; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; done
(cd /tmp/l && patch -p1 < $H/ready.patch > /dev/null) || exit 1
for d in a l; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-make-random-model rankkv-generate > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done; wait
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json /tmp/rnd/; echo "ready at $SECONDS s"
M="--model /tmp/rnd --target cuda"
run() { case $1 in a) /tmp/a/build/bin/$2 "${@:3}";; l*) RK_READY=${1#l} /tmp/l/build/bin/$2 "${@:3}";; esac; }
for t in a l0 l1 l2; do for kv in full h2o; do run $t rankkv-generate $M --kv $kv --kv-budget 512 --max-new-tokens 64 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/$t $kv ids /"; done; done | tee $R/run1_ids.txt
for round in 1 2 3; do for t in a l0 l1 l2; do
  timeout 60 bash -c "$(declare -f run); run $t rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3" > /tmp/b.txt 2>/tmp/b.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; [ $SECONDS -gt 420 ] && break; done 2>&1 | tee $R/run1.txt
echo "done at $SECONDS s"
