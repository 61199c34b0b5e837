#!/usr/bin/env bash
# The command-line tools as a user meets them: --help, the bundled default,
# and bad input answered by a message and a non-zero exit, never a crash.
# usage: cli_test.sh BIN_DIR NANO_DIR
set -u
bin=$1 nano=$2
. "$(dirname "${BASH_SOURCE[0]}")/expect.sh"

for tool in rankkv-generate rankkv-ppl rankkv-bench rankkv-eval rankkv-compare rankkv-calibrate \
    rankkv-make-random-model rankkv-speculate; do
    if "$bin/$tool" --help | grep -q '^usage:'; then ok; else bad "$tool --help"; fi
done

gen="$bin/rankkv-generate"
expect 0 'decode' -- "$gen" --max-new-tokens 8 --ignore-eos --json
if tail -n 1 "$tmp/out" | grep -q '"output_ids":\[[0-9]*\(,[0-9]*\)\{7\}\]'; then ok; else bad "generate --json: 8 output ids"; cat "$tmp/out"; fi
expect 0 '' -- "$gen" --print-plan
for region in kv_cache_k kv_cache_v target_scratch residual total 'KV cache'; do
    if grep -q "$region" "$tmp/out"; then ok; else bad "--print-plan lacks $region"; fi
done
expect 0 'decode' -- "$gen" --temperature 0.8 --top-k 40 --top-p 0.9 --seed 7 --max-new-tokens 4

expect 1 'UTF-8' -- "$gen" --prompt $'bad \xff\xfe bytes'
expect 1 'plan allows' -- "$gen" --max-context 16 --max-new-tokens 8 \
    --prompt "a prompt that is certainly longer than eight tokens of this small vocabulary"
expect 1 'max_position_embeddings' -- "$gen" --max-context 4096
expect 1 'cannot open' -- "$gen" --model "$tmp/no-such-model"
# On a machine with a GPU this generates; without one it must say so.
if "$gen" --target cuda --max-new-tokens 4 >"$tmp/out" 2>"$tmp/err"; then ok
elif [ $? -eq 1 ] && grep -q 'CUDA\|cuda' "$tmp/err"; then ok
else bad "--target cuda: neither output nor a clear error"; cat "$tmp/err"; fi
expect 2 'unknown target' -- "$gen" --target tpu
expect 2 'temperature' -- "$gen" --temperature -1
expect 2 'top-p' -- "$gen" --top-p 0
expect 2 'max-new-tokens' -- "$gen" --max-new-tokens abc
expect 2 'unknown option' -- "$gen" --no-such-flag
# A list naming an entry twice would run and report the same row twice.
expect 2 "lists 'int8' twice" -- "$bin/rankkv-bench" --model "$nano" --kv-dtype int8,fp32,int8
expect 2 "lists '64' twice" -- "$bin/rankkv-bench" --model "$nano" --prompt-tokens 64,64
# A bench record keeps each timed run beside the median it reports.
expect 0 '' -- "$bin/rankkv-bench" --model "$nano" --prompt-tokens 32 --new-tokens 3 --repeats 3 \
    --out "$tmp/runs.json"
for k in ttft tpot; do
    runs=$("$bin/json_get" "$tmp/runs.json" "runs.0.${k}_ms_runs")
    middle=$(echo "$runs" | tr -d '[]' | tr ',' '\n' | sort -g | sed -n 2p)
    if [ "$("$bin/json_get" "$tmp/runs.json" "runs.0.${k}_ms_runs.#")" = 3 ] &&
        [ "$middle" = "$("$bin/json_get" "$tmp/runs.json" "runs.0.${k}_ms")" ]; then ok
    else bad "bench record: ${k}_ms_runs $runs, its middle not the median"; cat "$tmp/runs.json"; fi
done
expect 2 'empty' -- "$gen" --prompt ''

mkdir -p "$tmp/broken"
cp "$nano/config.json" "$nano/model.safetensors" "$tmp/broken/"
printf '{"model": {"type": "BPE", "vocab": 5}}' >"$tmp/broken/tokenizer.json"
expect 1 'tokenizer' -- "$gen" --model "$tmp/broken"
cp "$nano/tokenizer.json" "$tmp/broken/"
head -c 100 "$nano/model.safetensors" >"$tmp/broken/model.safetensors"
expect 1 'safetensors' -- "$gen" --model "$tmp/broken"
printf '{"model_type": "llama"}' >"$tmp/broken/config.json"
expect 1 'llama' -- "$gen" --model "$tmp/broken"

ppl="$bin/rankkv-ppl"
expect 2 'text' -- "$ppl"
expect 0 '' -- "$ppl" --print-plan --window 256
if grep -q 'logits rows 256' "$tmp/out" && grep -q 'total' "$tmp/out"; then ok; else bad "ppl --print-plan"; cat "$tmp/out"; fi
printf 'Too short.' >"$tmp/short.txt"
expect 1 'fewer than one window' -- "$ppl" --text "$tmp/short.txt"
expect 1 'cannot open' -- "$ppl" --text "$tmp/missing.txt"
for i in $(seq 40); do echo "The ship sailed out of the harbour on the morning tide, line $i."; done >"$tmp/text.txt"
expect 0 'window 2/2' -- "$ppl" --text "$tmp/text.txt" --window 64 --max-windows 2 --json
if tail -n 1 "$tmp/out" | grep -q '"ppl":[0-9.]*,.*"tokens_scored":128,.*"window":64'; then ok; else bad "ppl --json"; cat "$tmp/out"; fi

ev="$bin/rankkv-eval"
expect 2 'dataset' -- "$ev"
expect 2 'NAME=PATH' -- "$ev" --dataset nothing
expect 2 'shorter than' -- "$ev" --dataset t="$tmp/text.txt" --context 64 --tail 64
expect 2 'unknown KV method' -- "$ev" --dataset t="$tmp/text.txt" --method magic
expect 1 'no document of' -- "$ev" --dataset t="$tmp/text.txt" --context 1024 --tail 256
expect 1 'max_position_embeddings' -- "$ev" --dataset t="$tmp/text.txt" --context 4096 --tail 256
expect 0 'window 1/1' -- "$ev" --dataset t="$tmp/text.txt" --context 128 --tail 32 --max-windows 1
expect 0 'streamingllm' -- "$ev" --dataset t="$tmp/text.txt" --context 128 --tail 32 --max-windows 1 \
    --method full,snapkv,pyramidkv,h2o,streamingllm --budget 48,64 --kv-window 8
expect 2 'must exceed the observation window' -- "$ev" --dataset t="$tmp/text.txt" --context 128 \
    --tail 32 --method pyramidkv --budget 32

# KV budgets: wrong length, below the window, more than the plan holds.
echo "64 64 64" >"$tmp/budgets3.txt"
expect 2 '3 entries' -- "$gen" --kv snapkv --kv-budget 64 --kv-budgets "$tmp/budgets3.txt"
echo "100 100 20 36" >"$tmp/budgets_low.txt"
expect 2 'below the minimum' -- "$gen" --kv snapkv --kv-budget 64 --kv-budgets "$tmp/budgets_low.txt"
echo "64 x 64 64" >"$tmp/budgets_bad.txt"
expect 2 "'x', not a budget" -- "$gen" --kv snapkv --kv-budget 64 --kv-budgets "$tmp/budgets_bad.txt"
expect 1 'more than the plan allows' -- "$gen" --kv h2o --kv-budget 4000 --max-context 512
expect 2 'needs an average budget' -- "$gen" --kv snapkv
expect 0 '' -- "$gen" --kv snapkv --kv-budget 40 --max-new-tokens 24 --print-plan
# 4 layers x (40 kept + 24 new) positions x 2 (K, V) x 160 dims x 4 B
if grep -q 'KV cache: 327680 bytes' "$tmp/out"; then ok; else bad "KV bytes in the plan"; cat "$tmp/out"; fi
expect 0 '' -- "$gen" --kv pyramidkv --kv-budget 64 --max-new-tokens 8 --prompt "$(cat "$tmp/text.txt")"

# RankKV: the compiled-in profile of the bundled model, its refusals.
expect 0 '' -- "$gen" --kv rankkv --kv-budget 64 --max-new-tokens 8 --print-plan
if grep -q 'RankKV profile: pythia-nano' "$tmp/out"; then ok; else bad "rankkv plan names its profile"; cat "$tmp/out"; fi
expect 0 'decode' -- "$gen" --kv rankkv --kv-budget 64 --rank-strategy inverse --max-new-tokens 8 \
    --prompt "$(cat "$tmp/text.txt")"
expect 2 'unknown rank strategy' -- "$gen" --kv rankkv --kv-budget 64 --rank-strategy uniform
expect 2 'makes its own budgets' -- "$gen" --kv rankkv --kv-budget 64 --kv-budgets "$tmp/budgets3.txt"
if "$bin/rankkv-compare" --help | grep -q 'rankkv,rankkv-dynamic'; then
    expect 0 '' -- "$gen" --kv rankkv-dynamic --kv-budget 64 --max-new-tokens 8 --print-plan
else
    expect 1 'RANKKV_DYNAMIC=ON' -- "$gen" --kv rankkv-dynamic --kv-budget 64 --max-new-tokens 8
fi
"$bin/rankkv-make-random-model" --preset pythia-nano-shape --out "$tmp/random-nano" >/dev/null 2>&1
cp "$nano/tokenizer.json" "$tmp/random-nano/"
expect 1 'no RankKV profile in this build matches the model random-nano' -- \
    "$gen" --model "$tmp/random-nano" --kv rankkv --kv-budget 64 --max-new-tokens 4
expect 0 '' -- "$gen" --model "$tmp/random-nano" --kv snapkv --kv-budget 64 --max-new-tokens 4

# calibrate on a small text: a header that compiles on its own, regenerated
# exactly from its JSON; the profile runs once compiled in (test_rank_budget).
cal="$bin/rankkv-calibrate"
root=$(cd "$(dirname "$0")/.." && pwd)
expect 2 'give --out' -- "$cal"
expect 1 'need' -- "$cal" --data "$tmp/text.txt" --samples 64 --seq-len 256 --out "$tmp/p.h"
expect 0 'wrote' -- "$cal" --data "$root/README.md" --samples 2 --seq-len 128 \
    --out "$tmp/profile_tiny-test.h" --json "$tmp/tiny.json"
if cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I"$root/core" -x c "$tmp/profile_tiny-test.h" 2>"$tmp/cc"; then ok
else bad "generated header does not compile"; cat "$tmp/cc"; fi
if grep -q 'static const rk_profile rk_profile_tiny_test' "$tmp/profile_tiny-test.h"; then ok; else bad "header symbol"; fi
mkdir -p "$tmp/again"
expect 0 'wrote' -- "$cal" --from-json "$tmp/tiny.json" --out "$tmp/again/profile_tiny-test.h"
if cmp -s "$tmp/profile_tiny-test.h" "$tmp/again/profile_tiny-test.h"; then ok; else bad "--from-json differs"; fi
printf '{"model": "x"}' >"$tmp/bad.json"
expect 1 'layers' -- "$cal" --from-json "$tmp/bad.json" --out "$tmp/x.h"
expect 2 'holdout' -- "$cal" --data "$tmp/text.txt" --out "$tmp/p.h" --report "$tmp/r.json"

# The static-vs-dynamic bench, timing only, and its records.
expect 0 '' -- "$bin/rankkv-compare" --rows full,snapkv,rankkv,rankkv-random --budget 64 \
    --context 256 --tail 32 --new-tokens 8 --repeats 1 --json "$tmp/cmp.json" --markdown "$tmp/cmp.md"
if [ "$(grep -c '^| rankkv' "$tmp/cmp.md")" -eq 2 ] && grep -q '"row":\s*"rankkv-random"' "$tmp/cmp.json"; then ok
else bad "compare records"; cat "$tmp/cmp.md"; fi
expect 2 'unknown rank strategy' -- "$bin/rankkv-compare" --rows rankkv-best --budget 64
expect 2 'unknown rank strategy' -- "$bin/rankkv-compare" --rows pyramidkv-rankkv-best --budget 64
expect 2 'rows or seed' -- "$bin/rankkv-compare" --layout table --budget 64

# The published table's layout: a section per budget with both bases and
# both allocations, the full cache, the ablations at 256 and 512 only; the
# GFLOPs and throughput columns; the plot with its data and script.
expect 0 '' -- "$bin/rankkv-compare" --budget 64,256 --context 640 --tail 16 --new-tokens 4 \
    --repeats 1 --rows full,snapkv,rankkv,pyramidkv,pyramidkv-rankkv,rankkv-inverse,pyramidkv-rankkv-random \
    --layout seed --markdown "$tmp/seed.md" --json "$tmp/seed.json" --plot "$tmp/seed.png"
for section in '### Average budget 64' '### Average budget 256' '### Full KV cache (baseline)' \
    '### Ablation: average budget 256' '| PyramidKV | RankKV | pyramidkv-rankkv |' \
    '| SnapKV | inverse | rankkv-inverse |' '| PyramidKV | random | pyramidkv-rankkv-random |' \
    'Throughput (tok/s) | GFLOPs |'; do
    if grep -qF -- "$section" "$tmp/seed.md"; then ok; else bad "seed layout: no '$section'"; cat "$tmp/seed.md"; fi
done
if [ "$(grep -c '^| SnapKV | inverse' "$tmp/seed.md")" -eq 1 ] && ! grep -q 'Ablation: average budget 64' "$tmp/seed.md"
then ok; else bad "seed layout: ablations at 256 only"; cat "$tmp/seed.md"; fi
if grep -q '"gflops":' "$tmp/seed.json" && grep -q '"e2e_tok_s":' "$tmp/seed.json"; then ok
else bad "compare JSON: gflops, e2e_tok_s"; fi
if [ -s "$tmp/seed.png.dat" ] && [ -s "$tmp/seed.png.gp" ]; then ok; else bad "compare --plot data and script"; fi
if ! command -v gnuplot >/dev/null || [ -s "$tmp/seed.png" ]; then ok; else bad "compare --plot PNG"; fi

# A record shown again: the same markdown and plot data as the run wrote,
# without a model; it takes nothing that says what to run.
expect 0 '' -- "$bin/rankkv-compare" --from-json "$tmp/seed.json" --layout seed \
    --markdown "$tmp/again.md" --plot "$tmp/again.png"
if cmp -s "$tmp/seed.md" "$tmp/again.md" && cmp -s "$tmp/seed.png.dat" "$tmp/again.png.dat"
then ok; else bad "compare --from-json: not the run's markdown and plot data"; fi
expect 2 'not what to run' -- "$bin/rankkv-compare" --from-json "$tmp/seed.json" --budget 64
expect 2 'not what to run' -- "$bin/rankkv-compare" --from-json "$tmp/seed.json" --json "$tmp/x.json"
expect 1 'not a rankkv-compare record' -- "$bin/rankkv-compare" --from-json "$tmp/seed.md"
expect 2 'is also an input' -- "$bin/rankkv-compare" --from-json "$tmp/seed.json" --markdown "$tmp/seed.json"
# A perplexity no run makes (the check harness_ppl applies to a run's):
# refused, not shown. The record of pythia-mini's table, with its PPLs 1.
record="$(dirname "${BASH_SOURCE[0]}")/../bench/results/rankkv_compare_pythia-mini.json"
expect 0 '' -- "$bin/rankkv-compare" --from-json "$record"
if grep -q 'wikitext PPL' "$tmp/out"; then ok; else bad "compare --from-json: pythia-mini's record"; fi
sed 's/_ppl":[^,}]*/_ppl":\t1/' "$record" >"$tmp/ppl1.json"
expect 1 'wikitext_ppl of row 0: perplexity 1 is not one a run makes' -- \
    "$bin/rankkv-compare" --from-json "$tmp/ppl1.json"
if "$bin/json_get" "$tmp/seed.json" rows.0.row >/dev/null 2>&1 || grep -q '"rows"' "$tmp/seed.json"
then ok; else bad "compare --from-json: the record was written over"; fi

finish cli_test
