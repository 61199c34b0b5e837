/* rankkv-bench: prefill and decode speed of one or more models, written as a
 * JSON record (device, commit, command, runs) for bench/results/. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "harness.h"
#include "model.h"
#include "targets.h"
#include "textio.h"

static const char usage[] =
    "usage: rankkv-bench --model DIR [--model DIR ...] [options]\n"
    "Times prefill (time to first token) and decode (time per output token) on a\n"
    "synthetic prompt of fixed token ids, after one warm-up run; reports medians.\n"
    "A run's context is its prompt length: decode is timed from there on.\n"
    "\n"
    "  --model DIR          model directory (repeatable; up to 8; every model and\n"
    "                       --kv method is checked before the first run)\n"
    "  --prompt-tokens N[,N...]  prompt lengths (default 512)\n"
    "  --new-tokens N       generated tokens per run (default 64)\n"
    "  --chunk N            prefill chunk (default: the longest prompt, one chunk)\n"
    "  --repeats N          timed runs per model (default 3)\n"
    CLI_KV_HELP
    "                       (--kv takes a comma-separated list here: one run per method)\n"
    "  --target cpu|cuda    where to run (default cpu)\n"
    "  --out FILE           write the JSON record to FILE ('-': standard output, after\n"
    "                       the table; default: the table only)\n"
    "  -h, --help           this text\n";

enum { MAX_MODELS = 8, MAX_PROMPTS = 16, MAX_METHODS = 8 };

int main(int argc, char **argv)
{
    cli_init("rankkv-bench");
    const char *models[MAX_MODELS], *target = "cpu", *out = NULL;
    int n_models = 0, new_tokens = 64, chunk = 0, repeats = 3;
    int prompts[MAX_PROMPTS] = {512}, n_prompts = 1, longest = 0;
    enum { MODEL = 256, PROMPT, NEW, CHUNK, REPEATS, TARGET, OUT };
    static const struct option longopts[] = {{"model", required_argument, 0, MODEL},
                                             {"prompt-tokens", required_argument, 0, PROMPT},
                                             {"new-tokens", required_argument, 0, NEW},
                                             {"chunk", required_argument, 0, CHUNK},
                                             {"repeats", required_argument, 0, REPEATS},
                                             {"target", required_argument, 0, TARGET},
                                             {"out", required_argument, 0, OUT},
                                             {"help", no_argument, 0, 'h'},
                                             CLI_KV_LONGOPTS,
                                             {0, 0, 0, 0}};
    cli_kv kv = {0};
    const char *method_list = "full";
    char *methods[MAX_METHODS], *words[MAX_PROMPTS];
    int c;
    while ((c = cli_getopt(argc, argv, longopts)) != -1) {
        switch (c) {
        case MODEL:
            if (n_models == MAX_MODELS)
                cli_usage_error("at most %d --model options", MAX_MODELS);
            models[n_models++] = cli_model_input(optarg);
            break;
        case PROMPT:
            n_prompts = harness_split_list("--prompt-tokens", optarg, words, MAX_PROMPTS);
            for (int i = 0; i < n_prompts; i++)
                prompts[i] = (int)cli_int("--prompt-tokens", words[i], 1, 1 << 20);
            free(words[0]);
            break;
        case NEW: new_tokens = (int)cli_int("--new-tokens", optarg, 1, 1 << 20); break;
        case CHUNK: chunk = (int)cli_int("--chunk", optarg, 1, 1 << 16); break;
        case REPEATS: repeats = (int)cli_int("--repeats", optarg, 1, HARNESS_MAX_REPEATS); break;
        case TARGET: target = optarg; break;
        case OUT: out = cli_output("--out", optarg, CLI_STDOUT); break;
        case 'h': fputs(usage, stdout); return 0;
        case CLI_KV_METHOD: method_list = optarg; break;
        default: cli_kv_option(&kv, c, optarg);
        }
    }
    const int n_methods = harness_split_list("--kv", method_list, methods, MAX_METHODS);
    if (optind < argc)
        cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (n_models == 0)
        cli_usage_error("give at least one --model DIR");
    const rk_ops *ops = cli_target(target);
    cli_check_paths(NULL);
    for (int i = 0; i < n_prompts; i++)
        longest = prompts[i] > longest ? prompts[i] : longest;

    /* Every model's config and every method's plan are checked before the
     * first run, so that a bad last entry does not fail after the others. */
    static rk_limits limits[MAX_MODELS * MAX_METHODS];
    for (int run_i = 0; run_i < n_models * n_methods; run_i++) {
        const int k = run_i / n_methods;
        const char *method = methods[run_i % n_methods];
        rk_config cfg;
        cli_model_config(models[k], &cfg);
        cli_kv one = kv;
        one.opt.method = method;
        if (strcmp(method, "full") == 0)
            one.opt.average = 0;
        limits[run_i] = (rk_limits){.max_prompt = longest, .max_new_tokens = new_tokens,
                                    .prefill_chunk = chunk && chunk < longest ? chunk : longest,
                                    .logits_rows = 1, .kv_dtype = ops->kv_dtype};
        cli_kv_limits(&one, models[k], &cfg, ops, &limits[run_i]);
        cli_check_plan(&cfg, ops, &limits[run_i]);
    }

    cJSON *runs = cJSON_CreateArray();
    char device[256] = "unknown";
    printf("%-20s %-13s %7s %10s %10s %11s %11s %10s %10s %10s\n", "model", "kv", "context",
           "ttft_ms", "tpot_ms", "prefill_t/s", "decode_t/s", "kv_MB", "arena_MB", "device_MB");
    for (int run_i = 0; run_i < n_models * n_methods; run_i++) {
        const int k = run_i / n_methods;
        const char *method = methods[run_i % n_methods];
        const rk_limits lim = limits[run_i];
        rk_model *m;
        fprintf(stderr, "[bench] loading %s (kv %s)\n", models[k], method);
        if (rk_model_load(models[k], ops, &lim, &m) != RK_OK)
            cli_die();
        rk_model_print_plan(m, stderr);
        ops->device_name(m->ctx, device, sizeof device);
        int32_t *prompt = malloc((size_t)longest * sizeof *prompt);
        if (!prompt)
            cli_die();
        for (int i = 0; i < longest; i++)
            prompt[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab);
        for (int p = 0; p < n_prompts; p++) {
            const int n = prompts[p];
            char label[320];
            cli_fmt(label, sizeof label, "[bench] %s prompt %d", cli_base_name(models[k]), n);
            double t_first, t_tok;
            harness_time(m, prompt, n, new_tokens, repeats, label, &t_first, &t_tok);
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            double arena_mb = m->plan.total / 1048576.0, weights_mb = m->wplan.total / 1048576.0;
            /* What the device itself reports: its memory in use now less what
             * was in use before the weights and arena were allocated. */
            double device_mb = ops->device_used_bytes
                                   ? (double)(ops->device_used_bytes(m->ctx) -
                                              m->device_used_before) / 1048576.0
                                   : 0.0;
            char device_col[32] = "-";
            if (ops->device_used_bytes)
                cli_fmt(device_col, sizeof device_col, "%.1f", device_mb);
            const double kv_mb = (double)m->kv_bytes / 1048576.0;
            printf("%-20s %-13s %7d %10.2f %10.3f %11.1f %11.1f %10.1f %10.1f %10s\n",
                   cli_base_name(models[k]), method, n, 1e3 * t_first, 1e3 * t_tok, n / t_first,
                   t_tok > 0 ? 1.0 / t_tok : 0.0, kv_mb, arena_mb, device_col);

            cJSON *run = cJSON_CreateObject();
            cJSON_AddStringToObject(run, "model", cli_base_name(models[k]));
            cJSON_AddNumberToObject(run, "layers", m->cfg.n_layers);
            cJSON_AddNumberToObject(run, "hidden", m->cfg.hidden);
            cJSON_AddNumberToObject(run, "prompt_tokens", n);
            cJSON_AddNumberToObject(run, "new_tokens", new_tokens);
            cJSON_AddNumberToObject(run, "context", n);
            cJSON_AddNumberToObject(run, "prefill_chunk", lim.prefill_chunk);
            cJSON_AddStringToObject(run, "kv_method", method);
            if (lim.kv.method != RK_KV_FULL)
                cJSON_AddNumberToObject(run, "kv_budget", lim.kv.average);
            cJSON_AddNumberToObject(run, "kv_cache_mb", kv_mb);
            cJSON_AddNumberToObject(run, "ttft_ms", 1e3 * t_first);
            cJSON_AddNumberToObject(run, "tpot_ms", 1e3 * t_tok);
            cJSON_AddNumberToObject(run, "prefill_tok_s", n / t_first);
            cJSON_AddNumberToObject(run, "decode_tok_s", t_tok > 0 ? 1.0 / t_tok : 0.0);
            cJSON_AddNumberToObject(run, "weights_mb", weights_mb);
            cJSON_AddNumberToObject(run, "arena_mb", arena_mb);
            if (ops->device_used_bytes) {
                cJSON_AddNumberToObject(run, "peak_device_mb", device_mb);
                cJSON_AddNumberToObject(run, "device_process_mb",
                                        ops->device_used_bytes(m->ctx) / 1048576.0);
            }
            cJSON_AddNumberToObject(run, "peak_rss_mb", ru.ru_maxrss / 1024.0);
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

    cJSON *record = cli_record_new(argc, argv, NULL, device, ops->name);
    cJSON_AddItemToObject(record, "runs", runs);
    if (out)
        cli_write_json(out, record);
    cJSON_Delete(record);
    free(methods[0]);
    return 0;
}
