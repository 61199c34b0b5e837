#!/usr/bin/env bash
# Run 3: what the warpgroup-MMA prefill (v0 = run 1's n) waits on, against the mma.sync kernel
# (b): ncu's full set on one launch each at 512 and 1920 (test_cuda_attention --time from
# time.patch: 23 launches at 512, then 23 at 1024, then 1920), details pages kept. Carry
# .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/prefill_wgmma_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/b; mkdir -p /tmp/n
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
(cd /tmp/n && patch -p1 < $L/time.patch > /dev/null) || { echo "patch time failed"; exit 1; }
cp -r /tmp/n /tmp/b
(cd /tmp/n && patch -p1 < $L/wgmma.patch > /dev/null) || { echo "patch n failed"; exit 1; }
for v in n b; do (cd /tmp/$v && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target test_cuda_attention > /tmp/build_$v.log 2>&1 || { echo "build $v failed"; grep -A3 error /tmp/build_$v.log | head; }) & done
wait; echo "built at $SECONDS s"
for v in n b; do
  k=$([ $v = n ] && echo wgmma_prefill_kernel || echo prefill_kernel)
  for skip in 0 46; do
    len=$([ $skip = 0 ] && echo 512 || echo 1920)
    timeout 150 ncu --clock-control none -k regex:$k --launch-skip $skip -c 1 --set full -f -o /tmp/p_${v}_$len /tmp/$v/build/bin/test_cuda_attention --time > /tmp/ncu.log 2>&1
    echo "ncu $v $len rc=$? at $SECONDS s"; tail -1 /tmp/ncu.log
    ncu -i /tmp/p_${v}_$len.ncu-rep --page details > $R/run3_detail_${v}_$len.txt 2>&1
    grep -E "^  [a-z_]+.*\(|Duration|Achieved Occupancy|Issue Slots Busy|No Eligible|Registers Per|Compute \(SM\) Throughput|Memory Throughput|Block Limit" $R/run3_detail_${v}_$len.txt | head -14
  done
done
echo "done at $SECONDS s"
