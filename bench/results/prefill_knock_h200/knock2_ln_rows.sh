#!/usr/bin/env bash
# Two labs over 60d3d71, one build each (about 4 minutes on an H200):
#  knock2: prefill launches left out from the second pass on (consumers read real values);
#          each prompt length in its own process.
#  ln_rows: the LayerNorm a warp a row from RK_NORM_ROWS rows on; 100000 = HEAD's block a row.
set -uo pipefail
H=$PWD/bench/results/prefill_knock_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
for d in kn ln; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; done
(cd /tmp/kn && patch -p1 < $H/knock2.patch > /dev/null) || exit 1
(cd /tmp/ln && patch -p1 < $H/ln_rows.patch > /dev/null) || exit 1
for d in kn ln; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j8 --target rankkv-bench rankkv-make-random-model rankkv-generate > /tmp/build_$d.log 2>&1 || echo "build $d failed") & done; wait
/tmp/kn/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json /tmp/rnd/; echo "ready at $SECONDS s"
M="--model /tmp/rnd --target cuda"
for r in 100000 64; do RK_NORM_ROWS=$r /tmp/ln/build/bin/rankkv-generate $M --max-new-tokens 64 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/ln rows $r ids /"; done | tee $R/ln_ids.txt
for round in 1 2; do for p in 512 768 1024 1280 1536 1920; do for r in 100000 64; do
  RK_NORM_ROWS=$r timeout 30 /tmp/ln/build/bin/rankkv-bench $M --prompt-tokens $p --new-tokens 2 --kv full --repeats 5 2>/dev/null | awk -v r=$r 'NR>2{print "rows", r, $4, $5, $6}'
done; done; done 2>&1 | tee $R/ln_rows.txt
for round in 1 2; do for k in none rotary norm gelu attn; do for p in 512 1920; do
  RK_KNOCK=$k timeout 30 /tmp/kn/build/bin/rankkv-bench $M --prompt-tokens $p --new-tokens 2 --kv full --repeats 5 2>/dev/null | awk -v k=$k 'NR>2{print "knock", k, $4, $5, $6}'
done; done; [ $SECONDS -gt 420 ] && break; done 2>&1 | tee $R/knock2.txt
echo "done at $SECONDS s"
