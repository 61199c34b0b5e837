#!/usr/bin/env bash
# The tools against hostile paths and input: outputs are written whole or not
# at all, refused before the work when they cannot be, never written over an
# input; every run's configuration is checked before the first runs; long
# names and missing arguments are answered by a message, never a crash.
# usage: cli_hostile_test.sh BIN_DIR NANO_DIR [SHARED_DIR]
set -u
bin=$1 nano=$2 shared=${3:-}
. "$(dirname "${BASH_SOURCE[0]}")/expect.sh"

# Refused before the work: nothing was loaded or run.
no_work() {
    if grep -q 'window\|loading\|\[tokenize\]\|samples' "$tmp/err"; then bad "worked before refusing: $*"; cat "$tmp/err"; else ok; fi
}
# No temporary file left beside the outputs in DIR.
no_temp() {
    if ls -A "$1" | grep -q '^\..*\.[A-Za-z0-9]\{6\}$'; then bad "temporary file left in $1"; ls -A "$1"; else ok; fi
}

gen="$bin/rankkv-generate" ppl="$bin/rankkv-ppl" bench="$bin/rankkv-bench" ev="$bin/rankkv-eval"
cmp="$bin/rankkv-compare" cal="$bin/rankkv-calibrate" rnd="$bin/rankkv-make-random-model"
for i in $(seq 40); do echo "The ship sailed out of the harbour on the morning tide, line $i."; done >"$tmp/text.txt"
cp "$tmp/text.txt" "$tmp/text.orig"
quick_eval=(--context 128 --tail 32 --max-windows 1)
quick_cmp=(--rows full --budget 64 --context 128 --tail 32 --new-tokens 2 --repeats 1 --max-windows 1)
quick_bench=(--prompt-tokens 8 --new-tokens 2 --repeats 1)

# 1. Nothing lost. A write that fails leaves the file that was there.
root=$(cd "$(dirname "$0")/.." && pwd)
expect 0 'wrote' -- "$cal" --data "$root/README.md" --samples 2 --seq-len 128 \
    --out "$tmp/profile_tiny-test.h" --json "$tmp/tiny.json"
cp "$tmp/profile_tiny-test.h" "$tmp/header.orig"
# Past RLIMIT_FSIZE a write fails with EFBIG (the signal is ignored).
(trap '' XFSZ; ulimit -f 2; exec "$cal" --from-json "$tmp/tiny.json" --out "$tmp/profile_tiny-test.h") \
    >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 1 ] && grep -q 'error:.*profile_tiny-test.h' "$tmp/err"; then ok; else bad "failed header write: status and message"; cat "$tmp/err"; fi
if cmp -s "$tmp/profile_tiny-test.h" "$tmp/header.orig"; then ok; else bad "a failed write replaced the header"; fi
no_temp "$tmp"
"$rnd" --preset pythia-nano-shape --out "$tmp/rm" >/dev/null 2>&1
cp "$tmp/rm/model.safetensors" "$tmp/rm.orig"
(trap '' XFSZ; ulimit -f 64; exec "$rnd" --preset pythia-nano-shape --seed 2 --out "$tmp/rm") >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 1 ]; then ok; else bad "failed safetensors write: status"; cat "$tmp/err"; fi
if cmp -s "$tmp/rm/model.safetensors" "$tmp/rm.orig"; then ok; else bad "a failed write replaced model.safetensors"; fi
no_temp "$tmp/rm"
# Not a regular file: refused before the work, never written or renamed over.
expect 1 'not a regular file' -- "$cmp" "${quick_cmp[@]}" --dataset t="$tmp/text.txt" --markdown /dev/full
no_work
mkfifo "$tmp/fifo"
expect 1 'not a regular file' -- "$bench" --model "$nano" "${quick_bench[@]}" --out "$tmp/fifo"
no_work
if [ -p "$tmp/fifo" ]; then ok; else bad "the FIFO was replaced"; fi
mkdir "$tmp/adir"
expect 1 'not a regular file' -- "$ev" --dataset t="$tmp/text.txt" "${quick_eval[@]}" --json "$tmp/adir"
no_work
# '-' is standard output where documented, and a failed write there is an error.
expect 0 '' -- "$bench" --model "$nano" "${quick_bench[@]}" --out -
if grep -q '"runs"' "$tmp/out" && [ ! -e ./- ]; then ok; else bad "bench --out - writes the record to stdout"; fi
expect 1 'standard output' -- sh -c '"$0" --model "$1" --prompt-tokens 8 --new-tokens 2 --repeats 1 --out - >/dev/full' "$bench" "$nano"
expect 1 'standard output' -- sh -c '"$0" --max-new-tokens 2 --json >/dev/full' "$gen"
expect 2 'standard output' -- "$cal" --data "$tmp/text.txt" --out -

# 2. Output paths checked before the work, and never an input or each other.
expect 1 'does not exist' -- "$ev" --dataset t="$tmp/text.txt" "${quick_eval[@]}" --json "$tmp/no/such/dir/r.json"
no_work
expect 1 'not a directory' -- "$cmp" "${quick_cmp[@]}" --json "$tmp/text.txt/r.json"
no_work
expect 2 'also an input' -- "$ev" --dataset t="$tmp/text.txt" "${quick_eval[@]}" --json "$tmp/text.txt"
if cmp -s "$tmp/text.txt" "$tmp/text.orig"; then ok; else bad "eval wrote over its dataset"; cp "$tmp/text.orig" "$tmp/text.txt"; fi
ln "$tmp/text.txt" "$tmp/hardlink.txt"
expect 2 'also an input' -- "$cmp" "${quick_cmp[@]}" --dataset t="$tmp/text.txt" --markdown "$tmp/hardlink.txt"
mkdir "$tmp/docs"
cp "$tmp/text.txt" "$tmp/docs/a.txt"
expect 2 'also an input' -- "$ev" --dataset d="$tmp/docs" "${quick_eval[@]}" --json "$tmp/docs/../docs/a.txt"
expect 2 'also an input' -- "$bench" --model "$tmp/rm" "${quick_bench[@]}" --out "$tmp/rm/config.json"
expect 2 'also an input' -- "$cal" --data "$tmp/text.txt" --samples 2 --seq-len 128 --out "$tmp/text.txt"
expect 2 'also an input' -- "$cal" --from-json "$tmp/tiny.json" --out "$tmp/tiny.json"
expect 2 'same file' -- "$cmp" "${quick_cmp[@]}" --json "$tmp/./same.out" --markdown "$tmp/adir/../same.out"
expect 2 'same file' -- "$cal" --data "$tmp/text.txt" --out "$tmp/p.h" --json "$tmp/p.h"
expect 2 'same file' -- "$cal" --data "$tmp/text.txt" --out "$tmp/p.h" --holdout "$tmp/text.txt" \
    --report "$tmp/x.png.dat" --plot "$tmp/x.png"
if [ -e "$tmp/same.out" ] || [ -e "$tmp/p.h" ]; then bad "a refused run wrote an output"; else ok; fi

# 3. bench checks every model and KV method before the first run.
expect 1 'cannot open' -- "$bench" --model "$nano" --model "$nano" --model "$tmp/no-model" "${quick_bench[@]}"
no_work
expect 2 'unknown KV method' -- "$bench" --model "$nano" --kv full,magic --kv-budget 64 "${quick_bench[@]}"
no_work
expect 1 'no RankKV profile' -- "$bench" --model "$tmp/rm" --kv full,rankkv --kv-budget 64 "${quick_bench[@]}"
no_work

# 4. A dataset name of any length fits in the table and the record.
long=$(printf 'n%.0s' $(seq 3000))
expect 0 '' -- "$cmp" "${quick_cmp[@]}" --dataset "$long=$tmp/text.txt" --markdown "$tmp/long.md" --json "$tmp/long.json"
if grep -q "| $long PPL |" "$tmp/long.md" && grep -q "\"${long}_ppl\"" "$tmp/long.json"; then ok; else bad "long dataset name cut"; fi

# 5. The command line: unknown targets, missing arguments.
for t in "$gen" "$ppl --text $tmp/text.txt" "$bench --model $nano" "$ev --dataset t=$tmp/text.txt" "$cmp" \
    "$cal --data $tmp/text.txt --out $tmp/p.h"; do
    expect 2 "unknown target 'bogus'" -- $t --target bogus
done
expect 2 'option --text needs an argument' -- "$ppl" --text
expect 2 'option --json needs an argument' -- "$ev" --dataset t="$tmp/text.txt" --json
expect 2 'option --kv-budget needs an argument' -- "$gen" --kv snapkv --kv-budget
expect 2 "unknown option '--no-such-flag'" -- "$rnd" --no-such-flag
expect 2 'option --ignore-eos takes no argument' -- "$gen" --ignore-eos=yes

# Dangling and looping symlinks given as input say so.
ln -s "$tmp/nothing-here" "$tmp/dangling.txt"
ln -s "$tmp/loop-b" "$tmp/loop-a"
ln -s "$tmp/loop-a" "$tmp/loop-b"
expect 1 'dangling symlink' -- "$ppl" --text "$tmp/dangling.txt"
expect 1 'symlink loop' -- "$ppl" --text "$tmp/loop-a"
expect 1 'dangling symlink' -- "$gen" --model "$tmp/dangling.txt"
expect 1 'dangling symlink' -- "$gen" --prompt-file "$tmp/dangling.txt"
expect 1 'dangling symlink' -- "$ev" --dataset t="$tmp/dangling.txt" "${quick_eval[@]}"
# A model directory with a broken link for its weights (a partial download).
mkdir "$tmp/partial"
cp "$nano/config.json" "$nano/tokenizer.json" "$tmp/partial/"
ln -s "$tmp/blobs/missing" "$tmp/partial/model.safetensors"
expect 1 'model.safetensors is a dangling symlink' -- "$gen" --model "$tmp/partial"
expect 1 'model.safetensors is a dangling symlink' -- "$bench" --model "$nano" --model "$tmp/partial" "${quick_bench[@]}"
no_work

# A dataset directory: every .txt document in file-name order, and what is
# skipped is named.
mkdir "$tmp/set"
cp "$tmp/text.txt" "$tmp/set/b.txt"
echo "notes" >"$tmp/set/notes.md"
mkdir "$tmp/set/folder.txt"
ln -s "$tmp/nothing-here" "$tmp/set/gone.txt"
expect 0 'window 1/1' -- "$ev" --dataset s="$tmp/set" "${quick_eval[@]}"
for what in notes.md folder.txt gone.txt; do
    if grep -q "skipping.*$what" "$tmp/err"; then ok; else bad "skipped $what not named"; cat "$tmp/err"; fi
done
mkdir "$tmp/many"
# Each document holds one window of 64 tokens, not two.
head -n 5 "$tmp/text.orig" >"$tmp/doc.txt"
for i in $(seq -w 300); do cp "$tmp/doc.txt" "$tmp/many/doc$i.txt"; done
expect 0 'window 300/300' -- "$ev" --dataset m="$tmp/many" --context 64 --tail 8 --max-windows 300
if grep -q '^m  *full .* 300 ' "$tmp/out"; then ok; else bad "300 documents, 300 windows"; cat "$tmp/out"; fi

# make-random-model: --rotary-pct 0 is kept, and the size is said first.
expect 0 'writing 0.01 GB' -- "$rnd" --preset pythia-nano-shape --rotary-pct 0 --out "$tmp/rot0"
if grep -q '"rotary_pct": 0,' "$tmp/rot0/config.json"; then ok; else bad "--rotary-pct 0 lost"; grep rotary "$tmp/rot0/config.json"; fi

# Only the text --max-windows needs is tokenized: bad bytes after it are
# never read, and a prompt is refused by its length before the rest.
{ for i in $(seq 3000); do echo "The ship sailed out of the harbour on the morning tide, line $i."; done
  printf 'bad \xff\xfe bytes\n'; } >"$tmp/tail-bad.txt"
expect 0 'window 1/1' -- "$ppl" --text "$tmp/tail-bad.txt" --window 64 --max-windows 1
expect 0 'window 1/1' -- "$ev" --dataset t="$tmp/tail-bad.txt" "${quick_eval[@]}"
expect 1 'UTF-8' -- "$ppl" --text "$tmp/tail-bad.txt" --window 64
expect 1 'more than 120 tokens; the plan allows 120' -- "$gen" --max-context 128 --max-new-tokens 8 \
    --prompt-file "$tmp/tail-bad.txt"
# The windows it scores are those of the whole file's tokens.
if [ -n "$shared" ] && [ -f "$shared/data/wikitext-2/wiki.test.raw" ]; then
    expect 0 '' -- "$ppl" --model "$nano" --text "$shared/data/wikitext-2/wiki.test.raw" --max-windows 2
    if grep -q '^ppl 86.2959 over 2048 tokens' "$tmp/out"; then ok; else bad "wiki.test.raw ppl over 2 windows"; cat "$tmp/out"; fi
fi

# A tokenizer that can emit an id the model has no logit for (an added token
# past vocab_size): every tool that scores or generates refuses the pair at
# load. Before, the last scored token of a window was read past the logits.
mkdir -p "$tmp/vocab"
cp "$nano/config.json" "$nano/model.safetensors" "$tmp/vocab/"
sed '0,/"added_tokens": \[/s//"added_tokens": [\n    {"id": 8192, "content": "<|extra|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},/' \
    "$nano/tokenizer.json" >"$tmp/vocab/tokenizer.json"
for i in $(seq 60); do echo "The ship sailed on the tide <|extra|>"; done >"$tmp/extra.txt"
expect 1 'ids up to 8192 but the model.s vocab_size is 8192' -- "$ppl" --model "$tmp/vocab" --text "$tmp/extra.txt" --window 64
expect 1 'vocab_size is 8192' -- "$ev" --model "$tmp/vocab" --dataset t="$tmp/extra.txt" "${quick_eval[@]}"
expect 1 'vocab_size is 8192' -- "$gen" --model "$tmp/vocab" --prompt "The ship"
expect 1 'vocab_size is 8192' -- "$cmp" --model "$tmp/vocab" --dataset t="$tmp/extra.txt" --context 128 --tail 16 --max-windows 1 --budget 64 --rows full
expect 1 'vocab_size is 8192' -- "$cal" --model "$tmp/vocab" --data "$tmp/extra.txt" --samples 1 --seq-len 64 --out "$tmp/vocab.h"

finish cli_hostile_test
