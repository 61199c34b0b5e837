#!/usr/bin/env bash
# TTFT only: A = f8b047c, B = 60d3d71, 5 alternating rounds of --kv full --repeats 5.
set -uo pipefail
H=$PWD/.carry/h15
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src3; R=$OUT/res; rm -rf $S /tmp/a3; mkdir -p $S /tmp/a3 $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cp -r $S/. /tmp/a3/ && (cd /tmp/a3 && patch -R -p1 < $H/code.patch > /dev/null) || exit 1
(cd /tmp/a3 && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j6 --target rankkv-bench > /tmp/build_a.log 2>&1) &
cd $S && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-make-random-model > /tmp/build_b.log 2>&1 || exit 1
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
wait; echo "built at $SECONDS s"
BIN() { case $1 in a) echo /tmp/a3/build/bin/rankkv-bench;; b) echo $S/build/bin/rankkv-bench;; esac; }
for round in 1 2 3 4 5; do for t in a b; do
  timeout 40 $(BIN $t) --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 4 --kv full --repeats 5 > /tmp/b.txt 2>/dev/null
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; [ $SECONDS -gt 230 ] && break; done 2>&1 | tee $R/ttft_ab.txt
