#!/usr/bin/env bash
# Run 9: the products' row ends with one barrier a row instead of two (a second set of partial
# sums; barrier_h1.patch), and that barrier held by the row's own warps only (named barriers,
# the id in a register: barrier_h2.patch; literal ids: barrier_h3.patch). Run 8's profile had a
# quarter of both kernels' stall samples at the block barrier. a = HEAD. test_cuda_gemv and
# greedy ids on each, 3 alternating rounds, then occupancy limits under ncu and racecheck.
set -uo pipefail
H=$PWD/bench/results/decode_ready_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
V="a h1 h2 h3"
for d in $V; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; [ $d = a ] || (cd /tmp/$d && patch -p1 < $H/barrier_$d.patch > /dev/null) || { echo "patch $d failed"; exit 1; }; done
for d in $V; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j4 --target rankkv-bench rankkv-generate test_cuda_gemv $( [ $d = a ] && echo rankkv-make-random-model) > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done; wait
echo "built at $SECONDS s"
for d in $V; do (cd /tmp/$d && timeout 120 ./build/bin/test_cuda_gemv > /tmp/gemv_test_$d.txt 2>&1; echo "test_cuda_gemv $d rc=$? $(tail -1 /tmp/gemv_test_$d.txt)"); done | tee $R/run9_tests.txt
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1; cp models/pythia-nano/tokenizer.json /tmp/rnd/; echo "model at $SECONDS s"
for d in $V; do for kv in full h2o; do /tmp/$d/build/bin/rankkv-generate --model /tmp/rnd --target cuda --kv $kv $( [ $kv = h2o ] && echo --kv-budget 512) --max-new-tokens 64 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/$d $kv ids /"; done; done | tee $R/run9_ids.txt
for round in 1 2 3; do for t in $V; do
  timeout 60 /tmp/$t/build/bin/rankkv-bench --model /tmp/rnd --target cuda --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/b.txt 2>/tmp/b.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; [ $SECONDS -gt 400 ] && break; done 2>&1 | tee $R/run9.txt
for d in $V; do timeout 60 ncu --clock-control none --kernel-name-base mangled --kernel-name 'regex:gemv_kernelILb0ELi(2ELi5|8ELi7)E' --launch-skip 64 --launch-count 2 \
  --metrics launch__registers_per_thread,launch__occupancy_limit_barriers,launch__occupancy_limit_registers,launch__occupancy_limit_shared_mem,launch__occupancy_limit_warps,sm__maximum_warps_per_active_cycle_pct,gpu__time_duration.sum \
  --csv /tmp/$d/build/bin/rankkv-bench --model /tmp/rnd --target cuda --kv full --repeats 1 --prompt-tokens 1920 --new-tokens 4 2>/dev/null | grep '^"[0-9]' | awk -F'","' -v d=$d '{print d, $1, substr($5,1,50), $(NF-2), $NF}' | sed 's/"//g'; done | tee $R/run9_occupancy.txt
echo "ncu done at $SECONDS s"
(cd /tmp/h2 && timeout 150 compute-sanitizer --tool racecheck ./build/bin/test_cuda_gemv > $R/run9_racecheck_h2.txt 2>&1; echo "racecheck h2 rc=$? $(tail -2 $R/run9_racecheck_h2.txt | tr '\n' ' ')")
echo "done at $SECONDS s"
