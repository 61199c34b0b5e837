#!/usr/bin/env bash
# --kv-dtype through the tools: the bytes --print-plan shows are the row
# formula's, every record and table names the dtype, rankkv-eval runs a
# list of dtypes against the first full-cache row (dNLL and KL), and bad
# options are one line and exit 2 before anything runs.
# usage: kv_dtype_cli_test.sh BIN_DIR NANO_DIR
set -u
bin=$1 nano=$2
. "$(dirname "${BASH_SOURCE[0]}")/expect.sh"
gen="$bin/rankkv-generate"

# has FILE NEEDLE WHAT: FILE holds NEEDLE (a fixed string).
has() {
    if grep -qF -- "$2" "$1"; then ok; else bad "$3: no '$2'"; head -c 3000 "$1"; fi
}

# pythia-nano: 4 layers x 512 positions x 2 heads, rows of 80 dims. A row:
# fp32 320 B, fp16 160, int8 80 + 5 groups x 4 = 100, int4 40 + 20 = 60;
# int4 in one group of 80: 40 + 4 = 44. K and V: 2 x 2048 x 2 x row.
for case in fp32:16:2621440 fp16:16:1310720 int8:16:819200 int4:16:491520 int4:80:360448; do
    IFS=: read -r dtype group bytes <<<"$case"
    expect 0 '' -- "$gen" --model "$nano" --print-plan --max-context 512 --kv-dtype "$dtype" \
        --kv-group "$group"
    has "$tmp/out" "KV cache: $bytes bytes" "--print-plan --kv-dtype $dtype --kv-group $group"
done
expect 0 '' -- "$gen" --model "$nano" --print-plan --kv-dtype int4
has "$tmp/out" "KV dtype int4: 0.2500 of fp16 rows in payload, 0.3750 with scales" "int4 ratios"
has "$tmp/out" "KV int4, target cpu" "int4 in the limits line"
expect 0 '' -- "$gen" --model "$nano" --print-plan --kv-dtype int8
has "$tmp/out" "KV dtype int8: 0.5000 of fp16 rows in payload, 0.6250 with scales" "int8 ratios"
# The prompt's region of a compressing prefill holds rows in the format:
# 200 positions x 2 heads x 60 B.
expect 0 '' -- "$gen" --model "$nano" --print-plan --kv-dtype int4 --kv snapkv --kv-budget 40 \
    --max-context 240 --max-new-tokens 40
if grep -q 'prefill_layer_k .* 24000 ' "$tmp/out"; then ok; else bad "int4 prefill region"; cat "$tmp/out"; fi

# Generation in every format and policy; the record names the dtype.
for dtype in fp16 int8 int4; do
    for kv in full snapkv h2o; do
        budget=()
        [ "$kv" = full ] || budget=(--kv-budget 40)
        expect 0 'decode' -- "$gen" --model "$nano" --kv "$kv" "${budget[@]}" --kv-dtype "$dtype" \
            --max-new-tokens 8 --json --quiet
        has "$tmp/out" "\"kv_dtype\":\"$dtype\"" "generate --json --kv-dtype $dtype --kv $kv"
    done
done

# rankkv-eval: a list of dtypes, each as rows, against the first full row.
for i in $(seq 40); do echo "The ship sailed out of the harbour on the morning tide, line $i."; done >"$tmp/text.txt"
expect 0 '' -- "$bin/rankkv-eval" --model "$nano" --dataset t="$tmp/text.txt" --context 128 \
    --tail 16 --max-windows 2 --method full,snapkv --budget 40 --kv-window 8 \
    --kv-dtype fp32,fp16,int8,int4 --kl --json "$tmp/eval.json"
for dtype in fp32 fp16 int8 int4; do
    has "$tmp/eval.json" "\"kv_dtype\":	\"$dtype\"" "eval --kv-dtype $dtype"
    if grep -q "^t  *full  *$dtype " "$tmp/out"; then ok; else bad "eval table: full $dtype"; cat "$tmp/out"; fi
done
if [ "$(grep -c '"kl_vs_full"' "$tmp/eval.json")" -eq 7 ] &&
    [ "$(grep -c '"nll_minus_full"' "$tmp/eval.json")" -eq 7 ]; then ok
else bad "eval: dNLL and KL for the 7 rows after the reference"; cat "$tmp/eval.json"; fi
has "$tmp/eval.json" '"reference":	{' "eval reference"
expect 0 '' -- "$bin/rankkv-eval" --model "$nano" --dataset t="$tmp/text.txt" --context 128 \
    --tail 16 --max-windows 1 --method full --kv-dtype int8,int4 --json "$tmp/eval2.json"
if grep -q '"kv_dtype":	"int8"' "$tmp/eval2.json" && ! grep -q '"kl_vs_full"' "$tmp/eval2.json"; then ok
else bad "eval without --kl: no KL"; fi

expect 0 '' -- "$bin/rankkv-bench" --model "$nano" --prompt-tokens 64 --new-tokens 4 --repeats 1 \
    --kv full,snapkv --kv-budget 40 --kv-dtype fp16,int4 --out "$tmp/bench.json"
if [ "$(grep -c '"kv_dtype":	"int4"' "$tmp/bench.json")" -eq 2 ]; then ok; else bad "bench kv_dtype"; fi
expect 0 '' -- "$bin/rankkv-compare" --model "$nano" --rows full,snapkv --budget 40 --context 128 \
    --tail 16 --new-tokens 4 --repeats 1 --kv-dtype int8 --json "$tmp/cmp.json" \
    --markdown "$tmp/cmp.md"
has "$tmp/cmp.json" '"kv_dtype":	"int8"' "compare --kv-dtype int8"
has "$tmp/cmp.md" '| snapkv | 40 | int8 |' "compare table"

# Bad options: one line naming the option, exit 2, nothing run.
lines() { if [ "$(wc -l <"$tmp/err")" -eq 2 ]; then ok; else bad "more than one line: $*"; cat "$tmp/err"; fi; }
expect 2 "unknown KV dtype 'int3' (have: fp32, fp16, int8, int4)" -- "$gen" --model "$nano" --kv-dtype int3
lines unknown dtype
expect 2 'KV group of 7 channels does not divide head_dim 80' -- "$gen" --model "$nano" \
    --kv-dtype int4 --kv-group 7
lines bad group
expect 2 'does not divide head_dim 80' -- "$bin/rankkv-eval" --model "$nano" \
    --dataset t="$tmp/text.txt" --kv-dtype fp32,int8 --kv-group 7
expect 2 'kv-group' -- "$gen" --model "$nano" --kv-dtype int8 --kv-group 0
expect 2 'unknown KV dtype' -- "$bin/rankkv-bench" --model "$nano" --kv-dtype fp32,bf16
expect 2 'unknown KV dtype' -- "$bin/rankkv-compare" --model "$nano" --kv-dtype q8
# CUDA stores fp16 only until its quantized kernels exist: a build with the
# target refuses int8 before touching the device; one without has no target.
if "$gen" --target cuda --print-plan 2>&1 | grep -q 'no CUDA target'; then
    expect 1 'no CUDA target' -- "$gen" --model "$nano" --target cuda --kv-dtype int8
else
    expect 2 'the cuda target has no int8 KV cache (it stores: fp16)' -- "$gen" --model "$nano" \
        --target cuda --kv-dtype int8
    lines cuda int8
    expect 2 'the cuda target has no int4 KV cache' -- "$bin/rankkv-eval" --model "$nano" \
        --target cuda --dataset t="$tmp/text.txt" --kv-dtype fp16,int4
fi

finish kv_dtype_cli_test
