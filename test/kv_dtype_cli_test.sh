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

# lines WHAT: the last command's stderr is its one line and the pointer to --help.
lines() { if [ "$(wc -l <"$tmp/err")" -eq 2 ]; then ok; else bad "more than one line: $*"; cat "$tmp/err"; fi; }
# one_line WHAT: the last command's stderr is one line (an error of the build or the plan).
one_line() { if [ "$(wc -l <"$tmp/err")" -eq 1 ]; then ok; else bad "more than one line: $*"; cat "$tmp/err"; fi; }

# pythia-nano: 4 layers x 512 positions x 2 heads, rows of 80 dims. A row:
# fp32 320 B, fp16 160, int8 80 + 5 groups x 4 = 100, int4 40 + 20 = 60,
# int2 20 + 20 = 40; int4 in one group of 80: 40 + 4 = 44. K and V:
# 2 x 2048 x 2 x row.
for case in fp32:16:2621440 fp16:16:1310720 int8:16:819200 int4:16:491520 int2:16:327680 \
    int4:80:360448; do
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
# KIVI (kv_kivi.h): per head and layer of 512 rows, 512 quantized
# positions (512 rounded down to the residual R) and min(R, 512) fp16 ones.
# A quantized position: 80 x (key bits + value bits) / 8 B of codes + 2 x 5
# groups x 4 B of scales; a residual position 2 x 160 B. x 2 heads x 4 layers:
# kivi (2/4) 512 x 100 + 64 x 320 = 71680 B a head and layer, 573440 in all;
# kivi2 (2/2) 512 x 80 + 20480 = 61440, 491520; kivi4 (4/4) 512 x 120 + 20480
# = 81920, 655360; kivi with R = 32: 512 x 100 + 32 x 320 = 61440, 491520.
for case in kivi:64:573440 kivi2:64:491520 kivi4:64:655360 kivi:32:491520; do
    IFS=: read -r dtype residual bytes <<<"$case"
    expect 0 '' -- "$gen" --model "$nano" --print-plan --max-context 512 --kv-dtype "$dtype" \
        --kv-residual "$residual"
    has "$tmp/out" "KV cache: $bytes bytes ($dtype: 2 heads x (2048 quantized positions x" \
        "--print-plan --kv-dtype $dtype --kv-residual $residual"
done
expect 0 '' -- "$gen" --model "$nano" --print-plan --max-context 512 --kv-dtype kivi
has "$tmp/out" "KV dtype kivi: 0.1875 of fp16 rows in payload, 0.3125 with scales, 0.4375 of this plan's 2048 fp16 positions with the residual (group 16, residual 64)" "kivi ratios"
# SnapKV keeping 40 of 200: 40 + 40 rows a layer, 64 quantized and 64 fp16
# slots, 64 x 100 + 64 x 320 = 26880 B a head and layer; the prompt's region
# fp16, 200 x 2 heads x 160 B.
expect 0 '' -- "$gen" --model "$nano" --print-plan --kv-dtype kivi --kv snapkv --kv-budget 40 \
    --max-context 240 --max-new-tokens 40
has "$tmp/out" "KV cache: 215040 bytes (kivi: 2 heads x (256 quantized positions x 100 B + 256 fp16 residual positions x 320 B)" "kivi snapkv bytes"
if grep -q 'prefill_layer_k .* 64000 ' "$tmp/out"; then ok; else bad "kivi prefill region"; cat "$tmp/out"; fi

# smartkv (kv_smart.h): per head and layer of C = 512 rows, an fp16 tier of
# 36 (4 sinks + 32 recent) and the other 476 split between the steps that
# bracket their average a = (8 x 512 - 16 x 36) / 476 bits (bits a row
# element with scales: fp16 16, int8 10, int4 6): floor(476 x (a - 6) / 4)
# = 166 int8, 310 int4. Rows 160 / 100 / 60 B: 36 x 160 + 166 x 100 + 310 x
# 60 = 40960 B of K and of V, + 8 x 512 of slot maps on K: 86016 a head and
# layer, x 2 heads x 4 layers = 688128. Payload 36 x 160 + 166 x 80 + 310 x
# 40 = 31440 of fp16's 81920 (0.3838); with scales 0.5000; with maps 0.5250.
expect 0 '' -- "$gen" --model "$nano" --print-plan --max-context 512 --kv-dtype smartkv
has "$tmp/out" "KV cache: 688128 bytes (smartkv, average 8 bits per element with scales" "smartkv bytes"
has "$tmp/out" "KV layer 3: smartkv tiers 36 / 166 / 310 / 0 of 512 positions x 2 heads, 172032 bytes" "smartkv tiers"
has "$tmp/out" "KV dtype smartkv: 0.3838 of fp16 rows in payload, 0.5000 with scales, 0.5250 with the slot maps (group 16)" "smartkv ratios"
# At 5 bits: a = (5 x 512 - 576) / 476 = 4.17, between int2 (4) and int4:
# floor(476 x 0.17 / 2) = 40 int4, 436 int2; 36 x 160 + 40 x 60 + 436 x 40
# = 25600 B, + 4096 of maps on K: 55296 a head and layer, 442368 in all.
expect 0 '' -- "$gen" --model "$nano" --print-plan --max-context 512 --kv-dtype smartkv \
    --kv-bits-avg 5
has "$tmp/out" "KV layer 0: smartkv tiers 36 / 0 / 40 / 436 of 512 positions x 2 heads, 110592 bytes" "smartkv 5-bit tiers"
has "$tmp/out" "KV cache: 442368 bytes" "smartkv 5-bit bytes"
expect 2 'kv-bits-avg 3 is outside' -- "$gen" --model "$nano" --kv-dtype smartkv \
    --kv-bits-avg 3
lines smartkv bits below
expect 2 'kv-bits-avg 16.5 is outside' -- "$gen" --model "$nano" --kv-dtype smartkv \
    --kv-bits-avg 16.5
lines smartkv bits above
for kv in h2o streamingllm; do
    expect 2 "--kv-dtype smartkv: $kv evicts single rows into a victim's place" -- "$gen" \
        --model "$nano" --kv-dtype smartkv --kv "$kv" --kv-budget 40
    lines smartkv "$kv"
done
expect 2 '--kv-error smartkv: a smartkv row' -- "$bin/rankkv-ppl" --model "$nano" \
    --text "$nano/config.json" --kv-error smartkv
expect 2 'every score would be fp16' -- "$bin/rankkv-ppl" --model "$nano" \
    --text "$nano/config.json" --kv-dtype smartkv
for kv in full snapkv; do
    budget=()
    [ "$kv" = full ] || budget=(--kv-budget 40)
    expect 0 'decode' -- "$gen" --model "$nano" --kv "$kv" "${budget[@]}" --kv-dtype smartkv \
        --max-new-tokens 8 --json --quiet
    has "$tmp/out" '"kv_dtype":"smartkv"' "generate --json smartkv --kv $kv"
done

# The prompt's region of a compressing prefill holds rows in the format:
# 200 positions x 2 heads x 60 B.
expect 0 '' -- "$gen" --model "$nano" --print-plan --kv-dtype int4 --kv snapkv --kv-budget 40 \
    --max-context 240 --max-new-tokens 40
if grep -q 'prefill_layer_k .* 24000 ' "$tmp/out"; then ok; else bad "int4 prefill region"; cat "$tmp/out"; fi

# Generation in every format and policy; the record names the dtype.
for dtype in fp16 int8 int4 kivi kivi2 kivi4; do
    for kv in full snapkv h2o; do
        case "$dtype:$kv" in kivi*:h2o) continue ;; esac
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
    --kv-dtype fp32,fp16,int8,int4,kivi,kivi2,kivi4 --kl --json "$tmp/eval.json"
for dtype in fp32 fp16 int8 int4 kivi kivi2 kivi4; do
    has "$tmp/eval.json" "\"kv_dtype\":	\"$dtype\"" "eval --kv-dtype $dtype"
    if grep -q "^t  *full  *$dtype " "$tmp/out"; then ok; else bad "eval table: full $dtype"; cat "$tmp/out"; fi
done
if [ "$(grep -c '"kl_vs_full"' "$tmp/eval.json")" -eq 13 ] &&
    [ "$(grep -c '"nll_minus_full"' "$tmp/eval.json")" -eq 13 ]; then ok
else bad "eval: dNLL and KL for the 13 rows after the reference"; cat "$tmp/eval.json"; fi
has "$tmp/eval.json" '"kv_residual":	64' "eval kivi residual"
has "$tmp/eval.json" '"reference":	{' "eval reference"
expect 0 '' -- "$bin/rankkv-eval" --model "$nano" --dataset t="$tmp/text.txt" --context 128 \
    --tail 16 --max-windows 2 --method full,snapkv --budget 40 --kv-window 8 \
    --kv-dtype fp32,smartkv --kl --json "$tmp/eval3.json"
if [ "$(grep -c '"kv_dtype":	"smartkv"' "$tmp/eval3.json")" -eq 2 ] &&
    grep -q '"kv_bits_avg":	8' "$tmp/eval3.json" &&
    grep -q "^t  *snapkv  *smartkv  *uniform  *40 " "$tmp/out"; then ok
else bad "eval smartkv rows"; cat "$tmp/out"; fi
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

# rankkv-ppl: the full cache in a dtype, named in its JSON; --kv-error's
# table (a row per layer, then the overall) and record.
expect 0 '' -- "$bin/rankkv-ppl" --model "$nano" --text "$tmp/text.txt" --window 64 \
    --max-windows 2 --kv-dtype int4 --kv-group 80 --json
has "$tmp/out" '"kv_dtype":"int4","kv_group":80' "ppl --kv-dtype int4"
expect 0 '' -- "$bin/rankkv-ppl" --model "$nano" --text "$tmp/text.txt" --window 64 \
    --max-windows 2 --kv-error int8,int4 --out "$tmp/kve.json"
if grep -q '^3  *[0-9.e-]* *[0-9.e-]* *[0-9.e-]* *[0-9.e-]*$' "$tmp/out" &&
    grep -q '^overall ' "$tmp/out"; then ok; else bad "ppl --kv-error table"; cat "$tmp/out"; fi
has "$tmp/kve.json" '"int4":	{' "ppl --kv-error record"
has "$tmp/kve.json" '"rows_per_layer":	256' "ppl --kv-error rows (2 windows x 64 x 2 heads)"
expect 0 '' -- "$bin/rankkv-ppl" --model "$nano" --text "$tmp/text.txt" --window 64 \
    --max-windows 2 --kv-error int4,kivi,kivi4 --kv-residual 32 --out "$tmp/kve-kivi.json"
has "$tmp/kve-kivi.json" '"kivi4":	{' "ppl --kv-error kivi4 record"
has "$tmp/kve-kivi.json" '"kv_residual":	32' "ppl --kv-error kivi residual"
expect 0 '' -- "$bin/rankkv-ppl" --model "$nano" --text "$tmp/text.txt" --window 64 \
    --max-windows 2 --kv-dtype kivi2 --json
has "$tmp/out" '"kv_dtype":"kivi2","kv_group":16,"kv_residual":64' "ppl --kv-dtype kivi2"
expect 2 '--kv-error measures against the fp32 cache, and this run'"'"'s is fp16' -- \
    "$bin/rankkv-ppl" --model "$nano" --text "$tmp/text.txt" --kv-dtype fp16 --kv-error int8
lines ppl kv-error over fp16
expect 2 "unknown KV dtype 'int3'" -- "$bin/rankkv-ppl" --model "$nano" --text "$tmp/text.txt" \
    --kv-error int8,int3

# --kv-memory: the most bits whose whole cache fits (the bytes of the rows
# above: 512 positions, 448 prompt + 64 new), else int8's largest SnapKV
# budget (1600 B a position over the 4 layers x 2 heads x K and V), and the
# choice in the record.
for case in 1.5GiB:fp32:2621440 2621439:fp16:1310720 819200:int8:819200 0.8MB:int4:491520; do
    IFS=: read -r memory dtype bytes <<<"$case"
    expect 0 "$dtype KV cache, full: 512 positions per layer, $bytes bytes" -- "$gen" \
        --model "$nano" --print-plan --max-context 512 --kv-memory "$memory"
    has "$tmp/out" "KV cache: $bytes bytes" "--kv-memory $memory"
done
expect 0 'int8 KV cache, snapkv keeping an average of 243 positions per layer, 491200 bytes' -- \
    "$gen" --model "$nano" --print-plan --max-context 512 --kv snapkv --kv-memory 491519
has "$tmp/out" "KV cache: 491200 bytes" "--kv-memory 491519 --kv snapkv"
# 128 positions (120 + 8): int8 holds no window of 32 in 60 kB, int4 keeps
# 54 (62 rows a layer of 960 B).
expect 0 'int4 KV cache, snapkv keeping an average of 54' -- "$gen" --model "$nano" \
    --max-context 128 --max-new-tokens 8 --kv snapkv --kv-memory 60kB --json --quiet
has "$tmp/out" '"kv_dtype":"int4","kv_budget":54' "generate --kv-memory record"
has "$tmp/out" '"kv_memory":{"given_bytes":60000,"kv_dtype":"int4","kv_budget":54,"whole_prompt":false,"kv_bytes":59520}' \
    "generate --kv-memory choice"
# --kv-dtype fixes the dtype, the budget follows: 37 int8 rows, a window of 8.
expect 0 'int8 KV cache, snapkv keeping an average of 29 positions per layer, 59200 bytes' -- "$gen" --model "$nano" \
    --print-plan --max-context 128 --max-new-tokens 8 --kv snapkv --kv-memory 60kB --kv-dtype int8 \
    --kv-window 8
expect 2 '--kv-memory 92159: 92159 bytes are too few for snapkv: its smallest cache (average 32 positions per layer, int4) needs 92160' \
    -- "$gen" --model "$nano" --max-context 512 --kv snapkv --kv-memory 92159
lines kv-memory too small
expect 2 'hold no full KV cache of 512 positions: it needs 491520 at int4' -- "$gen" \
    --model "$nano" --max-context 512 --kv-memory 491519
lines kv-memory too small, full
expect 2 '--kv-memory chooses the budget: give it or --kv-budget(s), not both' -- "$gen" \
    --model "$nano" --kv snapkv --kv-budget 40 --kv-memory 1MB
lines kv-memory and kv-budget
expect 2 "--kv-memory: '1.5G' is not a size in bytes" -- "$gen" --model "$nano" --kv-memory 1.5G
lines kv-memory 1.5G
expect 2 'not --kv/--kv-budget/--kv-memory' -- "$bin/rankkv-eval" --model "$nano" \
    --dataset t="$tmp/text.txt" --kv-memory 1MB
expect 0 '' -- "$bin/rankkv-bench" --model "$nano" --prompt-tokens 64 --new-tokens 4 --repeats 1 \
    --kv snapkv --kv-memory 40kB --kv-dtype int4 --out "$tmp/bench-mem.json"
# 64 + 4 positions: 41 int4 rows a layer.
has "$tmp/bench-mem.json" '"kv_budget":	37' "bench --kv-memory"

# Bad options: one line naming the option, exit 2, nothing run.
expect 2 "unknown KV dtype 'int3' (have: fp32, fp16, int8, int4, int2, kivi, kivi2, kivi4, smartkv)" -- "$gen" --model "$nano" --kv-dtype int3
lines unknown dtype
# KIVI: the evicting policies, a residual that is not a multiple of the
# group, a group that does not divide head_dim, --kv-memory.
expect 2 '--kv-dtype kivi: h2o evicts single rows, and a kivi cache quantizes keys per channel' \
    -- "$gen" --model "$nano" --kv h2o --kv-budget 40 --kv-dtype kivi
lines kivi h2o
expect 2 '--kv-dtype kivi4: streamingllm evicts single rows' -- "$bin/rankkv-eval" \
    --model "$nano" --dataset t="$tmp/text.txt" --method full,streamingllm --budget 40 \
    --kv-dtype fp32,kivi4
lines kivi streamingllm
expect 2 'KV residual of 24 positions is not a multiple of the KV group of 16' -- "$gen" \
    --model "$nano" --kv-dtype kivi --kv-residual 24
lines kivi residual
expect 2 'KV group of 7 channels does not divide head_dim 80 (kivi2 rows are quantized in whole groups)' -- \
    "$gen" --model "$nano" --kv-dtype kivi2 --kv-group 7
lines kivi group
expect 2 '--kv-memory chooses among the row formats (fp32, fp16, int8, int4), not kivi' -- \
    "$gen" --model "$nano" --kv snapkv --kv-memory 1MB --kv-dtype kivi
lines kivi kv-memory
expect 2 'KV group of 7 channels does not divide head_dim 80 (int4 rows are quantized in whole groups)' -- \
    "$gen" --model "$nano" --kv-dtype int4 --kv-group 7
lines bad group
expect 2 'does not divide head_dim 80' -- "$bin/rankkv-eval" --model "$nano" \
    --dataset t="$tmp/text.txt" --kv-dtype fp32,int8 --kv-group 7
expect 2 'kv-group' -- "$gen" --model "$nano" --kv-dtype int8 --kv-group 0
# A group is checked against the model even where the dtype has none.
expect 2 '--kv-group: KV group of 7 channels' -- "$gen" --model "$nano" --kv-dtype fp32 --kv-group 7
# Options of one format with a dtype that has none of it: refused, not ignored.
expect 2 '--kv-bits-avg sets smartkv' -- "$gen" --model "$nano" --kv-dtype int8 --kv-bits-avg 6
lines bits-avg without smartkv
expect 2 '--kv-residual sets a KIVI cache' -- "$bin/rankkv-eval" --model "$nano" \
    --dataset t="$tmp/text.txt" --kv-dtype fp32,int4 --kv-residual 32
expect 2 '--kv-residual sets a KIVI cache' -- "$bin/rankkv-ppl" --model "$nano" \
    --text "$tmp/text.txt" --kv-dtype int8 --kv-residual 32
lines ppl residual without kivi
expect 2 '--kv-dtype (the target' -- "$bin/rankkv-bench" --model "$nano" --kv-bits-avg 6
# generate's record names what the rows were made with, defaults included.
expect 0 '' -- "$gen" --model "$nano" --kv-dtype kivi --max-new-tokens 2 --json --quiet
has "$tmp/out" '"kv_group":16,"kv_residual":64' 'generate --json with kivi'
expect 0 '' -- "$gen" --model "$nano" --kv-dtype smartkv --kv-bits-avg 6 --max-new-tokens 2 \
    --json --quiet
has "$tmp/out" '"kv_bits_avg":6' 'generate --json with smartkv'
expect 2 'unknown KV dtype' -- "$bin/rankkv-bench" --model "$nano" --kv-dtype fp32,bf16
expect 2 'unknown KV dtype' -- "$bin/rankkv-compare" --model "$nano" --kv-dtype q8
# CUDA stores every format but fp32 (the row formats, KIVI's, smartkv); a
# build with the target refuses fp32 before touching the device; one
# without has no target.
if "$gen" --target cuda --print-plan 2>&1 | grep -q 'no CUDA target'; then
    expect 1 'no CUDA target' -- "$gen" --model "$nano" --target cuda --kv-dtype int8
else
    expect 2 'the cuda target has no fp32 KV cache (it stores: fp16, int8, int4, int2, kivi, kivi2, kivi4, smartkv)' -- \
        "$gen" --model "$nano" --target cuda --kv-dtype fp32
    lines cuda fp32
    expect 2 'the cuda target has no fp32 KV cache' -- "$bin/rankkv-eval" --model "$nano" \
        --target cuda --dataset t="$tmp/text.txt" --kv-dtype int8,fp32
    lines cuda eval fp32
fi

# --kv-precision rank (core/kv_precision.h). The plan prints each layer's
# format, rank and bytes; the bytes are the row formula's, sum to the
# total, stay within the uniform cache's, and a layer of higher rank never
# has fewer bits. check_rank_plan FILE WHAT checks a printed plan so.
check_rank_plan() {
    if awk '
        /^KV cache: .* bytes \(precision rank/ { total = $3; uniform = $(NF - 1) }
        /^KV layer / {
            f = $4; sub(",", "", f); bits = f == "fp32" ? 32 : f == "fp16" ? 16 : substr(f, 4) + 0
            r = $6 + 0; sub(",", "", r); n++; R[n] = r; B[n] = bits
            if ($7 * $9 * $12 * $15 != $(NF - 1)) bad = "layer bytes"
            sum += $(NF - 1)
        }
        END {
            if (!n || sum != total || total > uniform) bad = bad " total " sum " " total " " uniform
            for (i = 1; i <= n; i++) for (j = 1; j <= n; j++)
                if (R[i] > R[j] && B[i] < B[j]) bad = bad " order"
            if (bad) { print bad; exit 1 }
        }' "$1"; then ok; else bad "$2"; cat "$1"; fi
}
# pythia-nano's ranks (394 to 652) span less than a factor of two: every
# layer reaches int4 before any can step up, so rank is the uniform cache.
expect 0 '' -- "$gen" --model "$nano" --print-plan --max-context 512 --kv-dtype int4 \
    --kv-precision rank
has "$tmp/out" "KV cache: 491520 bytes (precision rank around int4, profile pythia-nano; the uniform int4 cache: 491520 bytes)" "rank plan"
has "$tmp/out" "KV layer 3: int4, rank 393.6, 2 x 512 positions x 2 heads x 60 B = 122880 bytes" "rank plan layer"
has "$tmp/out" "KV int4 precision rank, target cpu" "rank in the limits line"
check_rank_plan "$tmp/out" "nano rank plan"
expect 0 '' -- "$gen" --model "$nano" --print-plan --kv-dtype int8 --kv-precision rank --kv rankkv \
    --kv-budget 64 --max-context 512
check_rank_plan "$tmp/out" "nano rank plan with rankkv budgets"
expect 0 'decode' -- "$gen" --model "$nano" --kv snapkv --kv-budget 40 --kv-dtype int4 \
    --kv-precision rank --max-new-tokens 8 --json --quiet
has "$tmp/out" '"kv_precision":"rank"' "generate --json --kv-precision rank"
expect 0 '' -- "$bin/rankkv-ppl" --model "$nano" --text "$tmp/text.txt" --window 64 \
    --max-windows 1 --kv-dtype int8 --kv-precision rank --json
has "$tmp/out" '"kv_dtype":"int8","kv_group":16,"kv_precision":"rank","kv_layer_dtypes":["int8","int8","int8","int8"]' "ppl --kv-precision rank"
# rankkv-eval: a list of precisions; fp32 has no rank rows, and says so.
expect 0 'no rank rows for fp32' -- "$bin/rankkv-eval" --model "$nano" --dataset t="$tmp/text.txt" \
    --context 128 --tail 16 --max-windows 1 --method full,snapkv --budget 40 --kv-window 8 \
    --kv-dtype fp32,int4 --kv-precision uniform,rank --json "$tmp/eval-prec.json"
if [ "$(grep -c '"kv_precision":	"rank"' "$tmp/eval-prec.json")" -eq 2 ] &&
    [ "$(grep -c '"kv_precision":	"uniform"' "$tmp/eval-prec.json")" -eq 5 ] &&
    grep -q "^t  *snapkv  *int4  *rank " "$tmp/out"; then ok
else bad "eval --kv-precision uniform,rank"; cat "$tmp/out" "$tmp/eval-prec.json"; fi
expect 0 '' -- "$bin/rankkv-bench" --model "$nano" --prompt-tokens 64 --new-tokens 4 --repeats 1 \
    --kv full --kv-dtype int4 --kv-precision rank --out "$tmp/bench-prec.json"
has "$tmp/bench-prec.json" '"kv_precision":	"rank"' "bench --kv-precision rank"
expect 0 '' -- "$bin/rankkv-compare" --model "$nano" --rows full,snapkv --budget 40 --context 128 \
    --tail 16 --new-tokens 4 --repeats 1 --kv-dtype int8 --kv-precision rank --json "$tmp/cmp-prec.json" \
    --markdown "$tmp/cmp-prec.md"
has "$tmp/cmp-prec.json" '"kv_precision":	"rank"' "compare --kv-precision rank"
has "$tmp/cmp-prec.md" '| snapkv | 40 | int8 rank |' "compare table, rank"
# pythia-mini (../shared): ranks 208 to 502; at int4 its two layers under
# half the top rank (7 and 11) go to int2 and pay for the top (16) at int8.
mini="$(dirname "$nano")/../../shared/models/pythia-mini"
if [ -d "$mini" ]; then
    expect 0 '' -- "$gen" --model "$mini" --print-plan --max-context 1024 --kv-dtype int4 \
        --kv-precision rank
    has "$tmp/out" "KV cache: 9437184 bytes (precision rank around int4, profile pythia-mini; the uniform int4 cache: 9437184 bytes)" "mini rank plan"
    has "$tmp/out" "KV layer 11: int2, rank 208.1, 2 x 1024 positions x 4 heads x 32 B = 262144 bytes" "mini int2 layer"
    has "$tmp/out" "KV layer 16: int8, rank 501.8, 2 x 1024 positions x 4 heads x 80 B = 655360 bytes" "mini int8 layer"
    check_rank_plan "$tmp/out" "mini rank plan"
    for kv in snapkv pyramidkv h2o streamingllm rankkv; do
        expect 0 '' -- "$gen" --model "$mini" --print-plan --max-context 1024 --kv-dtype int8 \
            --kv-precision rank --kv "$kv" --kv-budget 256
        check_rank_plan "$tmp/out" "mini rank plan, $kv"
    done
else
    echo "SKIP pythia-mini rank plans: $mini is absent"
fi
# Bad precisions: one line, exit 2, nothing run.
"$bin/rankkv-make-random-model" --preset pythia-nano-shape --out "$tmp/random-nano" >/dev/null 2>&1
cp "$nano/tokenizer.json" "$tmp/random-nano/"
expect 2 "--kv-precision: unknown KV precision 'ranked' (have: uniform, rank)" -- "$gen" \
    --model "$nano" --kv-dtype int4 --kv-precision ranked
lines unknown precision
expect 2 '--kv-precision rank: rank precision varies a row format one step either side (int2 < int4 < int8 < fp16 < fp32); fp32 has none above it' \
    -- "$gen" --model "$nano" --kv-precision rank
lines rank fp32
expect 2 'int2 has none below it' -- "$gen" --model "$nano" --kv-dtype int2 --kv-precision rank
lines rank int2
expect 2 'kivi has no row format' -- "$gen" --model "$nano" --kv-dtype kivi --kv-precision rank
lines rank kivi
# A build without the model's profile: an error of the build (exit 1, one
# line), as --kv rankkv's is.
expect 1 'error: --kv-precision rank: no RankKV profile in this build matches the model random-nano' -- \
    "$gen" --model "$tmp/random-nano" --kv-dtype int4 --kv-precision rank
one_line rank without a profile
expect 2 "--kv-precision rank: --kv-memory chooses one dtype for every layer" -- "$gen" \
    --model "$nano" --kv snapkv --kv-memory 1MB --kv-dtype int4 --kv-precision rank
lines rank kv-memory
expect 2 '--kv-precision rank varies fp16, int8 or int4, and --kv-dtype names fp32' -- \
    "$bin/rankkv-eval" --model "$nano" --dataset t="$tmp/text.txt" --kv-dtype fp32 --kv-precision rank
expect 2 'fp32 has none above it' -- "$bin/rankkv-ppl" --model "$nano" --text "$tmp/text.txt" \
    --kv-precision rank
if ! "$gen" --target cuda --print-plan 2>&1 | grep -q 'no CUDA target'; then
    expect 2 '--kv-precision rank: the cuda target has no fp32 KV cache (it stores: fp16, int8, int4, int2, kivi, kivi2, kivi4, smartkv)' -- \
        "$gen" --model "$nano" --target cuda --kv-dtype fp16 --kv-precision rank
    lines cuda rank
    # A KIVI or smartkv cache's rows pass through a stage on CUDA of
    # 32 MiB / (4 x hidden) rows: 1024 at hidden 8192. The plan refuses a
    # chunk, a layer's kept rows or (full smartkv) a prompt beyond it, from
    # the config alone (the plan reads no weights), in one line, exit 1 as
    # the plan's other limits.
    wide="$tmp/wide"
    mkdir -p "$wide"
    sed -e 's/"hidden_size": 160/"hidden_size": 8192/' \
        -e 's/"num_attention_heads": 2,/"num_attention_heads": 64,/' \
        -e 's/"intermediate_size": 640/"intermediate_size": 32768/' "$nano/config.json" >"$wide/config.json"
    expect 1 'error: a kivi KV cache on the cuda target takes up to 1024 rows at once, and a prefill chunk is 1984 rows: use a smaller prefill chunk' -- \
        "$gen" --model "$wide" --target cuda --print-plan --kv-dtype kivi --chunk 2048
    one_line stage chunk
    expect 0 '' -- "$gen" --model "$wide" --target cuda --print-plan --kv-dtype kivi --chunk 1024
    has "$tmp/out" "KV dtype kivi" "kivi within the stage"
    expect 1 'a smartkv KV cache on the cuda target takes up to 1024 rows at once, and the full cache places the whole prompt, 1984 rows: use a shorter prompt limit' -- \
        "$gen" --model "$wide" --target cuda --print-plan --kv-dtype smartkv
    one_line stage smartkv
    expect 0 '' -- "$gen" --model "$wide" --target cuda --print-plan --kv-dtype smartkv \
        --max-context 1088
    has "$tmp/out" "KV dtype smartkv" "smartkv within the stage"
    expect 1 'a kivi2 KV cache on the cuda target takes up to 1024 rows at once, and a layer keeps up to 1500 rows: use smaller budgets' -- \
        "$gen" --model "$wide" --target cuda --print-plan --kv-dtype kivi2 --kv snapkv --kv-budget 1500
    one_line stage budget
    expect 0 '' -- "$gen" --model "$wide" --target cuda --print-plan --kv-dtype smartkv \
        --kv snapkv --kv-budget 1000
    has "$tmp/out" "KV dtype smartkv" "smartkv budgets within the stage"
fi

finish kv_dtype_cli_test
