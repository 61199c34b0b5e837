#!/usr/bin/env bash
# Run 7 (about 5 minutes on an H200): the products' loop with two buffers and no
# copy (pingpong.patch) against HEAD. a = HEAD; p = both kernels alternate (RK_PP 0x1ff); p2 = the
# pair only (SPLIT 2, 0x4); p8 = the sum only (SPLIT 8, 0x100); p0 = the patch with every kernel
# copying (0x0: the restructured loop alone). test_cuda_gemv on p, greedy ids, 3 alternating
# rounds, SASS.
set -uo pipefail
H=$PWD/bench/results/decode_ready_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
V="a p p2 p8 p0"
mask() { case $1 in p) echo 0x1ff;; p2) echo 0x4;; p8) echo 0x100;; p0) echo 0x0;; esac; }
for d in $V; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; [ $d = a ] || (cd /tmp/$d && patch -p1 < $H/pingpong.patch > /dev/null) || { echo "patch $d failed"; exit 1; }; done
for d in $V; do (cd /tmp/$d && cmake -S . -B build $( [ $d = a ] || echo "-DCMAKE_CUDA_FLAGS=-DRK_PP=$(mask $d)") >/dev/null 2>&1 && cmake --build build -j3 --target rankkv-bench rankkv-generate $( [ $d = a ] && echo rankkv-make-random-model; [ $d = p ] && echo test_cuda_gemv) > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done; wait
echo "built at $SECONDS s"
(cd /tmp/p && timeout 120 ./build/bin/test_cuda_gemv > $R/run7_gemv_test_p.txt 2>&1; echo "test_cuda_gemv p rc=$?"; tail -3 $R/run7_gemv_test_p.txt)
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1; cp models/pythia-nano/tokenizer.json /tmp/rnd/; echo "model at $SECONDS s"
for d in $V; do o=$(find /tmp/$d/build -name gemv.cu.o | head -1); cuobjdump -sass $o 2>/dev/null | xz > $R/run7_gemv_$d.sass.xz; done
for d in $V; do for kv in full h2o; do /tmp/$d/build/bin/rankkv-generate --model /tmp/rnd --target cuda --kv $kv $( [ $kv = h2o ] && echo --kv-budget 512) --max-new-tokens 64 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/$d $kv ids /"; done; done | tee $R/run7_ids.txt
for round in 1 2 3; do for t in $V; do
  timeout 60 /tmp/$t/build/bin/rankkv-bench --model /tmp/rnd --target cuda --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/b.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; [ $SECONDS -gt 420 ] && break; done 2>&1 | tee $R/run7.txt
echo "done at $SECONDS s"
