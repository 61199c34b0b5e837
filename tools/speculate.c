/* rankkv-speculate: greedy speculative decoding with a draft model
 * (core/speculative.h), timed against the target alone on the same prompts
 * in the same run; with --rekv, the ReKV analysis of every rejected draft
 * token's KV rows (core/rekv_spec.h) on those runs; or, with --time-only,
 * the costs of its steps at a long context and the speedups they imply. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "harness.h"
#include "model.h"
#include "rekv_report.h"
#include "rekv_spec.h"
#include "sampler.h"
#include "speculative.h"
#include "targets.h"
#include "textio.h"

static const char usage[] =
    "usage: rankkv-speculate --draft-model DIR [--model DIR] [options]\n"
    "Greedy speculative decoding: the draft proposes --spec-k tokens, the target\n"
    "verifies them in one forward and keeps those it agrees with plus its own next\n"
    "token, so the output is the target's own greedy output. Each prompt also runs\n"
    "on the target alone (unless --no-baseline): the outputs are compared token for\n"
    "token and the speedup is measured against it. Both models keep their own\n"
    "planned arena; their tokenizers must be the same.\n"
    "--time-only times the steps instead (random-weight models will do): one draft\n"
    "step, the target verifying K + 1 tokens and one target step, at a --context\n"
    "of random token ids, and the speedup these costs give at acceptance rates\n"
    "0.5, 0.7 and 0.9 per token: tokens per round (1 - a^(K+1)) / (1 - a), time per\n"
    "round K t_draft + t_verify(K), speedup = tokens per round x t_target / round time.\n"
    "--rekv DIR adds the ReKV analysis to the runs: at every rejected proposal, the\n"
    "draft's and the target's KV rows of the rejected token against the target's rows\n"
    "of its own token at that position, per layer; a GO / CAUTION / NO-GO verdict on\n"
    "stdout, JSON and plots in DIR.\n"
    "\n";

enum { MAX_SETS = 3 + HARNESS_MAX_DATASETS, TIME_ONLY_ACCEPTANCES = 3 };

/* The ReKV analysis's run sizes: prompts of each set, new tokens, windows.
 * Explicit --max-prompts, --max-new-tokens and --spec-k win; quick's are
 * the tool's defaults. */
static const struct {
    const char *name;
    int max_prompts, max_new, k_from, k_to;
} rekv_presets[] = {
    {"debug", 2, 16, 4, 4},
    {"quick", 10, 64, 4, 4},
    {"full", 1 << 20, 128, 4, 4},
    {"sweep", 10, 64, 1, 8},
};
enum { N_REKV_PRESETS = sizeof rekv_presets / sizeof rekv_presets[0] };

/* The prompt sets of ../shared/data/prompts: file, and the field a prompt
 * is made of. */
static const struct {
    const char *name, *file, *field, *format;
} prompt_sets[] = {
    {"mt-bench", "mt_bench_questions.jsonl", "turns", "%s"}, /* the first turn */
    {"gsm8k", "gsm8k_test.jsonl", "question", "Question: %s\nAnswer:"},
    {"humaneval", "humaneval.jsonl", "prompt", "%s"},
};
enum { N_PROMPT_SETS = sizeof prompt_sets / sizeof prompt_sets[0] };

static const double acceptances[TIME_ONLY_ACCEPTANCES] = {0.5, 0.7, 0.9};

typedef struct {
    const char *model, *draft, *target, *prompt, *sets, *prompts_dir, *json, *rekv, *preset;
    int max_prompts, max_new, chunk, adaptive, no_baseline, ignore_eos, print_plan, quiet;
    int time_only, context, repeats;
    int text_prompt; /* tokens of each --dataset window that make its prompt */
    harness_datasets texts;
    cli_ints ks;
    cli_kv kv;
} options;

/* --rekv and --rekv-preset: what the analysis cannot run with refused, and
 * the sizes the preset (or the tool's defaults) gives where none was given. */
static void rekv_options(options *o)
{
    int p = 1; /* quick */
    if (o->preset && !o->rekv)
        cli_usage_error("--rekv-preset sizes the ReKV analysis: it needs --rekv DIR");
    if (o->preset) {
        p = 0;
        while (p < N_REKV_PRESETS && strcmp(rekv_presets[p].name, o->preset) != 0)
            p++;
        if (p == N_REKV_PRESETS)
            cli_usage_error("unknown --rekv-preset '%s' (expected debug, quick, full or sweep)",
                            o->preset);
    }
    if (o->rekv) {
        /* Rows of a compressing policy's cache are not positions, and the
         * rows of an evicting one are gone. */
        if (strcmp(o->kv.opt.method, "full") != 0)
            cli_usage_error("--rekv compares the KV rows at a position: only --kv full, not %s",
                            o->kv.opt.method);
        if (o->time_only)
            cli_usage_error("--rekv analyses generated text: not with --time-only");
        if (o->adaptive)
            cli_usage_error("--rekv analyses fixed draft windows: not with --spec-adaptive");
        if (!o->prompt && !o->sets && !o->texts.n)
            o->sets = "mt-bench,gsm8k,humaneval";
    }
    if (!o->max_prompts)
        o->max_prompts = rekv_presets[p].max_prompts;
    if (!o->max_new)
        o->max_new = rekv_presets[p].max_new;
    if (!o->ks.n)
        for (int k = rekv_presets[p].k_from; k <= rekv_presets[p].k_to; k++)
            o->ks.v[o->ks.n++] = k;
    for (int i = 0; o->rekv && i < o->ks.n; i++)
        for (int j = 0; j < i; j++)
            if (o->ks.v[i] == o->ks.v[j])
                cli_usage_error("--rekv writes one summary per K: --spec-k names %d twice",
                                o->ks.v[i]);
}

static options parse(int argc, char **argv)
{
    /* Sizes left 0 are the preset's or the defaults, after parsing. */
    options o = {.model = RK_DEFAULT_MODEL, .target = "cpu",
                 .prompts_dir = RK_SOURCE_DIR "/../shared/data/prompts", .chunk = 256,
                 .context = 1920, .repeats = 20, .text_prompt = 128,
                 .kv = {.opt.method = "full"}};
    const cli_opt opts[] = {
        CLI_STRING_OPT("--model", &o.model, "DIR",
                       "the target model (default: the bundled " RK_DEFAULT_MODEL ")"),
        CLI_STRING_OPT("--draft-model", &o.draft, "DIR",
                       "the draft model (required): same tokenizer as the target"),
        CLI_STRING_OPT("--prompt", &o.prompt, "TEXT",
                       "one prompt (default: \"The ship sailed\" unless --prompts)"),
        CLI_STRING_OPT("--prompts", &o.sets, "SET[,SET...]",
                       "prompt sets: mt-bench (first turns), gsm8k (\"Question:\n"
                       "... Answer:\"), humaneval (the code prompts)"),
        CLI_STRING_OPT("--prompts-dir", &o.prompts_dir, "DIR",
                       "where the sets' .jsonl files are (default: ../shared/\n"
                       "data/prompts beside the source tree)"),
        CLI_CALL_OPT("--dataset", &o.texts, harness_dataset_take, "NAME=PATH",
                     "continuations: prompts of --dataset-prompt tokens from a\n"
                     "text file or a directory of .txt, windows taken evenly\n"
                     "from its documents (repeatable, with or without --prompts)"),
        CLI_NUM("--dataset-prompt", &o.text_prompt, 1, 1 << 20, "N",
                "tokens of each --dataset prompt (default 128)"),
        CLI_NUM("--max-prompts", &o.max_prompts, 1, 1 << 20, "N",
                "the first N prompts of each set (default 10, or --rekv-preset's)"),
        CLI_NUM("--max-new-tokens", &o.max_new, 1, 1 << 20, "N",
                "tokens to generate per prompt (default 64, or --rekv-preset's)"),
        CLI_INTS_OPT("--spec-k", &o.ks, 1, RK_SPEC_MAX_K, CLI_INTS_MAX, "K[,K...]",
                     "draft tokens per round (default 4, or --rekv-preset's); a\n"
                     "list runs each"),
        CLI_FLAG_OPT("--spec-adaptive", &o.adaptive,
                     "K grows after a round that kept every proposal and\n"
                     "shrinks after one that did not (--spec-k: where it starts)"),
        CLI_FLAG_OPT("--no-baseline", &o.no_baseline,
                     "do not run the target alone (no speedup, no comparison)"),
        CLI_FLAG_OPT("--ignore-eos", &o.ignore_eos, "keep generating after the end-of-text token"),
        CLI_NUM("--chunk", &o.chunk, 1, 1 << 16, "N", "prefill chunk (default 256)"),
        CLI_TARGET_OPT(&o.target),
        CLI_KV_OPTIONS(&o.kv),
        CLI_FLAG_OPT("--time-only", &o.time_only,
                     "time the steps at --context instead of generating"),
        CLI_NUM("--context", &o.context, 1, 1 << 20, "N",
                "--time-only: context the steps run at (default 1920)"),
        CLI_NUM("--repeats", &o.repeats, 1, 1000, "N",
                "--time-only: timed steps per figure, median (default 20)"),
        CLI_STRING_OPT("--rekv", &o.rekv, "DIR",
                       "ReKV analysis of every rejected proposal's KV rows into DIR\n"
                       "(it must exist): summary_K{K}.json, events_K{K}.json and\n"
                       "plots/ per K, combined_results.json over the K list; the\n"
                       "verdict on stdout. Full cache only; prompts default to\n"
                       "mt-bench,gsm8k,humaneval"),
        CLI_STRING_OPT("--rekv-preset", &o.preset, "NAME",
                       "--rekv's run size: debug (2 prompts of each set, 16 new\n"
                       "tokens, K 4), quick (10, 64, K 4; the default), full (every\n"
                       "prompt, 128, K 4) or sweep (10, 64, K 1..8)"),
        CLI_FLAG_OPT("--print-plan", &o.print_plan,
                     "print both memory plans and exit (no weights are read)"),
        CLI_PATH_OPT("--json", CLI_OUTPUT_STDOUT, &o.json, "FILE",
                     "write the run's JSON record to FILE ('-': standard output,\n"
                     "after the table)"),
        CLI_FLAG_OPT("--quiet", &o.quiet, "do not print the generated text of a single prompt"),
        CLI_HELP_OPT,
        CLI_TEXT_OPT("--kv applies to the target; policies that evict while decoding (h2o,\n"
                     "streamingllm) cannot roll rejected tokens back and are refused.\n"),
        {0}};
    cli_parse(argc, argv, usage, opts);
    cli_kv_check_dtype_options(&o.kv);
    if (!o.draft)
        cli_usage_error("--draft-model DIR is required");
    if (o.prompt && !*o.prompt)
        cli_usage_error("--prompt is empty: give a prompt's text");
    if (o.prompt && (o.sets || o.texts.n))
        cli_usage_error("--prompt excludes --prompts and --dataset");
    if (o.time_only && (o.prompt || o.sets || o.texts.n))
        cli_usage_error("--time-only runs on random token ids: no --prompt, --prompts or "
                        "--dataset");
    if (o.adaptive && o.ks.n > 1)
        cli_usage_error("--spec-adaptive starts from one --spec-k, not a list");
    rekv_options(&o);
    if (!o.prompt && !o.sets && !o.texts.n)
        o.prompt = "The ship sailed";
    return o;
}

/* One prompt: its set and its ids. */
typedef struct {
    int set; /* index into the run's sets; 0 for --prompt */
    int32_t *ids;
    int n;
} prompt;

typedef struct {
    const char *name[MAX_SETS];
    int index[MAX_SETS]; /* into prompt_sets; -1 for a --dataset */
    int n;
    cli_str path[MAX_SETS];
} set_list;

static set_list parse_sets(const options *o)
{
    set_list s = {0};
    if (o->prompt) {
        s.name[0] = "prompt";
        s.n = 1;
        return s;
    }
    char *words[MAX_SETS] = {NULL};
    const int n = o->sets ? cli_split_list("--prompts", o->sets, words, N_PROMPT_SETS) : 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < N_PROMPT_SETS && strcmp(prompt_sets[k].name, words[i]) != 0)
            k++;
        if (k == N_PROMPT_SETS)
            cli_usage_error("unknown prompt set '%s' (expected mt-bench, gsm8k or humaneval)",
                            words[i]);
        for (int j = 0; j < s.n; j++)
            if (s.index[j] == k)
                cli_usage_error("--prompts names %s twice", words[i]);
        s.name[s.n] = prompt_sets[k].name;
        s.index[s.n] = k;
        cli_str_add(&s.path[s.n], "%s/%s", o->prompts_dir, prompt_sets[k].file);
        cli_input(s.path[s.n].s);
        s.n++;
    }
    free(words[0]);
    /* Continuations come after the jsonl sets, under their own names. */
    for (int d = 0; d < o->texts.n; d++) {
        s.name[s.n] = o->texts.set[d].name;
        s.index[s.n++] = -1;
    }
    return s;
}

/* The text of one jsonl line's prompt, formatted as its set wants, into T. */
static void prompt_text(int set, const char *path, int line, const cJSON *j, cli_str *t)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, prompt_sets[set].field);
    if (cJSON_IsArray(f))
        f = cJSON_GetArrayItem(f, 0);
    if (!cJSON_IsString(f) || !*f->valuestring) {
        rk_fail(RK_EFORMAT, "%s line %d: no text in \"%s\"", path, line, prompt_sets[set].field);
        cli_die();
    }
    cli_str_clear(t);
    cli_str_add(t, prompt_sets[set].format, f->valuestring);
}

/* Appends the prompt IDS (LEN of them, owned by the list from now on). */
static void add_prompt_ids(prompt **all, int *n, int *cap, int set, int32_t *ids, size_t len,
                           const char *where)
{
    if (len == 0 || len > (1 << 20)) {
        rk_fail(RK_EINVAL, "%s: a prompt of %zu tokens", where, len);
        cli_die();
    }
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        prompt *grown = realloc(*all, (size_t)*cap * sizeof *grown);
        if (!grown) {
            rk_fail(RK_ENOMEM, "out of memory for %d prompts", *cap);
            cli_die();
        }
        *all = grown;
    }
    (*all)[(*n)++] = (prompt){.set = set, .ids = ids, .n = (int)len};
}

static void add_prompt(prompt **all, int *n, int *cap, int set, const rk_tokenizer *tok,
                       const char *text, const char *where)
{
    int32_t *ids;
    size_t len;
    if (rk_tok_encode(tok, text, strlen(text), &ids, &len) != RK_OK) {
        rk_fail(RK_EINVAL, "%s: %s", where, rk_last_error());
        cli_die();
    }
    add_prompt_ids(all, n, cap, set, ids, len, where);
}

/* The continuation prompts of the --dataset sets TEXTS (loaded here; the
 * caller frees them, and with them the names the sets are shown under):
 * the first text_prompt tokens of each of up to max_prompts windows, as
 * the sets after the jsonl ones (FIRST on). */
static void add_continuations(const options *o, harness_datasets *texts, int first, int vocab,
                              prompt **all, int *n, int *cap)
{
    harness_load_datasets(texts, o->model, vocab, o->text_prompt, o->max_prompts);
    for (int d = 0; d < texts->n; d++)
        for (int w = 0; w < texts->set[d].n_windows; w++) {
            int32_t *ids = malloc((size_t)o->text_prompt * sizeof *ids);
            if (!ids) {
                rk_fail(RK_ENOMEM, "out of memory for the %s prompts", texts->set[d].name);
                cli_die();
            }
            memcpy(ids, texts->set[d].windows + (size_t)w * (size_t)o->text_prompt,
                   (size_t)o->text_prompt * sizeof *ids);
            add_prompt_ids(all, n, cap, first + d, ids, (size_t)o->text_prompt,
                           texts->set[d].name);
        }
}

/* Every prompt of the run, tokenized by TOK (the target's, of VOCAB); the
 * --dataset sets are loaded into TEXTS. */
static prompt *load_prompts(const options *o, const set_list *sets, const rk_tokenizer *tok,
                            int vocab, harness_datasets *texts, int *n)
{
    prompt *all = NULL;
    int cap = 0;
    *n = 0;
    if (o->prompt) {
        add_prompt(&all, n, &cap, 0, tok, o->prompt, "--prompt");
        return all;
    }
    cli_str text = {0}, where = {0};
    const int jsonl_sets = sets->n - o->texts.n;
    for (int s = 0; s < jsonl_sets; s++) {
        const char *path = sets->path[s].s;
        char *data;
        size_t len;
        if (rk_read_file(path, (size_t)1 << 30, &data, &len) != RK_OK)
            cli_die();
        int line = 0, taken = 0;
        for (char *p = data, *end; p && *p && taken < o->max_prompts; p = end ? end + 1 : NULL) {
            end = strchr(p, '\n');
            const size_t n_line = end ? (size_t)(end - p) : strlen(p);
            line++;
            if (strspn(p, " \t\r") >= n_line)
                continue;
            cJSON *j = cJSON_ParseWithLength(p, n_line);
            if (!j) {
                rk_fail(RK_EFORMAT, "%s line %d is not JSON", path, line);
                cli_die();
            }
            prompt_text(sets->index[s], path, line, j, &text);
            cJSON_Delete(j);
            cli_str_clear(&where);
            cli_str_add(&where, "%s line %d", path, line);
            add_prompt(&all, n, &cap, s, tok, text.s, where.s);
            taken++;
        }
        free(data);
        if (taken == 0) {
            rk_fail(RK_EFORMAT, "%s holds no prompt", path);
            cli_die();
        }
    }
    cli_str_free(&text);
    cli_str_free(&where);
    add_continuations(o, texts, jsonl_sets, vocab, &all, n, &cap);
    return all;
}

/* The limits of the target and the draft for prompts of up to MAX_PROMPT
 * tokens: the target verifies up to K_MAX proposals at once; the draft's
 * two rows are the catch-up step (the last proposal of a round that kept
 * all of them, with the next round's first token). */
static void make_limits(const options *o, int max_prompt, int max_new, int k_max,
                        const rk_ops *ops, rk_limits *tl, rk_limits *dl)
{
    rk_config tcfg, dcfg;
    cli_model_config(o->model, &tcfg);
    cli_model_config(o->draft, &dcfg);
    /* Every plan's chunk holds its logits rows. */
    if (max_prompt < k_max + 1)
        max_prompt = k_max + 1;
    const int chunk = o->chunk < max_prompt ? o->chunk : max_prompt;
    *tl = (rk_limits){.max_prompt = max_prompt, .max_new_tokens = max_new,
                      .prefill_chunk = chunk < k_max + 1 ? k_max + 1 : chunk,
                      .logits_rows = k_max + 1, .kv_format = ops->kv_format};
    *dl = (rk_limits){.max_prompt = max_prompt, .max_new_tokens = max_new,
                      .prefill_chunk = chunk < 2 ? 2 : chunk, .logits_rows = 2,
                      .kv_format = ops->kv_format};
    cli_kv kv = o->kv;
    cli_kv_limits(&kv, o->model, &tcfg, ops, tl);
    if (rk_spec_check_limits(tl, dl, k_max) != RK_OK)
        cli_usage_error("%s", rk_last_error());
    if (o->print_plan) {
        rk_model *plan = malloc(sizeof *plan);
        if (!plan) {
            rk_fail(RK_ENOMEM, "out of memory for a plan");
            cli_die();
        }
        const char *names[2] = {"target", "draft"}, *dirs[2] = {o->model, o->draft};
        const rk_config *cfgs[2] = {&tcfg, &dcfg};
        const rk_limits *lims[2] = {tl, dl};
        for (int i = 0; i < 2; i++) {
            if (rk_model_plan(cfgs[i], ops, lims[i], plan) != RK_OK)
                cli_die();
            printf("%s%s: %s\n", i ? "\n" : "", names[i], dirs[i]);
            rk_model_print_plan(plan, stdout);
        }
        free(plan);
        exit(0);
    }
    cli_check_plan(&tcfg, ops, tl);
    cli_check_plan(&dcfg, ops, dl);
}

static int max_k(const options *o)
{
    if (o->adaptive)
        return RK_SPEC_MAX_K;
    int k = 0;
    for (int i = 0; i < o->ks.n; i++)
        k = o->ks.v[i] > k ? o->ks.v[i] : k;
    return k;
}

/* Sums over prompts of one set (or all) at one K. */
typedef struct {
    int prompts, mismatched;
    long generated, rounds, proposed, accepted, target_forwards, draft_steps;
    double prefill_s, decode_s;
    long hist[RK_SPEC_MAX_K + 1];
} totals;

static void add_stats(totals *t, const rk_spec_stats *s, int mismatch)
{
    t->prompts++;
    t->mismatched += mismatch;
    t->generated += s->generated;
    t->rounds += s->rounds;
    t->proposed += s->proposed;
    t->accepted += s->accepted;
    t->target_forwards += s->target_forwards;
    t->draft_steps += s->draft_steps;
    t->prefill_s += s->prefill_s;
    t->decode_s += s->decode_s;
    for (int i = 0; i <= RK_SPEC_MAX_K; i++)
        t->hist[i] += s->accepted_hist[i];
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

/* Rounds that had proposals to judge (the histogram's): the kept
 * proposals' mean is over these, not over rounds the draft sat out (a
 * round with one token left to make, or a draft that can no longer read
 * the context). */
static long proposing_rounds(const totals *t)
{
    long n = 0;
    for (int i = 0; i <= RK_SPEC_MAX_K; i++)
        n += t->hist[i];
    return n;
}

static void print_row(const char *set, const char *k, const totals *t, const totals *base)
{
    const double secs = t->prefill_s + t->decode_s, bsecs = base->prefill_s + base->decode_s;
    printf("%-10s %4s %7ld %6.3f %8.2f %8.2f %7ld %7ld %9.1f", set, k, t->generated,
           ratio(t->accepted, t->proposed), ratio(t->accepted, proposing_rounds(t)),
           ratio(t->generated - t->prompts, t->rounds), t->target_forwards, t->draft_steps,
           ratio(t->generated, secs));
    if (base->prompts)
        printf(" %9.1f %7.2f %7.2f %5d/%d\n", ratio(base->generated, bsecs), ratio(bsecs, secs),
               ratio(base->decode_s, t->decode_s), t->prompts - t->mismatched, t->prompts);
    else
        printf(" %9s %7s %7s %7s\n", "-", "-", "-", "-");
}

static cJSON *totals_json(const char *set, int k, const totals *t, const totals *base)
{
    const double secs = t->prefill_s + t->decode_s, bsecs = base->prefill_s + base->decode_s;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "set", set);
    if (k)
        cJSON_AddNumberToObject(j, "k", k);
    cJSON_AddNumberToObject(j, "prompts", t->prompts);
    cJSON_AddNumberToObject(j, "generated", (double)t->generated);
    cJSON_AddNumberToObject(j, "prefill_s", t->prefill_s);
    cJSON_AddNumberToObject(j, "decode_s", t->decode_s);
    cJSON_AddNumberToObject(j, "tok_s", ratio(t->generated, secs));
    cJSON_AddNumberToObject(j, "decode_tok_s", ratio(t->generated - t->prompts, t->decode_s));
    cJSON_AddNumberToObject(j, "target_forwards", (double)t->target_forwards);
    if (!k)
        return j;
    cJSON_AddNumberToObject(j, "rounds", (double)t->rounds);
    cJSON_AddNumberToObject(j, "draft_steps", (double)t->draft_steps);
    cJSON_AddNumberToObject(j, "proposed", (double)t->proposed);
    cJSON_AddNumberToObject(j, "accepted", (double)t->accepted);
    cJSON_AddNumberToObject(j, "acceptance_rate", ratio(t->accepted, t->proposed));
    cJSON_AddNumberToObject(j, "proposing_rounds", (double)proposing_rounds(t));
    cJSON_AddNumberToObject(j, "mean_accepted_per_round",
                            ratio(t->accepted, proposing_rounds(t)));
    cJSON_AddNumberToObject(j, "tokens_per_round", ratio(t->generated - t->prompts, t->rounds));
    cJSON *hist = cJSON_AddArrayToObject(j, "rounds_by_accepted");
    for (int i = 0; i <= RK_SPEC_MAX_K; i++)
        cJSON_AddItemToArray(hist, cJSON_CreateNumber((double)t->hist[i]));
    if (base->prompts) {
        cJSON_AddNumberToObject(j, "baseline_tok_s", ratio(base->generated, bsecs));
        cJSON_AddNumberToObject(j, "speedup", ratio(bsecs, secs));
        cJSON_AddNumberToObject(j, "decode_speedup", ratio(base->decode_s, t->decode_s));
        cJSON_AddNumberToObject(j, "identical", t->prompts - t->mismatched);
    }
    return j;
}

/* The ReKV analysis of a run: the observer the decoder feeds, and an
 * accumulator per K of the list. */
typedef struct {
    rk_rekv_observer obs;
    rk_rekv *acc[CLI_INTS_MAX];
    rk_rekv *warm;                   /* the untimed first generation's events, dropped */
    long truth_steps[CLI_INTS_MAX];  /* per K, of obs.truth_steps */
} rekv_run;

static void rekv_start(const options *o, const rk_model *target, const rk_model *draft,
                       rekv_run *rv, rk_spec_observer *hooks)
{
    if (rk_rekv_observer_init(&rv->obs, &draft->cfg, &target->cfg) != RK_OK ||
        rk_rekv_new(&draft->cfg, &target->cfg, o->ks.v[0], &rv->warm) != RK_OK)
        cli_die();
    for (int k = 0; k < o->ks.n; k++)
        if (rk_rekv_new(&draft->cfg, &target->cfg, o->ks.v[k], &rv->acc[k]) != RK_OK)
            cli_die();
    *hooks = rk_rekv_observer_hooks(&rv->obs);
}

/* One speculative generation of PR, feeding ACC when it is not NULL. */
static void speculate(rk_spec *spec, rekv_run *rv, rk_rekv *acc, const prompt *pr,
                      const rk_spec_options *so, int32_t *out, rk_spec_stats *st)
{
    if ((acc ? rk_rekv_generate(spec, &rv->obs, acc, pr->ids, pr->n, so, out, st)
             : rk_spec_generate(spec, pr->ids, pr->n, so, out, st)) != RK_OK)
        cli_die();
}

/* The analysis's files and a verdict line per K on stdout. ALL[k]: the sums
 * over every prompt at the list's K number k. */
static void rekv_finish(const options *o, rekv_run *rv, const totals *all)
{
    rekv_report_meta metas[CLI_INTS_MAX];
    char draft_name[256], target_name[256]; /* cli_base_name has one buffer */
    rk_base_name(o->draft, draft_name, sizeof draft_name);
    rk_base_name(o->model, target_name, sizeof target_name);
    for (int k = 0; k < o->ks.n; k++) {
        metas[k] = (rekv_report_meta){
            .draft_model = draft_name, .target_model = target_name,
            .rounds = all[k].rounds, .drafted = all[k].proposed, .accepted = all[k].accepted,
            .truth_steps = rv->truth_steps[k]};
        rekv_report_write(o->rekv, rv->acc[k], &metas[k]);
    }
    rekv_report_combined(o->rekv, (const rk_rekv *const *)rv->acc, metas, o->ks.n);
    rk_rekv_summary *s = malloc(sizeof *s);
    if (!s) {
        rk_fail(RK_ENOMEM, "out of memory for the ReKV summary");
        cli_die();
    }
    for (int k = 0; k < o->ks.n; k++) {
        char text[1024];
        rk_rekv_summarize(rv->acc[k], s);
        rk_rekv_verdict_text(s, text, sizeof text);
        printf("ReKV K=%d: %s", o->ks.v[k], text);
        if (s->events)
            printf("; target rejected vs target: cosine K %.3f, V %.3f", s->all.self.mean.cos_k,
                   s->all.self.mean.cos_v);
        putchar('\n');
        rk_rekv_free(rv->acc[k]);
    }
    free(s);
    rk_rekv_free(rv->warm);
    rk_rekv_observer_release(&rv->obs);
}

/* The first index where A and B differ (-1: none). */
static int first_difference(const int32_t *a, int na, const int32_t *b, int nb)
{
    for (int i = 0; i < na || i < nb; i++)
        if (i >= na || i >= nb || a[i] != b[i])
            return i;
    return -1;
}

static void generate_runs(const options *o, int argc, char **argv)
{
    set_list sets = parse_sets(o);
    const rk_ops *ops = cli_target(o->target);
    cli_model_input(o->draft);
    cli_check_paths(o->model);
    if (o->rekv && !o->print_plan)
        rekv_report_check(o->rekv, o->ks.v, o->ks.n);

    rk_config tcfg, dcfg;
    cli_model_config(o->model, &tcfg);
    cli_model_config(o->draft, &dcfg);
    if (!o->print_plan && rk_spec_check_tokenizers(o->model, o->draft, tcfg.vocab, dcfg.vocab) != RK_OK)
        cli_die();
    rk_tokenizer *tok = cli_tokenizer(o->model, NULL, tcfg.vocab);
    int n_prompts, longest = 0;
    harness_datasets texts = o->texts;
    prompt *prompts = load_prompts(o, &sets, tok, tcfg.vocab, &texts, &n_prompts);
    for (int i = 0; i < n_prompts; i++)
        longest = prompts[i].n > longest ? prompts[i].n : longest;
    rk_limits tl, dl;
    const int k_max = max_k(o);
    make_limits(o, longest, o->max_new, k_max, ops, &tl, &dl);
    if (o->rekv && tl.kv_format != ops->kv_format)
        cli_usage_error("--rekv reads KV rows in the %s target's own format, %s, not %s",
                        ops->name, rk_kv_format_name(ops->kv_format),
                        rk_kv_format_name(tl.kv_format));

    fprintf(stderr, "[speculate] %d prompt(s), up to %d tokens; target %s", n_prompts, longest,
            cli_base_name(o->model));
    fprintf(stderr, ", draft %s\n", cli_base_name(o->draft));
    rk_model *target = cli_model_load(o->model, ops, &tl);
    rk_model *draft = cli_model_load(o->draft, ops, &dl);
    rekv_run rv = {0};
    rk_spec_observer hooks;
    if (o->rekv)
        rekv_start(o, target, draft, &rv, &hooks);
    rk_spec spec;
    if (rk_spec_init(&spec, target, draft, o->rekv ? &hooks : NULL) != RK_OK)
        cli_die();
    int32_t *out = malloc((size_t)o->max_new * sizeof *out);
    int32_t *base_out = malloc((size_t)o->max_new * sizeof *base_out);
    totals *tot = calloc((size_t)(sets.n + 1) * (o->ks.n + 1), sizeof *tot);
    if (!out || !base_out || !tot) {
        rk_fail(RK_ENOMEM, "out of memory for %d generated ids", o->max_new);
        cli_die();
    }
    /* Row (set, k) of the sums; set == sets.n: all, k == ks.n: the baseline. */
#define TOT(set, k) (&tot[(size_t)(set) * (o->ks.n + 1) + (k)])

    /* One untimed generation of each kind first: the BLAS threads and the
     * caches start warm for the first timed prompt. */
    rk_spec_options so = {.k = o->ks.v[0], .adaptive = o->adaptive,
                          .max_new = o->max_new < 8 ? o->max_new : 8, .ignore_eos = o->ignore_eos};
    rk_spec_stats st, bst;
    speculate(&spec, &rv, rv.warm, &prompts[0], &so, out, &st);
    if (rk_spec_greedy(&spec, prompts[0].ids, prompts[0].n, &so, out, &st) != RK_OK)
        cli_die();
    so.max_new = o->max_new;

    cJSON *single = NULL;
    for (int p = 0; p < n_prompts; p++) {
        const prompt *pr = &prompts[p];
        fprintf(stderr, "\r[speculate] %s %d/%d", sets.name[pr->set], p + 1, n_prompts);
        if (!o->no_baseline) {
            if (rk_spec_greedy(&spec, pr->ids, pr->n, &so, base_out, &bst) != RK_OK)
                cli_die();
            add_stats(TOT(pr->set, o->ks.n), &bst, 0);
            add_stats(TOT(sets.n, o->ks.n), &bst, 0);
        }
        for (int k = 0; k < o->ks.n; k++) {
            so.k = o->ks.v[k];
            const long truth_steps = rv.obs.truth_steps;
            speculate(&spec, &rv, rv.acc[k], pr, &so, out, &st);
            rv.truth_steps[k] += rv.obs.truth_steps - truth_steps;
            const int diff = o->no_baseline ? -1
                                            : first_difference(out, st.generated, base_out,
                                                               bst.generated);
            if (diff >= 0)
                fprintf(stderr, "\n[speculate] %s prompt %d, K %d: the output differs from the "
                                "target's greedy output at token %d\n",
                        sets.name[pr->set], p + 1, so.k, diff);
            add_stats(TOT(pr->set, k), &st, diff >= 0);
            add_stats(TOT(sets.n, k), &st, diff >= 0);
            if (n_prompts == 1 && k == 0) {
                char *text = NULL;
                size_t len;
                if (rk_tok_decode(tok, out, (size_t)st.generated, &text, &len) != RK_OK)
                    cli_die();
                if (!o->quiet)
                    printf("%s%s\n", o->prompt ? o->prompt : "", text);
                single = cJSON_CreateObject();
                cJSON_AddItemToObject(single, "prompt_ids", cJSON_CreateIntArray(pr->ids, pr->n));
                cJSON_AddItemToObject(single, "output_ids",
                                      cJSON_CreateIntArray(out, st.generated));
                cJSON_AddStringToObject(single, "text", text);
                free(text);
            }
        }
    }
    fputc('\n', stderr);

    printf("%-10s %4s %7s %6s %8s %8s %7s %7s %9s %9s %7s %7s %7s\n", "set", "K", "tokens",
           "accept", "acc/rnd", "tok/rnd", "t_fwd", "d_steps", "tok/s", "base_t/s", "speedup",
           "dec_x", "same");
    cJSON *record = cli_record_new(argc, argv, cli_base_name(o->model), ops->name);
    cJSON_AddStringToObject(record, "draft_model", cli_base_name(o->draft));
    cJSON_AddStringToObject(record, "kv_method", rk_kv_policy_name(&target->lim.kv));
    cJSON_AddNumberToObject(record, "max_new_tokens", o->max_new);
    cJSON_AddBoolToObject(record, "ignore_eos", o->ignore_eos);
    cJSON_AddBoolToObject(record, "adaptive", o->adaptive);
    cJSON_AddNumberToObject(record, "target_arena_mb", harness_mb(target->plan.total));
    cJSON_AddNumberToObject(record, "draft_arena_mb", harness_mb(draft->plan.total));
    cJSON *set_names = cJSON_AddArrayToObject(record, "prompt_sets");
    for (int s = 0; s < sets.n; s++)
        cJSON_AddItemToArray(set_names, cJSON_CreateString(sets.name[s]));
    cJSON *baselines = cJSON_AddArrayToObject(record, "baseline");
    cJSON *runs = cJSON_AddArrayToObject(record, "runs");
    const int show_all = sets.n > 1;
    for (int s = 0; s < sets.n + show_all; s++) {
        const char *name = s < sets.n ? sets.name[s] : "all";
        const totals *base = TOT(s, o->ks.n);
        if (!o->no_baseline)
            cJSON_AddItemToArray(baselines, totals_json(name, 0, base, base));
        for (int k = 0; k < o->ks.n; k++) {
            char label[16];
            cli_fmt(label, sizeof label, "%s%d", o->adaptive ? "~" : "", o->ks.v[k]);
            print_row(name, label, TOT(s, k), base);
            cJSON_AddItemToArray(runs, totals_json(name, o->ks.v[k], TOT(s, k), base));
        }
    }
    if (single)
        cJSON_AddItemToObject(record, "single", single);
    if (o->json)
        cli_write_json(o->json, record);
    cJSON_Delete(record);
    if (o->rekv)
        rekv_finish(o, &rv, TOT(sets.n, 0));

    int mismatched = 0;
    for (int k = 0; k < o->ks.n; k++)
        mismatched += TOT(sets.n, k)->mismatched;
#undef TOT
    for (int i = 0; i < n_prompts; i++)
        free(prompts[i].ids);
    free(prompts);
    free(tot);
    free(out);
    free(base_out);
    for (int s = 0; s < sets.n; s++)
        cli_str_free(&sets.path[s]);
    harness_free_datasets(&texts);
    rk_spec_release(&spec);
    rk_model_free(target);
    rk_model_free(draft);
    rk_tok_free(tok);
    if (mismatched) {
        rk_fail(RK_EINVAL, "%d speculative run(s) differ from the target's greedy output",
                mismatched);
        cli_die();
    }
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Seconds of a step of the N TOKENS at the context S holds, rolled back to
 * it after each: the median of REPEATS, after two untimed. */
static double time_step(rk_model *m, rk_seq *s, const int32_t *tokens, int n, int repeats,
                        double *times)
{
    const int context = s->n_past;
    int32_t ids[RK_SPEC_MAX_K + 1];
    for (int r = -2; r < repeats; r++) {
        const double t0 = rk_now();
        if (rk_model_forward_argmax_rows(m, s, tokens, n, ids) != RK_OK)
            cli_die();
        const double t = rk_now() - t0;
        if (rk_seq_truncate(m, s, context) != RK_OK)
            cli_die();
        if (r >= 0)
            times[r] = t;
    }
    qsort(times, (size_t)repeats, sizeof *times, cmp_double);
    return repeats % 2 ? times[repeats / 2] : 0.5 * (times[repeats / 2 - 1] + times[repeats / 2]);
}

static void time_only(const options *o, int argc, char **argv)
{
    const rk_ops *ops = cli_target(o->target);
    cli_model_input(o->draft);
    cli_check_paths(o->model);
    const int k_max = max_k(o);
    rk_limits tl, dl;
    make_limits(o, o->context, k_max + 1, k_max, ops, &tl, &dl);
    rk_model *target = cli_model_load(o->model, ops, &tl);
    rk_model *draft = cli_model_load(o->draft, ops, &dl);
    const int vocab = target->cfg.vocab < draft->cfg.vocab ? target->cfg.vocab : draft->cfg.vocab;
    int32_t *ids = malloc((size_t)(o->context + k_max + 1) * sizeof *ids);
    double *times = malloc((size_t)o->repeats * sizeof *times);
    if (!ids || !times) {
        rk_fail(RK_ENOMEM, "out of memory for a context of %d", o->context);
        cli_die();
    }
    for (int i = 0; i < o->context + k_max + 1; i++)
        ids[i] = (int32_t)(((int64_t)i * 7919 + 13) % vocab);
    rk_seq ts, ds;
    rk_seq_reset(&ts);
    rk_seq_reset(&ds);
    fprintf(stderr, "[speculate] prefilling %d tokens on both models\n", o->context);
    if (rk_model_prefill(target, &ts, ids, o->context) != RK_OK ||
        rk_model_prefill(draft, &ds, ids, o->context) != RK_OK)
        cli_die();
    const int32_t *next = ids + o->context;
    const double t_target = time_step(target, &ts, next, 1, o->repeats, times);
    const double t_draft = time_step(draft, &ds, next, 1, o->repeats, times);
    printf("context %d: target step %.3f ms, draft step %.3f ms (%.1f%% of it), median of %d\n",
           o->context, 1e3 * t_target, 1e3 * t_draft, 100 * t_draft / t_target, o->repeats);
    printf("%4s %12s %12s", "K", "t_verify_ms", "verify/step");
    for (int a = 0; a < TIME_ONLY_ACCEPTANCES; a++)
        printf("   speedup@%.1f", acceptances[a]);
    putchar('\n');

    cJSON *record = cli_record_new(argc, argv, cli_base_name(o->model), ops->name);
    cJSON_AddStringToObject(record, "draft_model", cli_base_name(o->draft));
    cJSON_AddNumberToObject(record, "target_layers", target->cfg.n_layers);
    cJSON_AddNumberToObject(record, "target_hidden", target->cfg.hidden);
    cJSON_AddNumberToObject(record, "draft_layers", draft->cfg.n_layers);
    cJSON_AddNumberToObject(record, "draft_hidden", draft->cfg.hidden);
    cJSON_AddNumberToObject(record, "context", o->context);
    cJSON_AddNumberToObject(record, "repeats", o->repeats);
    cJSON_AddStringToObject(record, "formula",
                            "tokens per round E = (1 - a^(K+1)) / (1 - a) at per-token "
                            "acceptance a; round time = K t_draft + t_verify(K); speedup = "
                            "E t_target_step / round time");
    cJSON_AddNumberToObject(record, "t_target_step_ms", 1e3 * t_target);
    cJSON_AddNumberToObject(record, "t_draft_step_ms", 1e3 * t_draft);
    cJSON *rows = cJSON_AddArrayToObject(record, "verify");
    for (int i = 0; i < o->ks.n; i++) {
        const int k = o->ks.v[i];
        const double t_verify = time_step(target, &ts, next, k + 1, o->repeats, times);
        printf("%4d %12.3f %12.2f", k, 1e3 * t_verify, t_verify / t_target);
        cJSON *row = cJSON_CreateObject();
        cJSON_AddNumberToObject(row, "k", k);
        cJSON_AddNumberToObject(row, "t_verify_ms", 1e3 * t_verify);
        cJSON_AddNumberToObject(row, "verify_over_step", t_verify / t_target);
        cJSON *speedups = cJSON_AddArrayToObject(row, "speedup");
        for (int a = 0; a < TIME_ONLY_ACCEPTANCES; a++) {
            const double x = rk_spec_speedup(acceptances[a], k, t_draft, t_verify, t_target);
            printf(" %13.2f", x);
            cJSON *s = cJSON_CreateObject();
            cJSON_AddNumberToObject(s, "acceptance", acceptances[a]);
            cJSON_AddNumberToObject(s, "tokens_per_round",
                                    rk_spec_expected_tokens(acceptances[a], k));
            cJSON_AddNumberToObject(s, "round_ms", 1e3 * (k * t_draft + t_verify));
            cJSON_AddNumberToObject(s, "speedup", x);
            cJSON_AddItemToArray(speedups, s);
        }
        putchar('\n');
        cJSON_AddItemToArray(rows, row);
    }
    if (o->json)
        cli_write_json(o->json, record);
    cJSON_Delete(record);
    free(ids);
    free(times);
    rk_model_free(target);
    rk_model_free(draft);
}

int main(int argc, char **argv)
{
    cli_init("rankkv-speculate");
    const options o = parse(argc, argv);
    if (o.time_only)
        time_only(&o, argc, argv);
    else
        generate_runs(&o, argc, argv);
    return 0;
}
