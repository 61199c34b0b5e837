#!/usr/bin/env bash
# The products' dot loop without a branch a chunk (masked chunks read a clamped x and add 0):
# a = HEAD; m = HEAD + it (gemv_m); wm = gemv_w + it (gemv_wm). Does x's address stay formed once?
set -uo pipefail
H=$PWD/bench/results/decode_ready_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
V="a m wm"
for d in $V; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; [ $d = a ] || (cd /tmp/$d && patch -p1 < $H/gemv_$d.patch > /dev/null) || { echo "patch $d failed"; exit 1; }; done
for d in $V; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench rankkv-generate $( [ $d = a ] && echo rankkv-make-random-model) > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done; wait
echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1; cp models/pythia-nano/tokenizer.json /tmp/rnd/; echo "model at $SECONDS s"
for d in $V; do o=$(find /tmp/$d/build -name gemv.cu.o | head -1); cuobjdump -sass $o 2>/dev/null > /tmp/s.txt; echo "$d S2UR $(grep -c S2UR /tmp/s.txt)"; xz < /tmp/s.txt > $R/run6_gemv_$d.sass.xz; done | tee $R/run6_s2ur.txt
for d in a m; do /tmp/$d/build/bin/rankkv-generate --model /tmp/rnd --target cuda --max-new-tokens 64 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/$d ids /"; done | tee $R/run6_ids.txt
for round in 1 2 3; do for t in $V; do
  timeout 40 /tmp/$t/build/bin/rankkv-bench --model /tmp/rnd --target cuda --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/b.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; [ $SECONDS -gt 200 ] && break; done 2>&1 | tee $R/run6.txt
echo "done at $SECONDS s"
