#!/usr/bin/env bash
# Run 8: the products' kernels alone under ncu, 588eb0a's loop (a, HEAD) against the two-buffer
# loop (p, pingpong.patch with RK_PP 0x1ff), which cost 4-5 % of the step in run 7. Two pairs
# and two sums of a decode step at context 1920, every section (warp stalls per SASS
# instruction included), then the details and source pages as CSV.
set -uo pipefail
H=$PWD/bench/results/decode_ready_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
V="a p"
for d in $V; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; [ $d = a ] || (cd /tmp/$d && patch -p1 < $H/pingpong.patch > /dev/null) || { echo "patch $d failed"; exit 1; }; done
for d in $V; do (cd /tmp/$d && cmake -S . -B build $( [ $d = a ] || echo "-DCMAKE_CUDA_FLAGS=-DRK_PP=0x1ff") >/dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench $( [ $d = a ] && echo rankkv-make-random-model) > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done; wait
echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1; echo "model at $SECONDS s"
ncu --version | tail -1
for d in $V; do
  timeout 200 ncu --clock-control none --kernel-name-base mangled --kernel-name 'regex:gemv_kernelILb0ELi(2ELi5|8ELi7)E' \
    --launch-skip 64 --launch-count 4 --set full -f -o /tmp/rep_$d \
    /tmp/$d/build/bin/rankkv-bench --model /tmp/rnd --target cuda --kv full --repeats 1 --prompt-tokens 1920 --new-tokens 4 > /tmp/ncu_$d.log 2>&1
  echo "ncu $d rc=$? at $SECONDS s"; grep -i "error\|warn" /tmp/ncu_$d.log | head -5
  ncu -i /tmp/rep_$d.ncu-rep --page details --csv > $R/run8_${d}_details.csv 2> $R/run8_${d}_details.err
  ncu -i /tmp/rep_$d.ncu-rep --page source --csv --print-source sass > $R/run8_${d}_source.csv 2> $R/run8_${d}_source.err
  ls -la /tmp/rep_$d.ncu-rep $R/run8_${d}_*; xz -k /tmp/rep_$d.ncu-rep && cp /tmp/rep_$d.ncu-rep.xz $R/run8_$d.ncu-rep.xz
done
for d in $V; do grep -E '"(Duration|DRAM Throughput|Memory Throughput|Registers Per Thread|Achieved Occupancy|Warp Cycles Per Issued Instruction)"' $R/run8_${d}_details.csv | awk -F'","' -v d=$d '{print d, $1, substr($5,1,60), $(NF-2), $(NF-1), $NF}' | sed 's/"//g'; done | tee $R/run8_summary.txt
xz $R/run8_*_source.csv 2>/dev/null
echo "done at $SECONDS s"
