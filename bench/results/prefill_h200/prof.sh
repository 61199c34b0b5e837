#!/usr/bin/env bash
# Per-kernel time of one 1920-token (then 512-token) prefill of the 2.8B shape, each kernel alone under ncu.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
cmake -S . -B build >/dev/null 2>&1
cmake --build build -j16 --target rankkv-bench rankkv-make-random-model > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
echo "ready at $SECONDS s"; git log --oneline -1 2>/dev/null
for p in 1920 512; do
  timeout 240 ncu --clock-control none --metrics gpu__time_duration.sum --csv -c 280 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens $p --new-tokens 1 --kv full --repeats 1 > $R/ncu_prefill_$p.csv 2> /tmp/ncu.err; echo "ncu $p rc=$? at $SECONDS s"; tail -2 /tmp/ncu.err
  xz -9 $R/ncu_prefill_$p.csv
  [ $SECONDS -gt 330 ] && break
done
./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 8 --kv full --repeats 3 | awk 'NR>2{print $4, $5, $6, $7}'
