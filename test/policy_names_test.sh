#!/usr/bin/env bash
# Every KV policy keeps the name the user gave it in the plan and in every
# tool's record: PyramidKV and RankKV were once recorded as "snapkv".
# usage: policy_names_test.sh BIN_DIR NANO_DIR
set -u
bin=$1 nano=$2
. "$(dirname "${BASH_SOURCE[0]}")/expect.sh"

# has FILE NEEDLE WHAT: FILE holds NEEDLE (a fixed string).
has() {
    if grep -qF -- "$2" "$1"; then ok; else bad "$3: no '$2'"; head -c 2000 "$1"; fi
}

for i in $(seq 40); do echo "The ship sailed out of the harbour on the morning tide, line $i."; done >"$tmp/text.txt"
policies="snapkv pyramidkv h2o streamingllm rankkv pyramidkv-rankkv"

expect 0 '' -- "$bin/rankkv-generate" --model "$nano" --print-plan
has "$tmp/out" "KV policy: full," "generate --print-plan (full)"
for p in $policies; do
    expect 0 '' -- "$bin/rankkv-generate" --model "$nano" --print-plan --kv "$p" --kv-budget 40
    has "$tmp/out" "KV policy: $p," "generate --print-plan --kv $p"
    expect 0 '' -- "$bin/rankkv-generate" --model "$nano" --kv "$p" --kv-budget 40 \
        --max-new-tokens 4 --json
    has "$tmp/out" "\"kv_method\":\"$p\"" "generate --json --kv $p"
done

list=full,${policies// /,}
expect 0 '' -- "$bin/rankkv-bench" --model "$nano" --prompt-tokens 64 --new-tokens 4 --repeats 1 \
    --kv "$list" --kv-budget 40 --out "$tmp/bench.json"
for p in full $policies; do has "$tmp/bench.json" "\"kv_method\":	\"$p\"" "bench --kv $p"; done

expect 0 '' -- "$bin/rankkv-eval" --model "$nano" --dataset t="$tmp/text.txt" --context 128 \
    --tail 16 --max-windows 1 --method "$list" --budget 40 --json "$tmp/eval.json"
for p in full $policies; do has "$tmp/eval.json" "\"method\":	\"$p\"" "eval --method $p"; done

expect 0 '' -- "$bin/rankkv-compare" --model "$nano" --dataset t="$tmp/text.txt" --context 128 \
    --tail 16 --max-windows 1 --new-tokens 4 --repeats 1 --budget 40 \
    --rows full,snapkv,pyramidkv,rankkv,pyramidkv-rankkv --json "$tmp/compare.json"
for p in full snapkv pyramidkv rankkv pyramidkv-rankkv; do
    has "$tmp/compare.json" "\"policy\":	\"$p\"" "compare --rows $p"
    has "$tmp/compare.json" "\"row\":	\"$p\"" "compare --rows $p (row)"
done

finish policy_names_test
