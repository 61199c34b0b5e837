#!/usr/bin/env bash
# Timing-only attribution: each decode kernel knocked out in turn (knock.patch, never committed),
# full cache TPOT at 512 and 1920; nsys trace of HEAD's decode steps if nsys is there.
set -uo pipefail
H=$PWD/.carry/h12
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; R=$OUT/res; mkdir -p $S $R
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S
cd $S && patch -p1 < $H/knock.patch > /dev/null || exit 1
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j16 --target rankkv-bench rankkv-make-random-model > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
./build/bin/rankkv-make-random-model --preset pythia-2.8b --out build/random-pythia-2.8b > /dev/null 2>&1
echo "built at $SECONDS s"
which nsys ncu; ls -d /usr/local/cuda*/ /opt/nvidia/nsight* 2>/dev/null
for round in 1 2; do for k in none ln split merge split,merge sum pair logits; do
  RK_KNOCK=$k timeout 60 ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 128 --kv full --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== knock $k round $round rc=$? at $SECONDS s"; cat /tmp/b.txt
done; done 2>&1 | tee $R/knock.txt
NS=$(which nsys 2>/dev/null || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NS" ]; then
  timeout 120 $NS profile --cuda-graph-trace=node --trace=cuda -o /tmp/tr --force-overwrite true ./build/bin/rankkv-bench --model build/random-pythia-2.8b --target cuda --prompt-tokens 512,1920 --new-tokens 8 --kv full --repeats 1 > /tmp/ns.log 2>&1; echo "nsys rc=$?"; tail -3 /tmp/ns.log
  timeout 120 $NS stats -r cuda_gpu_trace -f csv -o /tmp/trace /tmp/tr.nsys-rep > /dev/null 2>&1; echo "stats rc=$?"; ls -la /tmp/trace* ; xz -T8 -c /tmp/trace*.csv > $R/trace.csv.xz
fi
echo "done at $SECONDS s"
