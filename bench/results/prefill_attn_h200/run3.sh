#!/usr/bin/env bash
# Run 3: why neither run 1's shapes nor run 2's key groups shortened the 512-token prefill's
# attention, and one more try. a is this tree: ncu's full set (speed of light, occupancy,
# scheduler, warp state, stall sampling by SASS line) for two launches of the 512-token
# prefill attention. c is a with snake.patch: a grid that fits the resident blocks at once
# gives its blocks from the SM count on lightest first, so that each SM's second block makes up
# for its first. c's attention tests; the prefill attention alone under ncu at 512 and 1024
# for a and c; TTFT in three alternating rounds. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/c; mkdir -p /tmp/a
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/a
cp -r /tmp/a /tmp/c && (cd /tmp/c && patch -p1 < $P/bench/results/prefill_attn_h200/snake.patch > /dev/null) || { echo "patch failed"; exit 1; }
T="rankkv-bench rankkv-make-random-model test_cuda_attention"
for d in a c; do (cd /tmp/$d && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done
wait; echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
(cd /tmp/c && timeout 150 ./build/bin/test_cuda_attention > /tmp/t.txt 2>&1; echo "c: test_cuda_attention rc=$? $(tail -1 /tmp/t.txt) at $SECONDS s") | tee $R/run3_tests.txt
M="--model /tmp/rnd --target cuda"
timeout 150 ncu --clock-control none -k regex:prefill_kernel -c 2 --set full -f -o /tmp/p_a /tmp/a/build/bin/rankkv-bench $M --prompt-tokens 512 --new-tokens 1 --kv full --repeats 1 > /tmp/ncu_a.log 2>&1
echo "ncu full a rc=$? at $SECONDS s"; tail -2 /tmp/ncu_a.log
ncu -i /tmp/p_a.ncu-rep --page details > $R/run3_detail_a.txt 2>&1
ncu -i /tmp/p_a.ncu-rep --page source --csv --print-source sass 2>/dev/null | xz -9 > $R/run3_a_source.csv.xz
for d in a c; do
  timeout 60 ncu --clock-control none --kernel-name regex:prefill_kernel --metrics gpu__time_duration.sum --csv /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1024 --new-tokens 1 --kv full --repeats 1 > /tmp/ncu_$d.csv 2> /tmp/ncu.err
  echo "ncu $d rc=$? at $SECONDS s"
done
(cd /tmp && tar -cJf $R/run3_ncu.tar.xz ncu_a.csv ncu_c.csv)
for round in 1 2 3; do for d in a c; do
  [ $SECONDS -gt 540 ] && break 2
  timeout 40 /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1024 --new-tokens 1 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/dev/null
  echo "== $d round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6}' /tmp/bt.txt
done; done 2>&1 | tee $R/run3_ttft.txt
echo "done at $SECONDS s"
