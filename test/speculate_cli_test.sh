#!/usr/bin/env bash
# rankkv-speculate as a user meets it: nano drafting for itself keeps every
# proposal and equals the target alone; prompt sets read from jsonl; both
# plans printed; the step timings of --time-only on a random-weight draft;
# the ReKV analysis (--rekv) writing every output, its presets and what they
# give way to; and what cannot run answered by a message: K outside 1..15,
# an evicting KV policy, another tokenizer, a broken prompt file, --rekv
# without the full cache or its directory.
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
# 26 tokens at K 3, every proposal kept: six rounds of four tokens, then
# one with a single token left to make, which proposes nothing; the mean
# of kept proposals is over the six that proposed.
expect 0 '' -- "$spec" --draft-model "$nano" --max-new-tokens 26 --spec-k 3 --json "$tmp/k3.json" --quiet
if [ "$("$bin/json_get" "$tmp/k3.json" runs.0.rounds)" = 7 ] \
    && [ "$("$bin/json_get" "$tmp/k3.json" runs.0.proposing_rounds)" = 6 ] \
    && [ "$("$bin/json_get" "$tmp/k3.json" runs.0.mean_accepted_per_round)" = 3 ]; then ok
else bad "kept proposals per round counts a round without proposals"; cat "$tmp/k3.json"; fi
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
expect 2 'excludes --prompts and --dataset' -- "$spec" --draft-model "$nano" --prompt hi --prompts gsm8k
expect 2 'prompt is empty' -- "$spec" --draft-model "$nano" --prompt ''
# An output of --rekv that is an input is refused before the work, and
# the input stays as it was.
mkdir -p "$tmp/clash"
echo 'The ship sailed out of the harbour at dawn.' > "$tmp/clash/summary_K4.json"
expect 2 'summary_K4.json is also an input' -- "$spec" --draft-model "$nano" --rekv "$tmp/clash" \
    --rekv-preset debug --dataset s="$tmp/clash/summary_K4.json" --dataset-prompt 4
if grep -q '^The ship sailed' "$tmp/clash/summary_K4.json"; then ok; else bad "--rekv wrote over an input"; fi
expect 2 'excludes --prompts and --dataset' -- "$spec" --draft-model "$nano" --prompt hi --dataset t=/dev/null

# Continuations: prompts cut from a text, shown under the dataset's name
# beside a jsonl set, every output the target's own.
for i in $(seq 60); do printf 'The ship sailed out of the harbour at dawn, and the crew sang. '; done > "$tmp/story.txt"
expect 0 'story ' -- "$spec" --draft-model "$nano" --dataset story="$tmp/story.txt" \
    --dataset-prompt 24 --max-prompts 3 --max-new-tokens 8 --spec-k 2 --json "$tmp/cont.json"
if [ "$("$bin/json_get" "$tmp/cont.json" prompt_sets.0)" = story ] && grep -q ' 3/3$' "$tmp/out"
then ok; else bad "--dataset: the story set and its three identical outputs"; cat "$tmp/out"; fi
expect 2 'no --prompt, --prompts or --dataset' -- "$spec" --draft-model "$nano" --time-only \
    --dataset story="$tmp/story.txt"
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

# The ReKV analysis: the random-weight draft (2 layers, nano's tokenizer) is
# rejected nearly every round, so every rejection is an event.
jget() { "$bin/json_get" "$@"; }
ln -s "$(cd "$nano" && pwd)/tokenizer.json" "$tmp/random/tokenizer.json"
mkdir -p "$tmp/sets" "$tmp/rekv"
for i in 1 2 3; do
    printf '{"turns": ["Tell me about ships, part %d."]}\n' "$i" >>"$tmp/sets/mt_bench_questions.jsonl"
    printf '{"question": "What is %d + 3?"}\n' "$i" >>"$tmp/sets/gsm8k_test.jsonl"
    printf '{"prompt": "def add_%d(a, b):\\n"}\n' "$i" >>"$tmp/sets/humaneval.jsonl"
done
expect 0 'K=4: NO-GO' -- "$spec" --draft-model "$tmp/random" --rekv "$tmp/rekv" --rekv-preset debug \
    --prompts-dir "$tmp/sets"
# debug: 2 prompts of each of the three sets, 16 tokens each, K 4.
if grep -q '^all  *4  *96 .* 6/6$' "$tmp/out"; then ok; else bad "--rekv debug: 6 prompts, 16 tokens, K 4"; cat "$tmp/out"; fi
if grep -q '^ReKV K=4: NO-GO: mean K/V cosine .* events; target rejected vs target: cosine K ' "$tmp/out"; then ok
else bad "--rekv: the verdict line"; cat "$tmp/out"; fi
for f in summary_K4.json events_K4.json combined_results.json; do
    if [ -s "$tmp/rekv/$f" ]; then ok; else bad "--rekv wrote no $f"; fi
done
for fig in fig1_similarity_distribution fig2_layer_similarity fig3_confidence_similarity \
    fig4_window_similarity fig5_target_rank fig6_rejection_position; do
    for ext in png.dat png.gp; do
        if [ -s "$tmp/rekv/plots/${fig}_K4.$ext" ]; then ok; else bad "--rekv wrote no plots/${fig}_K4.$ext"; fi
    done
    if ! command -v gnuplot >/dev/null; then continue; fi
    if head -c 4 "$tmp/rekv/plots/${fig}_K4.png" | grep -q PNG; then ok; else bad "--rekv: plots/${fig}_K4.png"; fi
done
sum="$tmp/rekv/summary_K4.json"
events=$(jget "$sum" events)
if [ "${events:-0}" -gt 0 ] && [ "$(jget "$tmp/rekv/events_K4.json" event_list.#)" = "$events" ]; then ok
else bad "--rekv: no events from a rejected draft ($events)"; fi
case "$(jget "$sum" verdict.verdict)" in NO-GO|CAUTION|GO) ok ;; *) bad "summary: verdict.verdict" ;; esac
if [ "$(jget "$sum" verdict.verdict)" = NO-GO ] && jget "$sum" verdict.text | grep -q '^NO-GO: mean K/V cosine'; then ok
else bad "summary: verdict.text"; fi
if [ "$(jget "$sum" k)" = 4 ] && [ "$(jget "$sum" draft_model)" = random ] && [ "$(jget "$sum" target_model)" = pythia-nano ]; then ok
else bad "summary: k, models"; fi
# 2 draft layers onto 4: 0 -> 0, 1 -> 3; heads 2, dims 80 (the same shape).
if [ "$(jget "$sum" compared.layer_map)" = '[0,3]' ] && [ "$(jget "$sum" compared.head_dim)" = 80 ] \
    && [ "$(jget "$sum" by_layer.draft_vs_target.#)" = 2 ] && [ "$(jget "$sum" by_layer.target_rejected_vs_target.#)" = 4 ]; then ok
else bad "summary: the layer map and compared dims"; fi
for key in overall.draft_vs_target.cos_k overall.target_rejected_vs_target.cos_v by_window_position.3.window_position \
    rejection_positions.0.count by_draft_confidence.4.bin by_target_rank.0.bin cosine_histogram.draft_vs_target_k truth_steps; do
    if jget "$sum" "$key" >/dev/null; then ok; else bad "summary lacks $key"; fi
done
if [ "$(jget "$sum" drafted)" -gt "$(jget "$sum" accepted)" ] \
    && [ "$(jget "$tmp/rekv/events_K4.json" event_list.0.target_rank)" -ge 2 ] \
    && [ "$(jget "$tmp/rekv/events_K4.json" event_list.0.draft_vs_target.cos_k.#)" = 2 ]; then ok
else bad "events: rejected tokens of target rank 2 or more, per draft layer"; fi
if [ "$(jget "$tmp/rekv/combined_results.json" runs.#)" = 1 ] && [ "$(jget "$tmp/rekv/combined_results.json" runs.0.k)" = 4 ] \
    && [ "$(jget "$tmp/rekv/combined_results.json" runs.0.events)" = "$events" ]; then ok
else bad "combined_results.json: one run of K 4"; fi

# Explicit sizes win over the preset's; sweep runs K = 1..8, one summary each.
expect 0 '' -- "$spec" --draft-model "$tmp/random" --rekv "$tmp/rekv" --rekv-preset debug --prompts-dir "$tmp/sets" \
    --spec-k 2 --max-prompts 1 --max-new-tokens 8
if grep -q '^all  *2  *24 .* 3/3$' "$tmp/out" && [ "$(jget "$tmp/rekv/summary_K2.json" k)" = 2 ]; then ok
else bad "--rekv-preset debug with --spec-k 2 --max-prompts 1 --max-new-tokens 8"; cat "$tmp/out"; fi
expect 0 '' -- "$spec" --draft-model "$tmp/random" --rekv "$tmp/rekv" --rekv-preset sweep --prompts-dir "$tmp/sets" \
    --max-prompts 1 --max-new-tokens 8
if [ "$(grep -c '^ReKV K=[1-8]: ' "$tmp/out")" -eq 8 ] && [ "$(jget "$tmp/rekv/combined_results.json" runs.#)" = 8 ] \
    && [ "$(jget "$tmp/rekv/combined_results.json" runs.7.k)" = 8 ] && [ -s "$tmp/rekv/summary_K7.json" ]; then ok
else bad "--rekv-preset sweep: K = 1..8"; cat "$tmp/out"; fi

expect 2 'only --kv full, not snapkv' -- "$spec" --draft-model "$tmp/random" --rekv "$tmp/rekv" --kv snapkv --kv-budget 40
expect 1 "ReKV output directory $tmp/no-such-dir" -- "$spec" --draft-model "$tmp/random" --rekv "$tmp/no-such-dir" \
    --prompts-dir "$tmp/sets"
expect 2 'needs --rekv DIR' -- "$spec" --draft-model "$tmp/random" --rekv-preset quick
expect 2 "unknown --rekv-preset 'huge'" -- "$spec" --draft-model "$tmp/random" --rekv "$tmp/rekv" --rekv-preset huge
expect 2 'not with --spec-adaptive' -- "$spec" --draft-model "$tmp/random" --rekv "$tmp/rekv" --spec-adaptive
expect 2 'not with --time-only' -- "$spec" --draft-model "$tmp/random" --rekv "$tmp/rekv" --time-only
expect 2 'names 4 twice' -- "$spec" --draft-model "$tmp/random" --rekv "$tmp/rekv" --spec-k 4,2,04

# A trained draft for pythia-mini, when ../shared is here: identical output
# (exit 1 otherwise), some proposals rejected.
if [ -n "$shared" ] && [ -d "$shared/models/pythia-mini" ] && [ -d "$shared/data/prompts" ]; then
    expect 0 'humaneval 2/2' -- "$spec" --model "$shared/models/pythia-mini" --draft-model "$nano" \
        --prompts humaneval --prompts-dir "$shared/data/prompts" --max-prompts 2 --max-new-tokens 24 --spec-k 3
    if grep -q '^humaneval  *3  *48  *0\.[0-9]* .* 2/2$' "$tmp/out"; then ok; else bad "nano -> mini"; cat "$tmp/out"; fi
    mkdir -p "$tmp/rekv-mini"
    expect 0 '' -- "$spec" --model "$shared/models/pythia-mini" --draft-model "$nano" --rekv "$tmp/rekv-mini" \
        --rekv-preset debug --prompts-dir "$shared/data/prompts"
    if grep -q '^all  *4  *96 .* 6/6$' "$tmp/out" && [ "$(jget "$tmp/rekv-mini/summary_K4.json" events)" -gt 0 ] \
        && [ "$(jget "$tmp/rekv-mini/summary_K4.json" compared.layer_map)" = '[0,8,15,23]' ]; then ok
    else bad "--rekv nano -> mini"; cat "$tmp/out"; fi
else
    echo "SKIP (part): $shared lacks pythia-mini or the prompt sets"
fi

finish speculate_cli
