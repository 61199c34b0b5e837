#!/usr/bin/env bash
# Next session: split lab 3's 8-9 % between the kernel and the host side. Fresh folders:
# h1 = HEAD; kern = lab3's kernel with stealing compiled in and switched off in the host (no env,
# HEAD's grids, counters inside the zero-row region); host = lab3's host side and API around HEAD's
# kernel body (run with RK_STEAL=0: HEAD's grids). Greedy ids, 3 alternating rounds, then SASS of the
# product kernels at HEAD and lab3 (cuobjdump) for an offline diff.
set -uo pipefail
H=$PWD/.carry/h14
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
for d in h1 kern host lab3; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; done
for d in kern host lab3; do (cd /tmp/$d && patch -p1 < $H/$d.patch > /dev/null) || exit 1; done
tg() { [ $1 = h1 ] && echo "rankkv-bench rankkv-generate test_cuda_gemv test_cuda_kv_quant" || echo "rankkv-bench rankkv-generate"; }
for d in h1 kern host; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j5 --target $(tg $d) > /tmp/build_$d.log 2>&1 || echo "build $d failed") & done
(cd /tmp/h1 && cmake -S . -B build2 >/dev/null 2>&1 && cmake --build build2 -j1 --target rankkv-make-random-model >/dev/null 2>&1 && ./build2/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1)
wait; echo "built at $SECONDS s"
cp models/pythia-nano/tokenizer.json /tmp/rnd/
(cd /tmp/h1/build && ctest -R 'test_cuda_gemv|test_cuda_kv_quant' --output-on-failure) > $R/tests_head.txt 2>&1; tail -4 $R/tests_head.txt
M="--model /tmp/rnd --target cuda"
envof() { [ $1 = host ] && echo RK_STEAL=0 || echo ""; }
for d in h1 kern host; do env $(envof $d) /tmp/$d/build/bin/rankkv-generate $M --max-new-tokens 64 --ignore-eos --json --quiet > /tmp/g.txt 2>/dev/null; echo "generate $d rc=$? ids md5 $(grep -o '"output_ids":[^]]*' /tmp/g.txt | md5sum)"; done | tee $R/ids7.txt
for round in 1 2 3; do for d in h1 kern host; do
  env $(envof $d) timeout 40 /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $d round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/lab7.txt
for d in h1 lab3; do
  nvcc -arch=sm_90 -O3 -std=c++17 -lineinfo -cubin -o /tmp/$d.cubin /tmp/$d/kernels/gemv.cu -I/tmp/$d/kernels -I/tmp/$d/core && cuobjdump -sass /tmp/$d.cubin | xz > $R/gemv_$d.sass.xz
done; ls -la $R; echo "done at $SECONDS s"
