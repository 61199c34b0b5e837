#!/usr/bin/env bash
# Run 1: h = this tree; n = h + keys.patch (lab knob RK_LAB_DECODE_KEYS=32: the decode split takes
# 32-key slices whatever the cache's capacity, as it does for caches too short to give every SM a
# block). test_sequence cuda on n with the knob; greedy ids of h and n32; three alternating rounds
# of h, n0, n32 (TPOT).
# Carry .carry/deps.tar.xz.
set -uo pipefail
P=$PWD; L=$P/bench/results/decode_keys_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
rm -rf /tmp/n /tmp/h; mkdir -p /tmp/h
tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/h
cp -r /tmp/h /tmp/n && (cd /tmp/n && patch -p1 < $L/keys.patch > /dev/null) || { echo "patch n failed"; exit 1; }
(cd /tmp/n && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-generate test_sequence rankkv-make-random-model > /tmp/build_n.log 2>&1 || { echo "build n failed"; grep -A3 error /tmp/build_n.log | head -30; }) &
(cd /tmp/h && cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-generate > /tmp/build_h.log 2>&1 || { echo "build h failed"; grep -A3 error /tmp/build_h.log | head; }) &
wait; echo "built at $SECONDS s"
/tmp/n/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp $P/models/pythia-nano/tokenizer.json /tmp/rnd/; head -c 3000 $P/README.md > /tmp/prompt.txt
M="--model /tmp/rnd --target cuda"
RK_LAB_DECODE_KEYS=32 timeout 100 /tmp/n/build/bin/test_sequence cuda > $R/run1_tests.txt 2>&1; echo "n32 test_sequence rc=$?: $(tail -1 $R/run1_tests.txt)"
for t in h n32; do for kv in full h2o; do
  B=""; [ $kv = h2o ] && B="--kv-budget 512"; bin=/tmp/${t%32}/build/bin; k=${t#n}; [ $t = h ] && k=0
  RK_LAB_DECODE_KEYS=$k timeout 120 $bin/rankkv-generate $M --kv $kv $B --prompt-file /tmp/prompt.txt --max-new-tokens 32 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | cut -c1-12 | sed "s/^/$t $kv /"
done; done | tee $R/run1_ids.txt
for round in 1 2 3; do for t in h n0 n32; do
  bin=/tmp/h/build/bin; k=0; case $t in n*) bin=/tmp/n/build/bin; k=${t#n};; esac
  RK_LAB_DECODE_KEYS=$k timeout 150 $bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv --kv-budget 512 --repeats 3 > /tmp/bt.txt 2>/tmp/be.txt
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>1{print $4, $5, $6, $7}' /tmp/bt.txt
done; done 2>&1 | tee $R/run1_times.txt
echo "done at $SECONDS s"
