#!/usr/bin/env bash
# test_cuda_no_malloc, 5 runs each: P = the working tree, A = the same with 10692c7's gemv.cu.
set -uo pipefail
H=$PWD/.carry/h11
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
mkdir -p /tmp/p3 /tmp/a3 $OUT/res
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/p3; cp -r /tmp/p3/. /tmp/a3/; tar -xf $H/base.tar -C /tmp/a3
for t in p3 a3; do (cd /tmp/$t && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j8 --target test_cuda_no_malloc > /tmp/b_$t.log 2>&1 || tail -5 /tmp/b_$t.log) & done; wait
echo "built at $SECONDS s"
for i in 1 2 3 4 5; do for t in p3 a3; do
  (cd /tmp/$t/build && ./bin/test_cuda_no_malloc > /tmp/o.txt 2>&1; echo "$t run $i rc=$?: $(grep -E 'during 3 prefills|checks' /tmp/o.txt | tr '\n' ' ')")
done; done 2>&1 | tee $OUT/res/nomalloc.txt
nvidia-smi --query-compute-apps=pid,used_memory --format=csv
