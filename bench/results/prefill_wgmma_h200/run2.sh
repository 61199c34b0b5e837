#!/usr/bin/env bash
# Run 2: shapes of the warpgroup-MMA prefill (variants.patch over n, lab macros): v0 as run 1
# (queries and keys from shared memory, 64-key tiles, two warpgroups a block from 3 blocks an SM
# on); v1 128-key tiles; v2 queries in registers, one warpgroup a block; v3 v2 with 128-key
# tiles; v4 v0 with one warpgroup a block always; b the mma.sync kernel. time.patch gives
# test_cuda_attention --time (prefill alone at 512, 1024 and 1920, 32 heads of 80). Each
# variant: test_cuda_attention --quick, then three alternating rounds of --time, then one round
# of TTFT (full cache). Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/prefill_wgmma_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/v* /tmp/b; mkdir -p /tmp/n
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
(cd /tmp/n && patch -p1 < $L/time.patch > /dev/null) || { echo "patch time failed"; exit 1; }
cp -r /tmp/n /tmp/b && (cd /tmp/b && patch -R -p1 < $L/wgmma.patch > /dev/null) || { echo "patch b failed"; exit 1; }
(cd /tmp/n && patch -p1 < $L/variants.patch > /dev/null) || { echo "patch v failed"; exit 1; }
declare -A F=([v0]="" [v1]="-DRK_LAB_KEYS=128" [v2]="-DRK_LAB_QREGS=1 -DRK_LAB_WG=1" [v3]="-DRK_LAB_QREGS=1 -DRK_LAB_WG=1 -DRK_LAB_KEYS=128" [v4]="-DRK_LAB_WG=1")
for v in v0 v1 v2 v3 v4; do cp -r /tmp/n /tmp/$v; done
for v in v0 v1 v2 v3 v4 b; do
  (cd /tmp/$v && cmake -S . -B build -DCMAKE_CUDA_FLAGS="${F[$v]:-}" > /dev/null 2>&1 && cmake --build build -j3 --target rankkv-bench rankkv-make-random-model test_cuda_attention > /tmp/build_$v.log 2>&1 || { echo "build $v failed"; grep -A3 error /tmp/build_$v.log | head -20; }) &
done
wait; echo "built at $SECONDS s"
for v in v0 v1 v2 v3 v4 b; do timeout 60 /tmp/$v/build/bin/test_cuda_attention --quick > $R/run2_quick_$v.txt 2>&1; echo "$v quick rc=$? $(tail -1 $R/run2_quick_$v.txt)"; done
for round in 1 2 3; do for v in b v0 v1 v2 v3 v4; do timeout 60 /tmp/$v/build/bin/test_cuda_attention --time 2>&1 | grep "timing prefill" | sed "s/^/$v r$round /"; done; done | tee $R/run2_time.txt
/tmp/b/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
for v in b v0 v1 v2 v3 v4; do
  timeout 60 /tmp/$v/build/bin/rankkv-bench --model /tmp/rnd --target cuda --prompt-tokens 512,1920 --new-tokens 4 --kv full --repeats 5 > /tmp/bt.txt 2>/dev/null
  echo "== $v rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done 2>&1 | tee $R/run2_ttft.txt
echo "done at $SECONDS s"
