#!/usr/bin/env bash
# rankkv-speculate as a user meets it: nano drafting for itself keeps every
# proposal and equals the target alone; prompt sets read from jsonl; both
# plans printed; the step timings of --time-only on a random-weight draft;
# and what cannot run answered by a message: K outside 1..15, an evicting
# KV policy, another tokenizer, a broken prompt file.
# usage: speculate_cli_test.sh BIN_DIR NANO_DIR [SHARED_DIR]
set -u
bin=$1 nano=$2 shared=${3:-}
. "$(dirname "${BASH_SOURCE[0]}")/expect.sh"
spec="$bin/rankkv-speculate"

if "$spec" --help | grep -q '^usage:'; then ok; else bad "--help"; fi

expect 0 '' -- "$spec" --draft-model "$nano" --max-new-tokens 24 --spec-k 1,3,8 --json "$tmp/run.json"
if grep -q '^prompt  *3  *24  *1.000 .* 1/1$' "$tmp/out"; then ok; else bad "nano -> nano: every proposal kept, output identical"; cat "$tmp/out"; fi
for key in '"acceptance_rate":	1' '"speedup"' '"draft_model":	"pythia-nano"' '"commit"' '"device"' '"output_ids"'; do
    if grep -q "$key" "$tmp/run.json"; then ok; else bad "--json lacks $key"; fi
done
expect 0 '' -- "$spec" --draft-model "$nano" --max-new-tokens 24 --spec-k 2 --spec-adaptive --no-baseline --quiet
if grep -q '^prompt  *~2  *24  *1.000 .* -$' "$tmp/out"; then ok; else bad "--spec-adaptive --no-baseline"; cat "$tmp/out"; fi

expect 0 '' -- "$spec" --draft-model "$nano" --print-plan --spec-k 6
if [ "$(grep -c '^ *total' "$tmp/out")" -eq 4 ] && grep -q '^target: ' "$tmp/out" && grep -q '^draft: ' "$tmp/out" \
    && grep -q 'logits rows 7' "$tmp/out" && grep -q 'logits rows 2' "$tmp/out"; then ok
else bad "--print-plan: both plans"; cat "$tmp/out"; fi

mkdir -p "$tmp/prompts"
printf '{"question_id": 1, "turns": ["Tell me about ships.", "More."]}\n\n{"question_id": 2, "turns": ["Write a poem."]}\n' \
    >"$tmp/prompts/mt_bench_questions.jsonl"
printf '{"question": "What is 2 + 3?", "answer": "5"}\n' >"$tmp/prompts/gsm8k_test.jsonl"
expect 0 'gsm8k 3/3' -- "$spec" --draft-model "$nano" --prompts mt-bench,gsm8k --prompts-dir "$tmp/prompts" \
    --max-new-tokens 8 --spec-k 4
for row in '^mt-bench  *4  *16 ' '^gsm8k  *4  *8 ' '^all  *4  *24  *1.000 .* 3/3$'; do
    if grep -q "$row" "$tmp/out"; then ok; else bad "prompt sets: no row $row"; cat "$tmp/out"; fi
done
printf '{"question": "fine"}\nnot json\n' >"$tmp/prompts/gsm8k_test.jsonl"
expect 1 'gsm8k_test.jsonl line 2 is not JSON' -- "$spec" --draft-model "$nano" --prompts gsm8k \
    --prompts-dir "$tmp/prompts"
printf '{"answer": "no question"}\n' >"$tmp/prompts/gsm8k_test.jsonl"
expect 1 'no text in "question"' -- "$spec" --draft-model "$nano" --prompts gsm8k --prompts-dir "$tmp/prompts"
expect 1 'cannot open' -- "$spec" --draft-model "$nano" --prompts humaneval --prompts-dir "$tmp/prompts"

expect 2 'spec-k expects an integer in \[1, 15\]' -- "$spec" --draft-model "$nano" --spec-k 0
expect 2 'spec-k expects an integer in \[1, 15\]' -- "$spec" --draft-model "$nano" --spec-k 4,16
expect 2 'evicts rows' -- "$spec" --draft-model "$nano" --kv h2o --kv-budget 24
expect 2 'evicts rows' -- "$spec" --draft-model "$nano" --kv streamingllm --kv-budget 24
expect 2 'draft-model DIR is required' -- "$spec"
expect 2 'exclude each other' -- "$spec" --draft-model "$nano" --prompt hi --prompts gsm8k
expect 2 'unknown prompt set' -- "$spec" --draft-model "$nano" --prompts wikitext
expect 2 'not a list' -- "$spec" --draft-model "$nano" --spec-k 2,4 --spec-adaptive
expect 2 'unknown target' -- "$spec" --draft-model "$nano" --target tpu
expect 0 '' -- "$spec" --draft-model "$nano" --kv snapkv --kv-budget 40 --kv-window 8 --max-new-tokens 16 \
    --prompt "$(printf 'The ship sailed out of the harbour on the morning tide. %.0s' 1 2 3 4)"
if grep -q '^prompt  *4  *16 .* 1/1$' "$tmp/out"; then ok; else bad "snapkv target"; cat "$tmp/out"; fi

# Another tokenizer: one id moved.
mkdir -p "$tmp/other"
ln -s "$(cd "$nano" && pwd)/config.json" "$tmp/other/config.json"
ln -s "$(cd "$nano" && pwd)/model.safetensors" "$tmp/other/model.safetensors"
sed 's/"the": 429/"the": 372/' "$nano/tokenizer.json" >"$tmp/other/tokenizer.json"
expect 1 "different tokenizers: token 'the' is id 429 for the target, 372 for the draft" -- \
    "$spec" --draft-model "$tmp/other"

# --time-only on a random-weight draft (no tokenizer needed).
expect 0 '' -- "$bin/rankkv-make-random-model" --preset pythia-nano-shape --layers 2 --out "$tmp/random"
expect 0 '' -- "$spec" --draft-model "$tmp/random" --time-only --context 96 --spec-k 1,2,8 --repeats 3 \
    --json "$tmp/time.json"
if grep -q '^context 96: target step' "$tmp/out" && grep -q '^   8 ' "$tmp/out"; then ok; else bad "--time-only table"; cat "$tmp/out"; fi
for key in '"t_target_step_ms"' '"t_draft_step_ms"' '"t_verify_ms"' '"tokens_per_round"' '"acceptance":	0.9' '"formula"'; do
    if grep -q "$key" "$tmp/time.json"; then ok; else bad "--time-only --json lacks $key"; fi
done
expect 2 'random token ids' -- "$spec" --draft-model "$tmp/random" --time-only --prompt hi

# A trained draft for pythia-mini, when ../shared is here: identical output
# (exit 1 otherwise), some proposals rejected.
if [ -n "$shared" ] && [ -d "$shared/models/pythia-mini" ] && [ -d "$shared/data/prompts" ]; then
    expect 0 'humaneval 2/2' -- "$spec" --model "$shared/models/pythia-mini" --draft-model "$nano" \
        --prompts humaneval --prompts-dir "$shared/data/prompts" --max-prompts 2 --max-new-tokens 24 --spec-k 3
    if grep -q '^humaneval  *3  *48  *0\.[0-9]* .* 2/2$' "$tmp/out"; then ok; else bad "nano -> mini"; cat "$tmp/out"; fi
else
    echo "SKIP (part): $shared lacks pythia-mini or the prompt sets"
fi

finish speculate_cli
