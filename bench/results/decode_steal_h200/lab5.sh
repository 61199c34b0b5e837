#!/usr/bin/env bash
# Lab 5: fresh builds in new folders: h1 = HEAD, h2 = HEAD + shiftknob.patch (no env: same runtime),
# h3 = HEAD + wave.patch (split-row products launch a full wave). Alternated benches, greedy ids.
set -uo pipefail
H=$PWD/.carry/h14
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
for d in h1 h2 h3; do rm -rf /tmp/$d; mkdir -p /tmp/$d; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C /tmp/$d; done
(cd /tmp/h2 && patch -p1 < $H/shiftknob.patch > /dev/null) && (cd /tmp/h3 && patch -p1 < $H/wave.patch > /dev/null) || exit 1
for d in h1 h2 h3; do (cd /tmp/$d && cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j5 --target rankkv-bench rankkv-generate > /tmp/build_$d.log 2>&1 || echo "build $d failed") & done
(cd /tmp/h1 && cmake -S . -B build2 >/dev/null 2>&1 && cmake --build build2 -j2 --target rankkv-make-random-model >/dev/null 2>&1 && ./build2/bin/rankkv-make-random-model --preset pythia-2.8b --out /tmp/rnd > /dev/null 2>&1)
wait; echo "built at $SECONDS s"
cp models/pythia-nano/tokenizer.json /tmp/rnd/
M="--model /tmp/rnd --target cuda"
for d in h1 h2 h3; do /tmp/$d/build/bin/rankkv-generate $M --max-new-tokens 64 --ignore-eos --json --quiet > /tmp/g.txt 2>/dev/null; echo "generate $d rc=$? ids md5 $(grep -o '"output_ids":[^]]*' /tmp/g.txt | md5sum)"; done | tee $R/ids.txt
for round in 1 2 3; do for d in h1 h2 h3; do
  timeout 60 /tmp/$d/build/bin/rankkv-bench $M --prompt-tokens 512,1920 --new-tokens 128 --kv full --repeats 3 > /tmp/b.txt 2>/tmp/bench.err
  echo "== $d round $round rc=$? at $SECONDS s"; awk 'NR>2{print $4, $5, $6, $7, $NF}' /tmp/b.txt
done; done 2>&1 | tee $R/lab5.txt
echo "done at $SECONDS s"
