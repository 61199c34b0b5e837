#!/usr/bin/env bash
# Lab 6: fresh builds: h1 = HEAD, ring = HEAD + ring.patch (the product's static shared memory 32 -> 48
# bytes, nothing else), job = HEAD + job.patch (the launch's parameters carry the counter fields, unused).
set -uo pipefail
H=$PWD/.carry/h14
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
for d in h1 ring job; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; done
(cd /tmp/ring && patch -p1 < $H/ring.patch > /dev/null) && (cd /tmp/job && patch -p1 < $H/job.patch > /dev/null) || exit 1
for d in h1 ring job; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench > /tmp/build_$d.log 2>&1 || echo "build $d failed") & done
(cd /tmp/h1 && cmake -S . -B build2 >/dev/null 2>&1 && cmake --build build2 -j2 --target rankkv-make-random-model >/dev/null 2>&1 && ./build2/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1)
wait; echo "built at $SECONDS s"
M="--model /tmp/rnd --target cuda"
for round in 1 2 3; do for d in h1 ring job; do
  [ $SECONDS -gt 260 ] && break 2
  timeout 40 /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $d round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/lab6.txt
echo "done at $SECONDS s"
