/* rankkv-ppl: perplexity of a text file over non-overlapping windows. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kv_quant.h"
#include "model.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

static const char usage[] =
    "usage: rankkv-ppl --text FILE [options]\n"
    "Perplexity of FILE: the file is tokenized (as far as --max-windows needs) and\n"
    "cut into non-overlapping windows; each window of W tokens predicts the W\n"
    "tokens that follow each of its positions (as goldens.json's ppl_full_cache\n"
    "does). Line ends are read as Python's text mode reads them: CRLF and CR\n"
    "become LF.\n"
    "With --kv-error, every K and V row of each window's fp32 cache is also stored\n"
    "in each listed dtype and read back (kv_quant.c; a kivi dtype stores each head's\n"
    "rows of a window as its cache would after the window, kv_kivi.c), and the\n"
    "relative Frobenius error of each, per layer and over all layers, is printed\n"
    "and recorded.\n"
    "\n";

enum { MAX_ERROR_DTYPES = RK_KV_N_FORMATS };

/* --kv-error's dtypes, in the order given. */
typedef struct {
    rk_kv_format f[MAX_ERROR_DTYPES];
    int n;
} error_dtypes;

static void take_error_dtypes(void *to, const char *list)
{
    error_dtypes *d = to;
    char *words[MAX_ERROR_DTYPES];
    d->n = cli_split_list("--kv-error", list, words, MAX_ERROR_DTYPES);
    for (int i = 0; i < d->n; i++) {
        if (rk_kv_format_parse(words[i], &d->f[i]) != RK_OK)
            cli_usage_error("--kv-error: %s", rk_last_error());
        for (int j = 0; j < i; j++)
            if (d->f[j] == d->f[i])
                cli_usage_error("--kv-error names %s twice", words[i]);
    }
    free(words[0]);
}

/* Every row of every layer of the window S has run, into E: each head's
 * rows in position order, as a cache holds them. */
static void add_window_rows(const rk_model *m, const rk_seq *s, int window, rk_kv_error *e)
{
    const int H = m->cfg.n_heads, hd = m->cfg.head_dim;
    const size_t row = (size_t)H * hd, head = (size_t)window * hd;
    float *k = malloc(row * sizeof *k), *v = malloc(row * sizeof *v);
    float *heads = malloc(2 * (size_t)H * head * sizeof *heads);
    if (!k || !v || !heads) {
        rk_fail(RK_ENOMEM, "out of memory for a window's KV rows");
        cli_die();
    }
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int pos = 0; pos < window; pos++) {
            if (rk_model_kv_row(m, s, l, pos, k, v) != RK_OK)
                cli_die();
            for (int h = 0; h < H; h++) {
                memcpy(heads + (size_t)h * head + (size_t)pos * hd, k + (size_t)h * hd,
                       (size_t)hd * sizeof *k);
                memcpy(heads + (size_t)(H + h) * head + (size_t)pos * hd, v + (size_t)h * hd,
                       (size_t)hd * sizeof *v);
            }
        }
        for (int h = 0; h < 2 * H; h++)
            if (rk_kv_error_add_rows(e, l, h >= H, heads + (size_t)h * head, window) != RK_OK)
                cli_die();
    }
    free(k);
    free(v);
    free(heads);
}

/* The table on stdout: a row per layer, K and V of each dtype, then the
 * overall row; the same numbers into J's "kv_error". */
static void report_error(const rk_kv_error *e, const error_dtypes *d, long rows, cJSON *j)
{
    printf("KV error: relative Frobenius error of rows stored in each dtype and read back,\n"
           "against the fp32 cache (%ld rows of K and of V per layer)\n%-7s", rows, "layer");
    for (int i = 0; i < d->n; i++)
        printf(" %9s_K %9s_V", rk_kv_format_name(d->f[i]), rk_kv_format_name(d->f[i]));
    putchar('\n');
    for (int l = 0; l <= e->layers; l++) {
        if (l == e->layers)
            printf("%-7s", "overall");
        else
            printf("%-7d", l);
        for (int i = 0; i < d->n; i++)
            for (int is_v = 0; is_v < 2; is_v++)
                printf(" %11.3e", l == e->layers ? rk_kv_error_overall(e, d->f[i], is_v)
                                                 : rk_kv_error_layer(e, d->f[i], is_v, l));
        putchar('\n');
    }
    cJSON *o = cJSON_AddObjectToObject(j, "kv_error");
    cJSON_AddStringToObject(o, "reference", "fp32");
    cJSON_AddNumberToObject(o, "kv_group", e->group);
    for (int i = 0; i < d->n; i++)
        if (rk_kv_format_kivi(d->f[i]) && !cJSON_HasObjectItem(o, "kv_residual"))
            cJSON_AddNumberToObject(o, "kv_residual", e->residual);
    cJSON_AddNumberToObject(o, "rows_per_layer", (double)rows);
    for (int i = 0; i < d->n; i++) {
        cJSON *t = cJSON_AddObjectToObject(o, rk_kv_format_name(d->f[i]));
        for (int is_v = 0; is_v < 2; is_v++) {
            cJSON *kv = cJSON_AddObjectToObject(t, is_v ? "V" : "K");
            double layer[RK_MAX_LAYERS];
            for (int l = 0; l < e->layers; l++)
                layer[l] = rk_kv_error_layer(e, d->f[i], is_v, l);
            cJSON_AddNumberToObject(kv, "overall", rk_kv_error_overall(e, d->f[i], is_v));
            cJSON_AddItemToObject(kv, "layers", cJSON_CreateDoubleArray(layer, e->layers));
        }
    }
}

int main(int argc, char **argv)
{
    cli_init("rankkv-ppl");
    const char *model = RK_DEFAULT_MODEL, *text = NULL, *target = "cpu", *out_path = NULL;
    error_dtypes errors = {0};
    int window = 1024, max_windows = 0, chunk = 256, json = 0, print_plan = 0;
    cli_kv kv = {0};
    const cli_opt opts[] = {
        CLI_MODEL_OPT(&model),
        CLI_PATH_OPT("--text", CLI_INPUT, &text, "FILE", "text to score (required)"),
        CLI_NUM("--window", &window, 1, 1 << 20, "W", "tokens per window (default 1024)"),
        CLI_NUM("--max-windows", &max_windows, 1, 1 << 30, "N",
                "score at most N windows (default: all; the JSON's\n"
                "text_tokens then counts the tokens read for them)"),
        CLI_NUM("--chunk", &chunk, 1, 1 << 16, "N", "prefill chunk (default 256)"),
        CLI_TARGET_OPT(&target),
        CLI_STRING_OPT("--kv-dtype", &kv.dtype, "TYPE",
                       "how the KV cache stores rows: " RK_KV_FORMATS "\n"
                       "(default: the target's own; see rankkv-generate --help)"),
        CLI_NUM("--kv-group", &kv.group, 1, RK_KV_MAX_HEAD_DIM, "N",
                "channels per scale of int8/int4 rows and kivi values, positions\n"
                "per scale of kivi keys; must divide head_dim (default " RK_STR(RK_KV_GROUP_DEFAULT) ")"),
        CLI_NUM("--kv-residual", &kv.residual, 1, 1 << 20, "N",
                "kivi: positions kept fp16 before they are quantized together;\n"
                "a multiple of --kv-group (default " RK_STR(RK_KV_RESIDUAL_DEFAULT) ")"),
        CLI_STRING_OPT("--kv-precision", &kv.precision, "P",
                       "bits per layer: uniform (default) or rank (see\n"
                       "rankkv-generate --help)"),
        CLI_CALL_OPT("--kv-error", &errors, take_error_dtypes, "LIST",
                     "also the error of storing the fp32 cache's rows in each\n"
                     "of these comma-separated dtypes (" RK_KV_FORMATS ")"),
        CLI_FLAG_OPT("--json", &json, "last stdout line is one JSON object"),
        CLI_PATH_OPT("--out", CLI_OUTPUT, &out_path, "FILE",
                     "also write that object as a record (with the device,\n"
                     "commit, command and date) to FILE"),
        CLI_FLAG_OPT("--print-plan", &print_plan,
                     "print the memory plan and exit (reads only config.json)"),
        CLI_HELP_OPT,
        CLI_TEXT_OPT("Progress goes to stderr.\n"),
        {0}};
    cli_parse(argc, argv, usage, opts);
    /* --kv-residual is a KIVI cache's, or that of --kv-error's KIVI rows:
     * with neither, it is refused as the other tools refuse it. */
    int kivi_error = 0;
    for (int i = 0; i < errors.n; i++)
        kivi_error |= rk_kv_format_kivi(errors.f[i]);
    if (!kivi_error)
        cli_kv_check_dtype_options(&kv);
    const rk_ops *ops = cli_target(target);
    if (!text && !print_plan)
        cli_usage_error("--text FILE is required");
    rk_config cfg;
    cli_model_config(model, &cfg);
    /* Every position of a window is scored, so every row keeps its logits.
     * The full cache only: a window is scored as it is prefilled, with no
     * decode step after it for a policy to compress for. */
    rk_limits lim = {.max_prompt = window, .max_new_tokens = 0,
                     .prefill_chunk = chunk < window ? chunk : window,
                     .kv_format = cli_kv_format(&kv, kv.dtype, ops, &cfg), .kv_group = kv.group,
                     .kv_residual = kv.residual};
    if (lim.kv_format == RK_KV_SMART)
        cli_usage_error("--kv-dtype smartkv: rankkv-ppl scores a window as it is prefilled, and "
                        "smartkv quantizes rows only once the prompt is in, so every score would "
                        "be fp16's; measure it with rankkv-eval");
    lim.logits_rows = lim.prefill_chunk;
    cli_kv_precision(kv.precision, model, &cfg, ops, &lim);
    if (errors.n && lim.kv_format != RK_KV_FP32)
        cli_usage_error("--kv-error measures against the fp32 cache, and this run's is %s",
                        rk_kv_format_name(lim.kv_format));
    if (errors.n && cfg.head_dim > RK_KV_MAX_HEAD_DIM)
        cli_usage_error("--kv-error reads rows of head_dim up to %d (the model's is %d)",
                        RK_KV_MAX_HEAD_DIM, cfg.head_dim);
    const int group = rk_kv_group_of(kv.group);
    for (int i = 0; i < errors.n; i++)
        if (errors.f[i] == RK_KV_SMART)
            cli_usage_error("--kv-error smartkv: a smartkv row's bits follow the attention it "
                            "gets, which storage alone does not have; measure it with "
                            "rankkv-eval");
        else if (rk_kv_format_check(errors.f[i], cfg.head_dim, group) != RK_OK ||
            rk_kv_residual_check(errors.f[i], cfg.head_dim, group,
                                 rk_kv_residual_of(kv.residual)) != RK_OK)
            cli_usage_error("--kv-error %s: %s", rk_kv_format_name(errors.f[i]),
                            rk_last_error());
    if (print_plan)
        cli_print_plan(model, ops, &lim);
    cli_check_paths(model);

    rk_tokenizer *tok = cli_tokenizer(model, NULL, 0);
    int32_t *ids;
    size_t n_ids;
    /* A window needs one token past its end for its last target. */
    if (cli_tokenize_file(tok, text, max_windows ? (size_t)max_windows * window + 1 : 0, &ids,
                          &n_ids) != RK_OK)
        cli_die();
    long windows = n_ids > 1 ? (long)((n_ids - 1) / (size_t)window) : 0;
    if (max_windows && windows > max_windows)
        windows = max_windows;
    if (windows == 0) {
        rk_fail(RK_EINVAL, "%s has %zu tokens, fewer than one window of %d plus one", text, n_ids,
                window);
        cli_die();
    }
    rk_model *m = cli_model_load(model, ops, &lim);
    if (rk_tok_check_vocab(tok, m->cfg.vocab) != RK_OK)
        cli_die();

    rk_kv_error err = {.layers = m->cfg.n_layers, .head_dim = m->cfg.head_dim,
                       .group = m->cache.group, .residual = m->cache.residual};
    for (int i = 0; i < errors.n; i++)
        err.formats |= RK_KV_FORMAT_BIT(errors.f[i]);
    double nll = 0, t0 = rk_now();
    long scored = 0;
    for (long w = 0; w < windows; w++) {
        const int32_t *win = ids + (size_t)w * window;
        rk_seq seq;
        rk_seq_reset(&seq);
        for (int i = 0; i < window; i += lim.prefill_chunk) {
            int k = window - i < lim.prefill_chunk ? window - i : lim.prefill_chunk;
            if (rk_model_forward(m, &seq, win + i, k) != RK_OK)
                cli_die();
            for (int r = 0; r < k; r++) {
                double token_nll;
                if (rk_nll(rk_model_logits(m, r), m->cfg.vocab, win[i + r + 1], &token_nll) !=
                    RK_OK) {
                    rk_fail(RK_EINVAL, "window %ld, position %d: %s", w + 1, i + r,
                            rk_last_error());
                    cli_die();
                }
                nll += token_nll;
            }
            scored += k;
        }
        if (errors.n)
            add_window_rows(m, &seq, window, &err);
        double dt = rk_now() - t0;
        fprintf(stderr, "\r[ppl] window %ld/%ld  ppl %.4f  %.0f tok/s", w + 1, windows,
                exp(nll / scored), scored / dt);
    }
    fputc('\n', stderr);
    double ppl = exp(nll / scored), secs = rk_now() - t0;
    /* Finite logits can still be large enough that the mean NLL overflows
     * exp; JSON would print that as null. */
    if (!isfinite(ppl)) {
        rk_fail(RK_EINVAL, "the perplexity overflows (mean NLL %g per token)", nll / scored);
        cli_die();
    }
    printf("ppl %.4f over %ld tokens (%ld windows of %d) in %.1f s\n", ppl, scored, windows,
           window, secs);
    cJSON *j = cJSON_CreateObject();
    {
        cJSON_AddNumberToObject(j, "ppl", ppl);
        cJSON_AddNumberToObject(j, "mean_nll", nll / scored);
        cJSON_AddNumberToObject(j, "tokens_scored", (double)scored);
        cJSON_AddNumberToObject(j, "window", window);
        cJSON_AddNumberToObject(j, "windows", (double)windows);
        cJSON_AddNumberToObject(j, "text_tokens", (double)n_ids);
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, "text", text);
        cJSON_AddStringToObject(j, "target", ops->name);
        cli_kv_cache_json(j, m);
        cJSON_AddNumberToObject(j, "seconds", secs);
    }
    if (errors.n)
        report_error(&err, &errors, windows * (long)window * m->cfg.n_heads, j);
    if (out_path) {
        cJSON *rec = cli_record_new(argc, argv, model, ops->name);
        for (const cJSON *c = j->child; c; c = c->next)
            if (!cJSON_HasObjectItem(rec, c->string))
                cJSON_AddItemToObject(rec, c->string, cJSON_Duplicate(c, 1));
        cli_write_json(out_path, rec);
        cJSON_Delete(rec);
    }
    if (json)
        cli_print_json_line(j);
    else
        cJSON_Delete(j);
    rk_model_free(m);
    rk_tok_free(tok);
    free(ids);
    return 0;
}
