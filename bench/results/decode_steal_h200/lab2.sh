#!/usr/bin/env bash
# Lab 2 over HEAD: lab.patch + the ring's bytes kept out of the gemv's dynamic shared memory + RK_CARVE
# (preferred shared-memory carveout set on every launch_dependent kernel). Checks greedy ids per variant.
set -uo pipefail
H=$PWD/.carry/h14
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S /tmp/a $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a/ && (cd $S && patch -p1 < $H/lab2.patch > /dev/null) || exit 1
(cd /tmp/a && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j6 --target rankkv-bench rankkv-generate > /tmp/build_a.log 2>&1) &
cd $S && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j10 --target rankkv-bench rankkv-generate rankkv-make-random-model test_cuda_gemv > /tmp/build_b.log 2>&1 || { grep -E "error" /tmp/build_b.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json build/random-pythia-2.8b/
wait; echo "built at $SECONDS s"
M="--model build/random-pythia-2.8b --target cuda"
envof() { case $1 in A) echo "";; S0) echo RK_STEAL=0;; S2) echo RK_STEAL=2;; S4) echo RK_STEAL=4;; S15) echo RK_STEAL=15;;
  C100) echo RK_STEAL=0 RK_CARVE=100;; C100S2) echo RK_STEAL=2 RK_CARVE=100;; C100S15) echo RK_STEAL=15 RK_CARVE=100;; Cm1) echo RK_STEAL=0 RK_CARVE=-1;; esac; }
binof() { [ $1 = A ] && echo /tmp/a/build/bin || echo ./build/bin; }
for v in A S0 S2 S4 S15 C100 C100S15; do
  env $(envof $v) $(binof $v)/rankkv-generate $M --max-new-tokens 64 --ignore-eos --json --quiet > /tmp/g.txt 2>/tmp/g.err
  echo "generate $v rc=$? ids md5 $(grep -o '"output_ids":[^]]*' /tmp/g.txt | md5sum)"
done 2>&1 | tee $R/ids.txt
./build/bin/test_cuda_gemv > $R/gemv.log 2>&1; echo "test_cuda_gemv rc=$?: $(tail -1 $R/gemv.log)"
for round in 1 2; do for v in A S0 S2 S4 S15 C100 C100S2 C100S15 Cm1; do
  env $(envof $v) timeout 60 $(binof $v)/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $v round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/lab2.txt
timeout 90 compute-sanitizer --tool memcheck ./build/bin/test_cuda_gemv > /tmp/mc.log 2>&1; echo "memcheck rc=$?"; head -30 /tmp/mc.log > $R/mc.txt; grep SUMMARY /tmp/mc.log
echo "done at $SECONDS s"
