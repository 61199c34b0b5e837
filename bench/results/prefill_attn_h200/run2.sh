#!/usr/bin/env bash
# Run 2: a narrow prefill's keys split between two groups of warps (b, this tree) against the
# tree before it (a: b with key_groups.patch reversed). b's attention tests, the CUDA-vs-CPU
# logits, compute-sanitizer on the quick attention cases; every prefill attention launch of
# 512-, 1024-, 1536- and 1920-token prefills under ncu for both; TTFT in three alternating
# rounds. Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R; rm -rf /tmp/a /tmp/b; mkdir -p /tmp/b
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/b
cp -r /tmp/b /tmp/a && (cd /tmp/a && patch -R -p1 < $P/bench/results/prefill_attn_h200/key_groups.patch > /dev/null) || { echo "reverse patch failed"; exit 1; }
T="rankkv-bench rankkv-make-random-model test_cuda_attention test_cuda_vs_cpu"
(cd /tmp/a && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_a.log 2>&1 || echo "build a failed") &
(cd /tmp/b && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target $T > /tmp/build_b.log 2>&1 || { echo "build b failed"; grep error /tmp/build_b.log | head; }) &
wait; echo "built at $SECONDS s"
cd /tmp/b
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
{
timeout 120 ./build/bin/test_cuda_attention > /tmp/t.txt 2>&1; echo "test_cuda_attention rc=$? $(tail -1 /tmp/t.txt) at $SECONDS s"
grep -E "prefill D=(32|64|80) " /tmp/t.txt | head -40
timeout 120 ./build/bin/test_cuda_vs_cpu build/random-pythia-2.8b > /tmp/t.txt 2>&1; echo "test_cuda_vs_cpu rc=$? at $SECONDS s"; tail -4 /tmp/t.txt
for tool in memcheck racecheck synccheck; do timeout 100 compute-sanitizer --tool $tool --error-exitcode 9 ./build/bin/test_cuda_attention --quick > /tmp/cs.log 2>&1; echo "$tool test_cuda_attention --quick rc=$? $(grep SUMMARY /tmp/cs.log | tail -1) at $SECONDS s"; done
} 2>&1 | tee $R/tests.txt
M="--model /tmp/b/build/random-pythia-2.8b --target cuda"
for d in a b; do
  timeout 60 ncu --clock-control none --kernel-name regex:prefill_kernel --metrics gpu__time_duration.sum --csv /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1024,1536,1920 --new-tokens 1 --kv full --repeats 1 > $R/ncu_$d.csv 2> /tmp/ncu.err
  echo "ncu $d rc=$? at $SECONDS s"
done
for round in 1 2 3; do for d in a b; do
  [ $SECONDS -gt 540 ] && break 2
  timeout 40 /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1024,1920 --new-tokens 1 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/dev/null
  echo "== $d round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6}' /tmp/bt.txt
done; done 2>&1 | tee $R/ttft.txt
(cd $R && tar -cJf ncu.tar.xz ncu_*.csv && rm ncu_*.csv)
echo "done at $SECONDS s"
