/* rankkv-eval: perplexity under the conditions of KV-cache compression. Each
 * window of C tokens is prefilled up to C - T, then its last T tokens are
 * teacher-forced one at a time through the decode step, and their NLL is
 * scored: the cache the decode steps read is the one a compression method
 * leaves behind after prefill. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "harness.h"
#include "model.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

static const char usage[] =
    "usage: rankkv-eval --dataset NAME=PATH [--dataset ...] [options]\n"
    "Perplexity of the last T tokens of each C-token window, scored one token at\n"
    "a time through the decode step after a prefill of the first C - T, which\n"
    "the KV method compresses to its budget. PATH is a text file or a directory\n"
    "whose *.txt files are the documents (other entries are named on stderr as\n"
    "skipped); each document is cut into non-overlapping windows, taken evenly\n"
    "from the documents (at most ceil(N / documents) each, in file-name order),\n"
    "and only the text they need is tokenized. One row per dataset x KV dtype x\n"
    "KV precision x method x budget; the first full-cache row is the reference\n"
    "the others are compared with.\n"
    "\n";

enum { MAX_LIST = 16, MAX_DTYPES = 8, MAX_PRECISIONS = 2 };

int main(int argc, char **argv)
{
    cli_init("rankkv-eval");
    const char *model = RK_DEFAULT_MODEL, *target = "cpu", *json_path = NULL;
    const char *method_arg = "full";
    int context = 2048, tail = 256, max_windows = 16, kl = 0;
    cli_ints budgets = {4, {128, 256, 512, 1024}};
    harness_datasets sets = {0};
    cli_kv kv = {0};
    const cli_opt opts[] = {
        CLI_MODEL_OPT(&model),
        CLI_CALL_OPT("--dataset", &sets, harness_dataset_take, "NAME=PATH",
                     "a dataset (repeatable, up to 8)"),
        CLI_NUM("--context", &context, 2, 1 << 20, "C", "window length (default 2048)"),
        CLI_NUM("--tail", &tail, 1, 1 << 20, "T",
                "scored tokens at the end of each window (default 256)"),
        CLI_NUM("--max-windows", &max_windows, 1, 1 << 20, "N", "windows per dataset (default 16)"),
        CLI_STRING_OPT("--method", &method_arg, "LIST",
                       "comma-separated KV methods: " RK_KV_METHODS "\n(default full)"),
        CLI_INTS_OPT("--budget", &budgets, 1, 1 << 20, MAX_LIST, "LIST",
                     "comma-separated average budgets (default 128,256,512,1024);\n"
                     "the full cache runs once per KV dtype, and the rows after\n"
                     "the first full one get their NLL difference from it on the\n"
                     "same windows"),
        CLI_FLAG_OPT("--kl", &kl,
                     "also the mean KL divergence of each scored token's\n"
                     "distribution from the reference row's (it keeps datasets x\n"
                     "windows x tail x vocab floats in memory)"),
        CLI_KV_OPTIONS(&kv),
        CLI_TARGET_OPT(&target),
        CLI_PATH_OPT("--json", CLI_OUTPUT_STDOUT, &json_path, "FILE",
                     "also write the results as JSON ('-': standard output,\nafter the table)"),
        CLI_HELP_OPT,
        CLI_TEXT_OPT("--kv-dtype and --kv-precision take comma-separated lists here (default: "
                     "the\ntarget's own dtype, uniform); rank rows are made for the dtypes it "
                     "varies.\nProgress goes to stderr; the table to stdout.\n"),
        {0}};
    cli_parse(argc, argv, usage, opts);
    cli_kv_check_dtype_options(&kv);
    if (sets.n == 0)
        cli_usage_error("give at least one --dataset NAME=PATH");
    harness_check_tail(tail, context);
    if (kv.opt.method || kv.opt.average || kv.memory)
        cli_usage_error("rankkv-eval takes --method and --budget lists, not "
                        "--kv/--kv-budget/--kv-memory");
    char *methods[MAX_LIST], *dtypes[MAX_DTYPES], *precisions[MAX_PRECISIONS];
    const int n_methods = cli_split_list("--method", method_arg, methods, MAX_LIST);
    const rk_ops *ops = cli_target(target);
    const char *dtype_arg = kv.dtype ? kv.dtype : rk_kv_format_name(ops->kv_format);
    const int n_dtypes = cli_split_list("--kv-dtype", dtype_arg, dtypes, MAX_DTYPES);
    const int n_precisions = cli_split_list("--kv-precision", kv.precision ? kv.precision : "uniform",
                                            precisions, MAX_PRECISIONS);
    cli_check_paths(model);

    rk_config cfg;
    cli_model_config(model, &cfg);
    /* Every row is checked before the first window runs. */
    enum { MAX_ROWS = MAX_DTYPES * MAX_PRECISIONS * MAX_LIST * MAX_LIST };
    static rk_limits limits[MAX_ROWS];
    const char *row_method[MAX_ROWS];
    int n_rows = 0;
    cli_str skipped = {0};
    for (int d = 0; d < n_dtypes; d++)
        for (int p = 0; p < n_precisions; p++) {
            rk_kv_precision prec;
            rk_kv_format fmt, steps[3];
            /* Uniform rows for every dtype, rank rows where rank can vary
             * it; a list with rank and no such dtype is refused below. */
            if (rk_kv_precision_parse(precisions[p], &prec) == RK_OK && prec == RK_KV_RANK &&
                rk_kv_format_parse(dtypes[d], &fmt) == RK_OK &&
                rk_kv_precision_steps(fmt, steps) != RK_OK) {
                cli_str_add(&skipped, "%s%s", skipped.s ? ", " : "", dtypes[d]);
                continue;
            }
            for (int i = 0; i < n_methods; i++)
                for (int b = 0; b < budgets.n; b++) {
                    cli_kv one = kv;
                    one.dtype = dtypes[d];
                    one.precision = precisions[p];
                    one.opt.method = methods[i];
                    if (strcmp(methods[i], "full") != 0)
                        one.opt.average = budgets.v[b];
                    else if (b > 0)
                        break;
                    row_method[n_rows] = methods[i];
                    limits[n_rows] = (rk_limits){.max_prompt = context - tail,
                                                 .max_new_tokens = tail,
                                                 .prefill_chunk = context - tail, .logits_rows = 1};
                    cli_kv_limits(&one, model, &cfg, ops, &limits[n_rows]);
                    cli_check_plan(&cfg, ops, &limits[n_rows++]);
                }
        }
    if (skipped.s) {
        int ranked = 0;
        for (int r = 0; r < n_rows; r++)
            ranked |= limits[r].kv_precision == RK_KV_RANK;
        if (!ranked)
            cli_usage_error("--kv-precision rank varies fp16, int8 or int4, and --kv-dtype names "
                            "%s", skipped.s);
        fprintf(stderr, "rankkv-eval: no rank rows for %s (rank precision varies fp16, int8 or "
                        "int4)\n", skipped.s);
        cli_str_free(&skipped);
    }
    double *row_nll = malloc((size_t)max_windows * sizeof(double));
    if (!row_nll) {
        rk_fail(RK_ENOMEM, "out of memory for %d windows", max_windows);
        cli_die();
    }
    harness_load_datasets(&sets, model, cfg.vocab, context, max_windows);
    if (kl)
        harness_keep_distributions(&sets, tail, cfg.vocab);

    cJSON *results = cJSON_CreateArray();
    /* dNLL: mean NLL per token minus the reference's (the first full-cache
     * row) on the same windows, with its standard error over windows; KL:
     * the mean divergence of each scored token's distribution from the
     * reference's, ± its standard error over windows. */
    printf("%-12s %-13s %-5s %-7s %7s %8s %8s %9s %17s %17s %9s %9s %9s\n", "dataset", "method",
           "kv", "prec", "budget", "windows", "tokens", "ppl", "dNLL_vs_ref", "KL_vs_ref", "kv_MB",
           "ttft_ms", "tpot_ms");
    for (int r = 0; r < n_rows; r++) {
        rk_model *m = cli_model_load(model, ops, &limits[r]);
        const rk_kv_policy *pol = &m->lim.kv;
        const char *dtype = rk_kv_format_name(m->cache.dtype);
        const char *precision = rk_kv_precision_name(m->lim.kv_precision);
        const double kv_mb = harness_mb(rk_model_kv_bytes(m));
        char label[160];
        cli_fmt(label, sizeof label, "[eval %d/%d] %s %s %s %d", r + 1, n_rows, dtype, precision,
                row_method[r], pol->average);
        for (int s = 0; s < sets.n; s++) {
            harness_row row;
            harness_run_dataset(m, &sets.set[s], context, tail, label, row_nll, &row);
            const harness_tally t = row.t;
            const double ppl = row.ppl, ttft = 1e3 * t.prefill_s / t.windows,
                         tpot = 1e3 * t.decode_s / (t.steps ? t.steps : 1);
            cli_str dcol = {0}, klcol = {0};
            if (row.have_diff)
                cli_str_add(&dcol, "%+.4f±%.4f", row.d_mean, row.d_se);
            if (row.have_kl)
                cli_str_add(&klcol, "%.2e±%.1e", row.kl_mean, row.kl_se);
            printf("%-12s %-13s %-5s %-7s %7d %8ld %8ld %9.4f %17s %17s %9.3f %9.2f %9.3f\n",
                   sets.set[s].name, rk_kv_policy_name(pol), dtype, precision, pol->average,
                   t.windows,
                   t.scored, ppl, row.have_diff ? dcol.s : "-", row.have_kl ? klcol.s : "-",
                   kv_mb, ttft, tpot);
            cli_str_free(&dcol);
            cli_str_free(&klcol);
            fflush(stdout);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "dataset", sets.set[s].name);
            cli_kv_cache_json(o, m);
            cJSON_AddStringToObject(o, "method", rk_kv_policy_name(pol));
            cJSON_AddNumberToObject(o, "budget", pol->average);
            if (rk_kv_compresses(pol) && !pol->dynamic)
                cJSON_AddItemToObject(o, "layer_budgets",
                                      cJSON_CreateIntArray(pol->budget, cfg.n_layers));
            if (pol->dynamic)
                cJSON_AddItemToObject(o, "mean_layer_budgets",
                                      cJSON_CreateDoubleArray(row.mean_budget, cfg.n_layers));
            cJSON_AddNumberToObject(o, "ppl", ppl);
            cJSON_AddNumberToObject(o, "mean_nll", t.nll / t.scored);
            if (row.have_diff) {
                cJSON_AddNumberToObject(o, "nll_minus_full", row.d_mean);
                cJSON_AddNumberToObject(o, "nll_minus_full_se", row.d_se);
            }
            if (row.have_kl) {
                cJSON_AddNumberToObject(o, "kl_vs_full", row.kl_mean);
                cJSON_AddNumberToObject(o, "kl_vs_full_se", row.kl_se);
            }
            cJSON *per_window = cJSON_AddArrayToObject(o, "window_mean_nll");
            for (int w = 0; w < t.windows; w++)
                cJSON_AddItemToArray(per_window, cJSON_CreateNumber(row_nll[w] / tail));
            cJSON_AddNumberToObject(o, "tokens_scored", (double)t.scored);
            cJSON_AddNumberToObject(o, "windows", (double)t.windows);
            cJSON_AddNumberToObject(o, "kv_cache_mb", kv_mb);
            cJSON_AddNumberToObject(o, "ttft_ms", ttft);
            cJSON_AddNumberToObject(o, "tpot_ms", tpot);
            cJSON_AddItemToArray(results, o);
        }
        rk_model_free(m);
    }

    if (json_path) {
        cJSON *j = harness_record(argc, argv, model, ops->name, context, tail);
        /* The rows' nll_minus_full and kl_vs_full are against this one. */
        for (int r = 0; r < n_rows; r++)
            if (!rk_kv_compresses(&limits[r].kv)) {
                cJSON *ref = cJSON_AddObjectToObject(j, "reference");
                cJSON_AddStringToObject(ref, "method", "full");
                cJSON_AddStringToObject(ref, "kv_dtype", rk_kv_format_name(limits[r].kv_format));
                cJSON_AddStringToObject(ref, "kv_precision",
                                        rk_kv_precision_name(limits[r].kv_precision));
                break;
            }
        cJSON_AddItemToObject(j, "results", results);
        cli_write_json(json_path, j);
        cJSON_Delete(j);
    } else {
        cJSON_Delete(results);
    }
    harness_free_datasets(&sets);
    free(row_nll);
    free(methods[0]);
    free(dtypes[0]);
    free(precisions[0]);
    return 0;
}
