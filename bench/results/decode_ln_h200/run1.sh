#!/usr/bin/env bash
# Run 1: t = this tree (ln.patch: the add + LayerNorm issues every chunk's loads before its first
# store); h = t - ln.patch (b0f08aa); n = t + threads.patch (lab knob RK_LAB_LN_THREADS=1: blocks
# of a thread per chunk of the row, up to 1024, instead of 256 threads). test_sequence cuda on
# n with and without the knob; greedy ids of h, n, n1; three alternating rounds of h, n, n1.
# Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/decode_ln_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/h; mkdir -p /tmp/n
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/n
cp -r /tmp/n /tmp/h && (cd /tmp/h && patch -R -p1 < $L/ln.patch > /dev/null) || { echo "patch h failed"; exit 1; }
(cd /tmp/n && patch -p1 < $L/threads.patch > /dev/null) || { echo "patch n failed"; exit 1; }
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-generate test_sequence rankkv-make-random-model > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
(cd /tmp/h && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-generate > /tmp/build_h.log 2>&1 || { echo "build h failed"; grep -A3 error /tmp/build_h.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
for k in 0 1; do
  if [ $k = 1 ]; then export RK_LAB_LN_THREADS=1; else unset RK_LAB_LN_THREADS; fi
  timeout 100 /tmp/n/build/bin/test_sequence cuda > /tmp/t.txt 2>&1; echo "n$k test_sequence rc=$?: $(tail -1 /tmp/t.txt)"; cat /tmp/t.txt >> $R/run1_tests.txt
done; unset RK_LAB_LN_THREADS
run() { # build-name, then the command
  local t=$1; shift; local bin=/tmp/h/build/bin
  case $t in n*) bin=/tmp/n/build/bin;; esac
  if [ $t = n1 ]; then RK_LAB_LN_THREADS=1 $bin/"$@"; else $bin/"$@"; fi
}
for t in h n n1; do for kv in full h2o; do
  B=""; [ $kv = h2o ] && B="--kv-budget 512"
  run $t rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run1_ids.txt
for round in 1 2 3; do for t in h n n1; do
  run $t rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv,h2o --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
echo "done at $SECONDS s"
