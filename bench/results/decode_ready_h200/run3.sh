#!/usr/bin/env bash
# Which gemv kernel carries the cost of gemv_w (feature off), and which part of its code:
# a = HEAD; w = gemv_w; wp = only the pair's instance (SPLIT 2); ws = only the sum's (SPLIT 8);
# s = a plain store in place of fence + atomic; f = the fence alone.
set -uo pipefail
H=$PWD/bench/results/decode_ready_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
V="a w wp ws s f"
for d in $V; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; [ $d = a ] || (cd /tmp/$d && patch -p1 < $H/gemv_$d.patch > /dev/null) || { echo "patch $d failed"; exit 1; }; done
for d in $V; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j3 --target rankkv-bench $( [ $d = a ] && echo rankkv-make-random-model) > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done; wait
echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1; echo "model at $SECONDS s"
for round in 1 2 3; do for t in $V; do
  timeout 60 /tmp/$t/build/bin/rankkv-bench --model /tmp/rnd --target cuda --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/b.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; [ $SECONDS -gt 420 ] && break; done 2>&1 | tee $R/run3.txt
for d in a wp; do o=$(find /tmp/$d/build -name gemv.cu.o | head -1); cuobjdump -sass $o 2>/dev/null | xz > $R/run3_gemv_$d.sass.xz; done
echo "done at $SECONDS s"
