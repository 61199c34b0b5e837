#!/usr/bin/env bash
# rankkv-calibrate --from-json against hostile runs: the JSON's strings reach
# the generated header only escaped (it compiles on its own, and its string
# fields hold the JSON's bytes exactly), every number is checked (exit 1 and
# a message naming the key, never a hang), and the committed profiles' JSON
# still regenerates their headers byte for byte.
# usage: codegen_test.sh BIN_DIR SOURCE_DIR
set -u
export LC_ALL=C
bin=$1 root=$2
cal="$bin/rankkv-calibrate"
. "$(dirname "${BASH_SOURCE[0]}")/expect.sh"

# The bytes of $1 as a JSON string.
json_str() {
    local s=$1 out='"' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        '"') out+='\"' ;;
        '\') out+='\\' ;;
        [[:cntrl:]]) out+=$(printf '\\u%04x' "'$c") ;;
        *) out+=$c ;;
        esac
    done
    printf '%s"' "$out"
}

# run FILE [KEY=JSON]...: a valid run (two layers of two heads, two samples
# of 16 tokens) with KEY's value replaced, or left out where JSON is '-'.
run() {
    local file=$1 k
    shift
    local -A v=([model]='"tiny"' [identity]='"0123456789abcdef"' [layers]=2 [heads]=2
                [hidden]=8 [device]='"cpu"' [command]='"rankkv-calibrate --data x.txt"'
                [data]='"x.txt"' [samples]=2 [seq_len]=16 [layer_rank_mean]='[3.5, 7.5]'
                [layer_rank_std]='[0.5, 0.5]'
                [sample_layer_head_ranks]='[[3, 3, 7, 7], [4, 4, 8, 8]]')
    for k in "$@"; do v[${k%%=*}]=${k#*=}; done
    local sep='{'
    for k in model identity layers heads hidden device command data samples seq_len \
        layer_rank_mean layer_rank_std sample_layer_head_ranks; do
        [ "${v[$k]}" = - ] && continue
        printf '%s"%s": %s' "$sep" "$k" "${v[$k]}"
        sep=', '
    done >"$file"
    echo '}' >>"$file"
}

cc_check() { cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I"$root/core" -x c "$1" 2>"$tmp/cc"; }

# The committed profiles: the same header from their JSON, and it compiles.
for p in pythia-nano pythia-mini; do
    expect 0 'wrote' -- "$cal" --from-json "$root/profiles/profile_$p.json" --out "$tmp/profile_$p.h"
    if cmp -s "$tmp/profile_$p.h" "$root/profiles/profile_$p.h"; then ok; else bad "$p: header differs from the committed one"; fi
    if cc_check "$tmp/profile_$p.h"; then ok; else bad "$p: header does not compile"; cat "$tmp/cc"; fi
done

run "$tmp/ok.json"
expect 0 'wrote' -- "$cal" --from-json "$tmp/ok.json" --out "$tmp/profile_ok.h"
if cc_check "$tmp/profile_ok.h"; then ok; else bad "valid run: header does not compile"; cat "$tmp/cc"; fi

# Strings that end a comment, start directives, break out of a string
# literal, form trigraphs (-std=c11 has them) or are not ASCII; the output's
# name gives a symbol that starts with a digit and is not ASCII.
name=$'evil */ #error name\n#define rk_profile_x 1\n"q" \\ ??/\n/* \xc3\xbc \xe2\x82\xac'
data=$'data*/\n#error data\n/* ??= ??/\n"\\\t\x01\x1f\x7f 7\xc3\xbc1'
command=$'rankkv-calibrate --data "a b" --out x */\n#error command\n#define A \\\n1\n/* \' ??( ??) ??! ??< ??> ??- ??\' ??/\n\\x41\\101 end \xf0\x9f\x98\x80*'
printf '%s' "$name" >"$tmp/name.bin"
printf '%s' "$data" >"$tmp/data.bin"
printf '%s' "$command" >"$tmp/command.bin"
run "$tmp/evil.json" "model=$(json_str "$name")" "data=$(json_str "$data")" \
    "command=$(json_str "$command")"
evil="$tmp/profile_9evil-$(printf '\xc3\xbc').h"
expect 0 'wrote' -- "$cal" --from-json "$tmp/evil.json" --out "$evil"
if cc_check "$evil"; then ok; else bad "hostile strings: header does not compile"; cat "$tmp/cc"; fi
if LC_ALL=C grep -q '[^[:print:]]' "$evil"; then bad "hostile strings: header has bytes outside printable ASCII"; else ok; fi
cat >"$tmp/roundtrip.c" <<'EOF'
#include <stdio.h>
#include <string.h>

/* Whether GOT holds exactly the bytes of the file PATH. */
static int same(const char *what, const char *got, const char *path)
{
    static char want[16384];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(want, 1, sizeof want - 1, f) : 0;
    if (f)
        fclose(f);
    if (strlen(got) == n && memcmp(got, want, n) == 0)
        return 1;
    fprintf(stderr, "%s: %zu bytes in the header, %zu in the JSON\n", what, strlen(got), n);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    int good = same("name", rk_profile__9evil___.name, argv[1]);
    good &= same("data", rk_profile__9evil___.data, argv[2]);
    good &= same("command", rk_profile__9evil___.command, argv[3]);
    return !good;
}
EOF
if cc -std=c11 -Wall -Wextra -Werror -I"$root/core" -include "$evil" -o "$tmp/roundtrip" \
    "$tmp/roundtrip.c" 2>"$tmp/cc"; then
    if "$tmp/roundtrip" "$tmp/name.bin" "$tmp/data.bin" "$tmp/command.bin"; then ok
    else bad "hostile strings do not round-trip through the header"; fi
else
    bad "hostile strings: the round-trip program does not compile"; cat "$tmp/cc"
fi

# Numbers: out of range, not finite (1e999 parses as inf), not integers, or
# inconsistent with the arrays.
ranks() { echo "sample_layer_head_ranks=[[3, 3, 7, 7], [4, 4, 8, $1]]"; }
bad_run() {
    local pattern=$1
    shift
    local before=$fail
    run "$tmp/bad.json" "$@"
    expect 1 "$pattern" -- "$cal" --from-json "$tmp/bad.json" --out "$tmp/profile_bad.h"
    if [ "$fail" -ne "$before" ]; then echo "  the run had: $*"; fi
}
bad_run 'sample_layer_head_ranks.*seq_len' \
    'sample_layer_head_ranks=[[1e308, 1e308, 1e308, 1e308], [1e308, 1e308, 1e308, 1e308]]'
bad_run 'sample_layer_head_ranks' "$(ranks 1e308)"
bad_run 'sample_layer_head_ranks' "$(ranks 1e999)"
bad_run 'sample_layer_head_ranks' "$(ranks -1e999)"
bad_run 'sample_layer_head_ranks' "$(ranks 17)"
bad_run 'sample_layer_head_ranks' "$(ranks 0.5)"
bad_run 'sample_layer_head_ranks' "$(ranks '"8"')"
bad_run 'sample_layer_head_ranks' 'sample_layer_head_ranks=[[3, 3, 7, 7], [4, 4, 8]]'
bad_run 'sample_layer_head_ranks' 'sample_layer_head_ranks=[[3, 3, 7, 7]]'
bad_run 'sample_layer_head_ranks' 'sample_layer_head_ranks={}'
bad_run '"layers"' 'layers=2.5'
bad_run '"layers"' 'layers=1e999'
bad_run '"layers"' 'layers=257'
bad_run '"layer_rank_mean"' 'layers=3'
bad_run '"hidden"' 'heads=3'
bad_run '"heads"' 'heads=0'
bad_run '"hidden"' 'hidden=1e999'
bad_run '"samples"' 'samples=-2'
bad_run '"seq_len"' 'seq_len=100000'
bad_run '"seq_len"' 'seq_len=16.5'
bad_run '"layer_rank_mean"' 'layer_rank_mean=-'
bad_run '"layer_rank_mean"' 'layer_rank_mean=[3.5, 1e999]'
bad_run '"layer_rank_mean"' 'layer_rank_mean=[3.5]'
bad_run '"layer_rank_std"' 'layer_rank_std=[0.5, -1]'
bad_run '"layer_rank_std"' 'layer_rank_std=[0.5, 1e999]'
bad_run '"identity"' 'identity="-1"'
bad_run '"identity"' 'identity=""'
bad_run '"identity"' 'identity="0x23456789abcdef"'
bad_run '"model"' "model=\"$(printf 'm%.0s' {1..200})\""
bad_run '"command"' "command=\"$(printf 'c%.0s' {1..5000})\""
bad_run '"data"' 'data=7'
printf '[1, 2]' >"$tmp/bad.json"
expect 1 'JSON object' -- "$cal" --from-json "$tmp/bad.json" --out "$tmp/profile_bad.h"
printf '{"model": "x", ' >"$tmp/bad.json"
expect 1 'not JSON' -- "$cal" --from-json "$tmp/bad.json" --out "$tmp/profile_bad.h"

finish codegen_test
