/* rankkv-eval: perplexity under the conditions of KV-cache compression. Each
 * window of C tokens is prefilled up to C - T, then its last T tokens are
 * teacher-forced one at a time through the decode step, and their NLL is
 * scored: the cache the decode steps read is the one a compression method
 * leaves behind after prefill. */
#include <cjson/cJSON.h>
#include <getopt.h>
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
    "and only the text they need is tokenized. One row per dataset x method x\n"
    "budget.\n"
    "\n"
    "  --model DIR          model directory (default: " RK_DEFAULT_MODEL ")\n"
    "  --dataset NAME=PATH  a dataset (repeatable, up to 8)\n"
    "  --context C          window length (default 2048)\n"
    "  --tail T             scored tokens at the end of each window (default 256)\n"
    "  --max-windows N      windows per dataset (default 16)\n"
    "  --method LIST        comma-separated KV methods: " RK_KV_METHODS "\n"
    "                       (default full)\n"
    "  --budget LIST        comma-separated average budgets (default 128,256,512,1024);\n"
    "                       the full cache runs once, and the rows after it get their\n"
    "                       NLL difference from it on the same windows\n"
    CLI_KV_HELP
    "  --target cpu|cuda    where to run (default cpu)\n"
    "  --json FILE          also write the results as JSON ('-': standard output,\n"
    "                       after the table)\n"
    "  -h, --help           this text\n"
    "Progress goes to stderr; the table to stdout.\n";

enum { MAX_DATASETS = 8, MAX_LIST = 16 };

int main(int argc, char **argv)
{
    cli_init("rankkv-eval");
    const char *model = RK_DEFAULT_MODEL, *target = "cpu", *json_path = NULL;
    const char *method_arg = "full", *budget_arg = "128,256,512,1024";
    int context = 2048, tail = 256, max_windows = 16, n_sets = 0;
    harness_dataset sets[MAX_DATASETS];
    cli_kv kv = {0};
    enum { MODEL = 256, DATASET, CONTEXT, TAIL, MAXW, METHOD, BUDGET, TARGET, JSON };
    static const struct option longopts[] = {{"model", required_argument, 0, MODEL},
                                             {"dataset", required_argument, 0, DATASET},
                                             {"context", required_argument, 0, CONTEXT},
                                             {"tail", required_argument, 0, TAIL},
                                             {"max-windows", required_argument, 0, MAXW},
                                             {"method", required_argument, 0, METHOD},
                                             {"budget", required_argument, 0, BUDGET},
                                             {"target", required_argument, 0, TARGET},
                                             {"json", required_argument, 0, JSON},
                                             {"help", no_argument, 0, 'h'},
                                             CLI_KV_LONGOPTS,
                                             {0, 0, 0, 0}};
    int c;
    while ((c = cli_getopt(argc, argv, longopts)) != -1) {
        switch (c) {
        case MODEL: model = optarg; break;
        case DATASET:
            if (n_sets == MAX_DATASETS)
                cli_usage_error("at most %d datasets", MAX_DATASETS);
            sets[n_sets++] = harness_dataset_arg(optarg);
            break;
        case CONTEXT: context = (int)cli_int("--context", optarg, 2, 1 << 20); break;
        case TAIL: tail = (int)cli_int("--tail", optarg, 1, 1 << 20); break;
        case MAXW: max_windows = (int)cli_int("--max-windows", optarg, 1, 1 << 20); break;
        case METHOD: method_arg = optarg; break;
        case BUDGET: budget_arg = optarg; break;
        case TARGET: target = optarg; break;
        case JSON: json_path = cli_output("--json", optarg, CLI_STDOUT); break;
        case 'h': fputs(usage, stdout); return 0;
        default: cli_kv_option(&kv, c, optarg);
        }
    }
    if (optind < argc)
        cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (n_sets == 0)
        cli_usage_error("give at least one --dataset NAME=PATH");
    if (tail >= context)
        cli_usage_error("--tail %d must be shorter than --context %d", tail, context);
    if (kv.opt.method || kv.opt.average)
        cli_usage_error("rankkv-eval takes --method and --budget lists, not --kv/--kv-budget");
    char *methods[MAX_LIST], *budget_words[MAX_LIST];
    int budgets[MAX_LIST];
    const int n_methods = harness_split_list("--method", method_arg, methods, MAX_LIST);
    const int n_budgets = harness_split_list("--budget", budget_arg, budget_words, MAX_LIST);
    for (int i = 0; i < n_budgets; i++)
        budgets[i] = (int)cli_int("--budget", budget_words[i], 1, 1 << 20);
    free(budget_words[0]);
    const rk_ops *ops = cli_target(target);
    cli_check_paths(model);

    char path[4096];
    rk_config cfg;
    rk_tokenizer *tok;
    cli_model_config(model, &cfg);
    if (context > cfg.max_pos) {
        rk_fail(RK_ELIMIT, "a context of %d exceeds the model's max_position_embeddings %d",
                context, cfg.max_pos);
        cli_die();
    }
    /* Every policy is checked before the first window runs. */
    rk_limits limits[MAX_LIST * MAX_LIST];
    const char *row_method[MAX_LIST * MAX_LIST];
    int n_rows = 0;
    for (int i = 0; i < n_methods; i++)
        for (int b = 0; b < n_budgets; b++) {
            cli_kv one = kv;
            one.opt.method = methods[i];
            if (strcmp(methods[i], "full") != 0)
                one.opt.average = budgets[b];
            else if (b > 0)
                break;
            row_method[n_rows] = methods[i];
            limits[n_rows] = (rk_limits){.max_prompt = context - tail, .max_new_tokens = tail,
                                         .prefill_chunk = context - tail, .logits_rows = 1,
                                         .kv_dtype = ops->kv_dtype};
            cli_kv_limits(&one, model, &cfg, ops, &limits[n_rows]);
            cli_check_plan(&cfg, ops, &limits[n_rows++]);
        }
    cli_fmt(path, sizeof path, "%s/tokenizer.json", model);
    if (rk_tok_load(path, &tok) != RK_OK || rk_tok_check_vocab(tok, cfg.vocab) != RK_OK)
        cli_die();
    double *row_nll = malloc((size_t)max_windows * sizeof(double));
    if (!row_nll) {
        rk_fail(RK_ENOMEM, "out of memory for %d windows", max_windows);
        cli_die();
    }
    for (int s = 0; s < n_sets; s++)
        harness_load_windows(tok, &sets[s], context, max_windows);

    cJSON *results = cJSON_CreateArray();
    char device[256] = "";
    /* dNLL: mean NLL per token minus the full cache's on the same windows,
     * with its standard error over windows. */
    printf("%-12s %-13s %7s %8s %8s %9s %17s %9s %9s %9s\n", "dataset", "method", "budget",
           "windows", "tokens", "ppl", "dNLL_vs_full", "kv_MB", "ttft_ms", "tpot_ms");
    for (int r = 0; r < n_rows; r++) {
        rk_model *m;
        if (rk_model_load(model, ops, &limits[r], &m) != RK_OK)
            cli_die();
        const rk_kv_policy *pol = &m->lim.kv;
        ops->device_name(m->ctx, device, sizeof device);
        const double kv_mb = (double)m->kv_bytes / 1048576.0;
        char label[160];
        cli_fmt(label, sizeof label, "[eval %d/%d] %s %d", r + 1, n_rows, row_method[r],
                pol->average);
        for (int s = 0; s < n_sets; s++) {
            harness_row row;
            harness_run_dataset(m, &sets[s], context, tail, label, row_nll, &row);
            const harness_tally t = row.t;
            const double ppl = exp(t.nll / t.scored), ttft = 1e3 * t.prefill_s / t.windows,
                         tpot = 1e3 * t.decode_s / (t.steps ? t.steps : 1);
            cli_str dcol = {0};
            if (row.have_diff)
                cli_str_add(&dcol, "%+.4f±%.4f", row.d_mean, row.d_se);
            printf("%-12s %-13s %7d %8ld %8ld %9.4f %17s %9.3f %9.2f %9.3f\n", sets[s].name,
                   row_method[r], pol->average, t.windows, t.scored, ppl,
                   row.have_diff ? dcol.s : "-", kv_mb, ttft, tpot);
            cli_str_free(&dcol);
            fflush(stdout);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "dataset", sets[s].name);
            cJSON_AddStringToObject(o, "method", row_method[r]);
            cJSON_AddNumberToObject(o, "budget", pol->average);
            if (pol->method != RK_KV_FULL && !pol->dynamic)
                cJSON_AddItemToObject(o, "layer_budgets",
                                      cJSON_CreateIntArray(pol->budget, cfg.n_layers));
            if (pol->dynamic) {
                cJSON *mean = cJSON_AddArrayToObject(o, "mean_layer_budgets");
                for (int l = 0; l < cfg.n_layers; l++)
                    cJSON_AddItemToArray(mean, cJSON_CreateNumber(row.mean_budget[l]));
            }
            cJSON_AddNumberToObject(o, "ppl", ppl);
            cJSON_AddNumberToObject(o, "mean_nll", t.nll / t.scored);
            if (row.have_diff) {
                cJSON_AddNumberToObject(o, "nll_minus_full", row.d_mean);
                cJSON_AddNumberToObject(o, "nll_minus_full_se", row.d_se);
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
        cJSON *j = cli_record_new(argc, argv, cli_base_name(model), device, ops->name);
        cJSON_AddNumberToObject(j, "context", context);
        cJSON_AddNumberToObject(j, "tail", tail);
        cJSON_AddItemToObject(j, "results", results);
        cli_write_json(json_path, j);
        cJSON_Delete(j);
    } else {
        cJSON_Delete(results);
    }
    for (int s = 0; s < n_sets; s++) {
        free(sets[s].windows);
        free(sets[s].full_nll);
        free((char *)sets[s].name);
    }
    free(row_nll);
    free(methods[0]);
    rk_tok_free(tok);
    return 0;
}
