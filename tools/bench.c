/* rankkv-bench: prefill and decode speed of one or more models, written as a
 * JSON record (device, commit, command, runs) for bench/results/. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "flops.h"
#include "harness.h"
#include "model.h"
#include "targets.h"
#include "textio.h"

static const char usage[] =
    "usage: rankkv-bench --model DIR [--model DIR ...] [options]\n"
    "Times prefill (time to first token) and decode (time per output token) on a\n"
    "synthetic prompt of fixed token ids, after one warm-up run; reports medians\n"
    "(--out's record also keeps each timed run: ttft_ms_runs, tpot_ms_runs).\n"
    "A run's context is its prompt length: decode is timed from there on, greedy,\n"
    "in runs of steps queued ahead as rankkv-generate decodes them (each step reads\n"
    "the token the one before found on the device; the host waits once a run).\n"
    "On targets that can measure it, the device's copy bandwidth is measured first\n"
    "and each run's decode is shown as the bytes a step reads (the weights but the\n"
    "input embedding, and the K/V rows it attends) over its TPOT, and as the\n"
    "fraction of that bandwidth it reaches.\n"
    "\n";

enum { MAX_MODELS = 8, MAX_PROMPTS = 16, MAX_METHODS = 8, MAX_DTYPES = RK_KV_N_FORMATS };

typedef struct {
    const char *dir[MAX_MODELS];
    int n;
} model_list;

static void take_model(void *models, const char *dir)
{
    model_list *l = models;
    if (l->n == MAX_MODELS)
        cli_usage_error("at most %d --model options", MAX_MODELS);
    l->dir[l->n++] = cli_model_input(dir);
}

int main(int argc, char **argv)
{
    cli_init("rankkv-bench");
    const char *target = "cpu", *out = NULL;
    int new_tokens = 64, chunk = 0, repeats = 3, longest = 0;
    model_list models = {0};
    cli_ints prompts = {1, {512}};
    cli_kv kv = {.opt.method = "full"};
    const cli_opt opts[] = {
        CLI_CALL_OPT("--model", &models, take_model, "DIR",
                     "model directory (repeatable; up to 8; every model and\n"
                     "--kv method is checked before the first run)"),
        CLI_INTS_OPT("--prompt-tokens", &prompts, 1, 1 << 20, MAX_PROMPTS, "N[,N...]",
                     "prompt lengths (default 512)"),
        CLI_NUM("--new-tokens", &new_tokens, 1, 1 << 20, "N",
                "generated tokens per run (default 64)"),
        CLI_NUM("--chunk", &chunk, 1, 1 << 16, "N",
                "prefill chunk (default: the longest prompt, one chunk)"),
        HARNESS_REPEATS_OPT(&repeats, "model"),
        CLI_KV_OPTIONS(&kv),
        CLI_TARGET_OPT(&target),
        CLI_PATH_OPT("--out", CLI_OUTPUT_STDOUT, &out, "FILE",
                     "write the JSON record to FILE ('-': standard output, after\n"
                     "the table; default: the table only)"),
        CLI_HELP_OPT,
        CLI_TEXT_OPT("--kv and --kv-dtype take comma-separated lists here: one run per\n"
                     "model x dtype x method, each at the one --kv-precision.\n"),
        {0}};
    cli_parse(argc, argv, usage, opts);
    cli_kv_check_dtype_options(&kv);
    char *methods[MAX_METHODS], *dtypes[MAX_DTYPES];
    const int n_methods = cli_split_list("--kv", kv.opt.method, methods, MAX_METHODS);
    if (models.n == 0)
        cli_usage_error("give at least one --model DIR");
    const rk_ops *ops = cli_target(target);
    const char *dtype_arg = kv.dtype ? kv.dtype : rk_kv_format_name(ops->kv_format);
    const int n_dtypes = cli_split_list("--kv-dtype", dtype_arg, dtypes, MAX_DTYPES);
    const int n_runs = models.n * n_dtypes * n_methods;
    cli_check_paths(NULL);
    for (int i = 0; i < prompts.n; i++)
        longest = prompts.v[i] > longest ? prompts.v[i] : longest;

    /* Every model's config and every method's plan are checked before the
     * first run, so that a bad last entry does not fail after the others. */
    static rk_limits limits[MAX_MODELS * MAX_DTYPES * MAX_METHODS];
    for (int run_i = 0; run_i < n_runs; run_i++) {
        const int k = run_i / (n_dtypes * n_methods);
        const char *method = methods[run_i % n_methods];
        rk_config cfg;
        cli_model_config(models.dir[k], &cfg);
        cli_kv one = kv;
        one.opt.method = method;
        one.dtype = dtypes[run_i / n_methods % n_dtypes];
        if (strcmp(method, "full") == 0)
            one.opt.average = 0;
        limits[run_i] = (rk_limits){.max_prompt = longest, .max_new_tokens = new_tokens,
                                    .prefill_chunk = chunk && chunk < longest ? chunk : longest,
                                    .logits_rows = 1};
        cli_kv_limits(&one, models.dir[k], &cfg, ops, &limits[run_i]);
        cli_check_plan(&cfg, ops, &limits[run_i]);
    }

    /* The yardstick, before any model holds device memory. */
    double copy_bps = 0;
    if (ops->copy_bandwidth) {
        if (ops->copy_bandwidth(&copy_bps) != RK_OK)
            cli_die();
        printf("device copy bandwidth: %.0f GB/s (read + written)\n", copy_bps / 1e9);
    }
    cJSON *runs = cJSON_CreateArray();
    printf("%-20s %-5s %-7s %-13s %7s %10s %10s %11s %11s %10s %10s %10s %8s %7s\n", "model",
           "dtype", "prec", "kv", "context", "ttft_ms", "tpot_ms", "prefill_t/s", "decode_t/s", "kv_MB",
           "arena_MB", "device_MB", "step_GB", "of_copy");
    for (int run_i = 0; run_i < n_runs; run_i++) {
        const char *model = models.dir[run_i / (n_dtypes * n_methods)];
        const char *method = methods[run_i % n_methods];
        const rk_limits lim = limits[run_i];
        const char *dtype = rk_kv_format_name(lim.kv_format);
        fprintf(stderr, "[bench] loading %s (kv %s, %s)\n", model, method, dtype);
        rk_model *m = cli_model_load(model, ops, &lim);
        rk_model_print_plan(m, stderr);
        int32_t *prompt = malloc((size_t)longest * sizeof *prompt);
        if (!prompt) {
            rk_fail(RK_ENOMEM, "out of memory for a prompt of %d tokens", longest);
            cli_die();
        }
        for (int i = 0; i < longest; i++)
            prompt[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab);
        for (int p = 0; p < prompts.n; p++) {
            const int n = prompts.v[p];
            char label[320], device_col[32] = "-";
            cli_fmt(label, sizeof label, "[bench] %s prompt %d", cli_base_name(model), n);
            const harness_timing t = harness_time(m, prompt, n, new_tokens, repeats, label);
            const double arena_mb = harness_mb(m->plan.total);
            const double kv_mb = harness_mb(rk_model_kv_bytes(m));
            /* What the device itself reports: its memory in use now, and
             * that less what was in use before the weights and arena were
             * allocated. */
            size_t in_use, since_load;
            const int reported = rk_model_device_used(m, &in_use, &since_load);
            if (reported)
                cli_fmt(device_col, sizeof device_col, "%.1f", harness_mb(since_load));
            /* What a decode step must read, and how close to the copy
             * bandwidth the measured TPOT reads it. */
            const double step_bytes = (double)rk_model_step_weight_bytes(m) +
                                      rk_kv_step_bytes(&m->cache, &m->lim.kv, n, new_tokens);
            const int decodes = new_tokens > 1 && t.tpot_ms > 0; /* a run of one token has no step */
            const double step_bps = decodes ? step_bytes / (t.tpot_ms * 1e-3) : 0;
            char step_col[16] = "-", fraction_col[16] = "-";
            if (decodes)
                cli_fmt(step_col, sizeof step_col, "%.3f", step_bytes / 1e9);
            if (decodes && copy_bps > 0)
                cli_fmt(fraction_col, sizeof fraction_col, "%.3f", step_bps / copy_bps);
            printf("%-20s %-5s %-7s %-13s %7d %10.2f %10.3f %11.1f %11.1f %10.1f %10.1f %10s %8s "
                   "%7s\n",
                   cli_base_name(model), dtype, rk_kv_precision_name(lim.kv_precision), method, n, t.ttft_ms, t.tpot_ms, t.prefill_tok_s,
                   t.decode_tok_s, kv_mb, arena_mb, device_col, step_col, fraction_col);

            cJSON *run = cJSON_CreateObject();
            cJSON_AddStringToObject(run, "model", cli_base_name(model));
            cJSON_AddNumberToObject(run, "layers", m->cfg.n_layers);
            cJSON_AddNumberToObject(run, "hidden", m->cfg.hidden);
            cJSON_AddNumberToObject(run, "prompt_tokens", n);
            cJSON_AddNumberToObject(run, "new_tokens", new_tokens);
            cJSON_AddNumberToObject(run, "context", n);
            cJSON_AddNumberToObject(run, "prefill_chunk", lim.prefill_chunk);
            cJSON_AddStringToObject(run, "kv_method", rk_kv_policy_name(&m->lim.kv));
            cli_kv_cache_json(run, m);
            if (rk_kv_compresses(&m->lim.kv))
                cJSON_AddNumberToObject(run, "kv_budget", lim.kv.average);
            cJSON_AddNumberToObject(run, "kv_cache_mb", kv_mb);
            harness_timing_json(run, &t);
            if (decodes) {
                cJSON_AddNumberToObject(run, "decode_step_bytes", step_bytes);
                cJSON_AddNumberToObject(run, "decode_bytes_per_s", step_bps);
            }
            if (decodes && copy_bps > 0)
                cJSON_AddNumberToObject(run, "decode_copy_fraction", step_bps / copy_bps);
            cJSON_AddNumberToObject(run, "weights_mb", harness_mb(m->wplan.total));
            cJSON_AddNumberToObject(run, "arena_mb", arena_mb);
            if (reported) {
                cJSON_AddNumberToObject(run, "peak_device_mb", harness_mb(since_load));
                cJSON_AddNumberToObject(run, "device_process_mb", harness_mb(in_use));
            }
            cJSON_AddNumberToObject(run, "peak_rss_mb", cli_peak_rss_mb());
            cJSON_AddNumberToObject(run, "repeats", repeats);
            cJSON *regions = cJSON_AddArrayToObject(run, "arena_plan");
            for (int i = 0; i < m->plan.n_regions; i++) {
                cJSON *r = cJSON_CreateObject();
                cJSON_AddStringToObject(r, "region", m->plan.regions[i].name);
                cJSON_AddNumberToObject(r, "bytes", (double)m->plan.regions[i].size);
                cJSON_AddItemToArray(regions, r);
            }
            cJSON_AddItemToArray(runs, run);
        }
        free(prompt);
        rk_model_free(m);
    }

    cJSON *record = cli_record_new(argc, argv, NULL, ops->name);
    if (copy_bps > 0)
        cJSON_AddNumberToObject(record, "copy_bandwidth_bytes_per_s", copy_bps);
    cJSON_AddItemToObject(record, "runs", runs);
    if (out)
        cli_write_json(out, record);
    cJSON_Delete(record);
    free(methods[0]);
    free(dtypes[0]);
    return 0;
}
