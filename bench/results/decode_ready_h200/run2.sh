#!/usr/bin/env bash
# Which part of ready.patch costs with the feature off, and the counter without a block barrier.
# a = HEAD; g = gemv_g (block barrier, off); w = gemv_w (per-warp atomics, off); t = attn_t (off);
# x = attn_t + gemv_w + host: x0 off, x1 RK_READY=1.
set -uo pipefail
H=$PWD/bench/results/decode_ready_h200
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
for d in a g w t x; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; done
ap() { (cd /tmp/$1 && for p in "${@:2}"; do patch -p1 < $H/$p.patch > /dev/null || exit 1; done) || { echo "patch $1 failed"; exit 1; }; }
ap g gemv_g; ap w gemv_w; ap t attn_t; ap x attn_t gemv_w host
for d in a g w t x; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j4 --target rankkv-bench rankkv-generate $( [ $d = a ] && echo rankkv-make-random-model) > /tmp/build_$d.log 2>&1 || { echo "build $d failed"; grep error /tmp/build_$d.log | head; }) & done; wait
echo "built at $SECONDS s"
/tmp/a/build/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1
cp models/pythia-nano/tokenizer.json /tmp/rnd/; echo "model at $SECONDS s"
M="--model /tmp/rnd --target cuda"
run() { case $1 in x1) RK_READY=1 /tmp/x/build/bin/$2 "${@:3}";; x0) /tmp/x/build/bin/$2 "${@:3}";; *) /tmp/$1/build/bin/$2 "${@:3}";; esac; }
for t in a x0 x1; do run $t rankkv-generate $M --kv h2o --kv-budget 512 --max-new-tokens 64 --ignore-eos --json --quiet 2>/dev/null | grep -o '"output_ids":[^]]*' | md5sum | sed "s/^/$t ids /"; done | tee $R/run2_ids.txt
for round in 1 2 3; do for t in a g w t x0 x1; do
  timeout 60 bash -c "$(declare -f run); run $t rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 64 --kv full,snapkv --kv-budget 512 --repeats 3" > /tmp/b.txt 2>/tmp/b.err
  echo "== $t round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; [ $SECONDS -gt 400 ] && break; done 2>&1 | tee $R/run2.txt
echo "done at $SECONDS s"
