#!/usr/bin/env bash
# Lab 4: what made lab3's no-steal binary 9 % slower than HEAD. AK = HEAD + RK_SHIFT (bytes added to the
# target scratch, moving every arena region after it); K = lab3 with the counters inside the zero-row
# region (no shift) + RK_SHIFT.
set -uo pipefail
H=$PWD/.carry/h14
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S /tmp/a $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a/ && (cd $S && patch -p1 < $H/labK.patch > /dev/null) && (cd /tmp/a && patch -p1 < $H/shiftknob.patch > /dev/null) || exit 1
(cd /tmp/a && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j7 --target rankkv-bench rankkv-generate > /tmp/build_a.log 2>&1) &
cd $S && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j9 --target rankkv-bench rankkv-generate rankkv-make-random-model > /tmp/build_b.log 2>&1 || { grep -E "error" /tmp/build_b.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json build/random-pythia-2.8b/
wait; echo "built at $SECONDS s"; grep -E " error" /tmp/build_a.log | head
M="--model build/random-pythia-2.8b --target cuda"
envof() { case $1 in A0) echo "";; A256) echo RK_SHIFT=256;; A512) echo RK_SHIFT=512;; A128) echo RK_SHIFT=128;;
  K0) echo RK_STEAL=0;; KW) echo RK_STEAL=0 RK_WAVE=1;; K15) echo RK_STEAL=15;; K0s) echo RK_STEAL=0 RK_SHIFT=256;; esac; }
binof() { case $1 in A*) echo /tmp/a/build/bin;; *) echo ./build/bin;; esac; }
for v in A0 A256 K0 KW K15; do
  env $(envof $v) $(binof $v)/rankkv-generate $M --max-new-tokens 64 --ignore-eos --json --quiet > /tmp/g.txt 2>/tmp/g.err
  echo "generate $v rc=$? ids md5 $(grep -o '"output_ids":[^]]*' /tmp/g.txt | md5sum)"
done 2>&1 | tee $R/ids.txt
for v in A0 A256; do env $(envof $v) /tmp/a/build/bin/rankkv-generate $M --max-new-tokens 128 --print-plan > $R/plan_$v.txt 2>&1; done
for round in 1 2; do for v in A0 A256 A512 A128 K0 K0s KW K15; do
  env $(envof $v) timeout 60 $(binof $v)/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $v round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/lab4.txt
echo "done at $SECONDS s"
