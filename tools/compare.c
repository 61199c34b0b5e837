/* rankkv-compare: the static-vs-dynamic bench. Every row runs on the same
 * inputs: the full cache, uniform SnapKV, PyramidKV, RankKV with the
 * compiled profile's budgets, RankKV with budgets from each prompt's own
 * ranks (dynamic builds), and the random/inverse ablations, at each average
 * budget. Columns: perplexity through the compression harness per dataset,
 * TTFT, TPOT, throughput, KV cache and peak memory. Markdown + JSON. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "harness.h"
#include "model.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

#ifdef RANKKV_DYNAMIC
#define DEFAULT_ROWS "full,snapkv,pyramidkv,rankkv,rankkv-dynamic,rankkv-random,rankkv-inverse"
#else
#define DEFAULT_ROWS "full,snapkv,pyramidkv,rankkv,rankkv-random,rankkv-inverse"
#endif

static const char usage[] =
    "usage: rankkv-compare --model DIR [--dataset NAME=PATH ...] [options]\n"
    "Static RankKV (budgets compiled in from profiles/) against dynamic RankKV\n"
    "(budgets from each prompt's measured ranks), the baselines and the ablations,\n"
    "on the same windows and prompts. Perplexity: each C-token window prefilled up\n"
    "to its last T tokens, which are scored one decode step at a time (as\n"
    "rankkv-eval). Timing: greedy generation after the first window's prompt (a\n"
    "synthetic one without datasets), medians over repeats after a warm-up.\n"
    "\n"
    "  --model DIR          model directory (default: " RK_DEFAULT_MODEL ")\n"
    "  --dataset NAME=PATH  perplexity dataset, a file or a directory of .txt\n"
    "                       (repeatable, up to 8; none: timing only)\n"
    "  --rows LIST          comma-separated rows (default " DEFAULT_ROWS ");\n"
    "                       full, snapkv, pyramidkv, h2o, streamingllm, rankkv,\n"
    "                       rankkv-dynamic, or rankkv-<strategy> (" RK_RANK_STRATEGIES ")\n"
    "  --budget LIST        average budgets (default 256,512,1024)\n"
    "  --context C          window length (default 2048)\n"
    "  --tail T             scored tokens per window (default 256)\n"
    "  --max-windows N      windows per dataset (default 16)\n"
    "  --prompt-tokens N    timing prompt (default C - T)\n"
    "  --new-tokens N       timed generated tokens (default 128)\n"
    "  --repeats N          timed runs per row (default 3)\n"
    "  --target cpu|cuda    where to run (default cpu)\n"
    "  --json FILE          results as JSON (device, commit, command, rows)\n"
    "  --markdown FILE      the table as markdown\n"
    "                       ('-' for either: standard output, after the table)\n"
    "  -h, --help           this text\n"
    "KV tuning options of every tool (--kv-window, --rank-temperature, ...) apply to\n"
    "every row; --kv and --kv-budget are --rows and --budget here.\n";

enum { MAX_DATASETS = 8, MAX_ROWS = 16, MAX_BUDGETS = 8 };

typedef struct {
    const char *name;
    const char *label;
    double ppl[MAX_DATASETS], dnll[MAX_DATASETS], dnll_se[MAX_DATASETS];
    int have_dnll[MAX_DATASETS];
    double ttft_ms, tpot_ms, prefill_tok_s, decode_tok_s, kv_mb, kv_used_mb, peak_mb;
    double mean_budget[RK_MAX_LAYERS];
    int budget, full;
} row_result;

/* Maps a row name to the options of the tool's policy. */
static void row_options(const char *row, const cli_kv *base, int budget, cli_kv *out)
{
    *out = *base;
    out->opt.average = strcmp(row, "full") == 0 ? 0 : budget;
    if (strncmp(row, "rankkv-", 7) == 0 && strcmp(row, "rankkv-dynamic") != 0) {
        out->opt.method = "rankkv";
        if (rk_rank_strategy_parse(row + 7, &out->opt.rank.strategy) != RK_OK)
            cli_usage_error("--rows: %s", rk_last_error());
    } else {
        out->opt.method = row;
    }
}

/* KV bytes the rows in use take: a dynamic policy reserves the whole prompt
 * per layer but fills only its budgets. */
static double used_kv_mb(const rk_model *m, int prompt)
{
    const rk_kv_policy *kv = &m->lim.kv;
    if (kv->method == RK_KV_FULL)
        return (double)m->kv_bytes / 1048576.0;
    double rows = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const int keep = kv->budget[l] < prompt ? kv->budget[l] : prompt;
        rows += rk_kv_evicts(kv->method) ? m->layer_cap[l] : keep + m->lim.max_new_tokens;
    }
    return 2.0 * rows * m->cfg.hidden * rk_dtype_size(m->lim.kv_dtype) / 1048576.0;
}

int main(int argc, char **argv)
{
    cli_init("rankkv-compare");
    const char *model = RK_DEFAULT_MODEL, *target = "cpu", *json_path = NULL, *md_path = NULL;
    const char *rows_arg = DEFAULT_ROWS, *budget_arg = "256,512,1024";
    int context = 2048, tail = 256, max_windows = 16, prompt_tokens = 0, new_tokens = 128;
    int repeats = 3, n_sets = 0;
    harness_dataset sets[MAX_DATASETS];
    cli_kv kv = {0};
    enum { MODEL = 256, DATASET, ROWS, BUDGET, CONTEXT, TAIL, MAXW, PROMPT, NEW, REPEATS, TARGET,
           JSON, MD };
    static const struct option longopts[] = {{"model", required_argument, 0, MODEL},
                                             {"dataset", required_argument, 0, DATASET},
                                             {"rows", required_argument, 0, ROWS},
                                             {"budget", required_argument, 0, BUDGET},
                                             {"context", required_argument, 0, CONTEXT},
                                             {"tail", required_argument, 0, TAIL},
                                             {"max-windows", required_argument, 0, MAXW},
                                             {"prompt-tokens", required_argument, 0, PROMPT},
                                             {"new-tokens", required_argument, 0, NEW},
                                             {"repeats", required_argument, 0, REPEATS},
                                             {"target", required_argument, 0, TARGET},
                                             {"json", required_argument, 0, JSON},
                                             {"markdown", required_argument, 0, MD},
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
        case ROWS: rows_arg = optarg; break;
        case BUDGET: budget_arg = optarg; break;
        case CONTEXT: context = (int)cli_int("--context", optarg, 2, 1 << 20); break;
        case TAIL: tail = (int)cli_int("--tail", optarg, 1, 1 << 20); break;
        case MAXW: max_windows = (int)cli_int("--max-windows", optarg, 1, 1 << 20); break;
        case PROMPT: prompt_tokens = (int)cli_int("--prompt-tokens", optarg, 1, 1 << 20); break;
        case NEW: new_tokens = (int)cli_int("--new-tokens", optarg, 2, 1 << 20); break;
        case REPEATS: repeats = (int)cli_int("--repeats", optarg, 1, HARNESS_MAX_REPEATS); break;
        case TARGET: target = optarg; break;
        case JSON: json_path = cli_output("--json", optarg, CLI_STDOUT); break;
        case MD: md_path = cli_output("--markdown", optarg, CLI_STDOUT); break;
        case 'h': fputs(usage, stdout); return 0;
        default: cli_kv_option(&kv, c, optarg);
        }
    }
    if (optind < argc)
        cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (kv.opt.method || kv.opt.average)
        cli_usage_error("rankkv-compare takes --rows and --budget lists, not --kv/--kv-budget");
    if (tail >= context)
        cli_usage_error("--tail %d must be shorter than --context %d", tail, context);
    char *row_names[MAX_ROWS], *budget_words[MAX_BUDGETS];
    int budgets[MAX_BUDGETS];
    const int n_row_names = harness_split_list("--rows", rows_arg, row_names, MAX_ROWS);
    const int n_budgets = harness_split_list("--budget", budget_arg, budget_words, MAX_BUDGETS);
    for (int i = 0; i < n_budgets; i++)
        budgets[i] = (int)cli_int("--budget", budget_words[i], 1, 1 << 20);
    free(budget_words[0]);
    const rk_ops *ops = cli_target(target);
    cli_check_paths(model);
    char path[4096];
    rk_config cfg;
    cli_model_config(model, &cfg);
    const int eval_prompt = context - tail;
    if (!prompt_tokens)
        prompt_tokens = eval_prompt;
    const int max_prompt = eval_prompt > prompt_tokens ? eval_prompt : prompt_tokens;
    const int max_new = tail > new_tokens ? tail : new_tokens;
    if (max_prompt + max_new > cfg.max_pos)
        cli_usage_error("prompt %d + new %d exceed the model's %d positions", max_prompt, max_new,
                        cfg.max_pos);

    /* Every row's limits are made, and so checked, before anything runs. */
    static rk_limits limits[MAX_ROWS * MAX_BUDGETS];
    static row_result res[MAX_ROWS * MAX_BUDGETS];
    int n_rows = 0;
    for (int i = 0; i < n_row_names; i++)
        for (int b = 0; b < n_budgets; b++) {
            const int full = strcmp(row_names[i], "full") == 0;
            if (full && b > 0)
                break;
            cli_kv one;
            row_options(row_names[i], &kv, budgets[b], &one);
            limits[n_rows] = (rk_limits){.max_prompt = max_prompt, .max_new_tokens = max_new,
                                         .prefill_chunk = max_prompt, .logits_rows = 1,
                                         .kv_dtype = ops->kv_dtype};
            cli_kv_limits(&one, model, &cfg, ops, &limits[n_rows]);
            cli_check_plan(&cfg, ops, &limits[n_rows]);
            res[n_rows].name = row_names[i];
            res[n_rows].budget = full ? 0 : budgets[b];
            res[n_rows].full = full;
            n_rows++;
        }

    rk_tokenizer *tok = NULL;
    if (n_sets) {
        cli_fmt(path, sizeof path, "%s/tokenizer.json", model);
        if (rk_tok_load(path, &tok) != RK_OK || rk_tok_check_vocab(tok, cfg.vocab) != RK_OK)
            cli_die();
    }
    for (int s = 0; s < n_sets; s++)
        harness_load_windows(tok, &sets[s], context, max_windows);
    int32_t *prompt = malloc((size_t)max_prompt * sizeof *prompt);
    double *row_nll = malloc((size_t)max_windows * sizeof *row_nll);
    if (!prompt || !row_nll)
        cli_die();
    /* Real text where there is some, so that dynamic ranks are a real
     * prompt's; the timing prompt is the first window's start. */
    for (int i = 0; i < max_prompt; i++)
        prompt[i] = n_sets && i < context ? sets[0].windows[i]
                                          : (int32_t)((i * 7919 + 13) % cfg.vocab);
    char device[256] = "";

    for (int r = 0; r < n_rows; r++) {
        row_result *o = &res[r];
        rk_model *m;
        fprintf(stderr, "[compare %d/%d] %s %d: loading\n", r + 1, n_rows, o->name, o->budget);
        if (rk_model_load(model, ops, &limits[r], &m) != RK_OK)
            cli_die();
        ops->device_name(m->ctx, device, sizeof device);
        char label[128];
        cli_fmt(label, sizeof label, "[compare %d/%d] %.63s %d", r + 1, n_rows, o->name,
                o->budget);
        for (int s = 0; s < n_sets; s++) {
            harness_row row;
            harness_run_dataset(m, &sets[s], context, tail, label, row_nll, &row);
            o->ppl[s] = exp(row.t.nll / row.t.scored);
            o->have_dnll[s] = row.have_diff;
            o->dnll[s] = row.d_mean;
            o->dnll_se[s] = row.d_se;
            if (s == 0)
                memcpy(o->mean_budget, row.mean_budget, sizeof o->mean_budget);
        }
        double t_first, t_tok;
        harness_time(m, prompt, prompt_tokens, new_tokens, repeats, label, &t_first, &t_tok);
        o->ttft_ms = 1e3 * t_first;
        o->tpot_ms = 1e3 * t_tok;
        o->prefill_tok_s = prompt_tokens / t_first;
        o->decode_tok_s = t_tok > 0 ? 1.0 / t_tok : 0;
        o->kv_mb = (double)m->kv_bytes / 1048576.0;
        o->kv_used_mb = used_kv_mb(m, prompt_tokens);
        if (n_sets == 0)
            for (int l = 0; l < cfg.n_layers; l++)
                o->mean_budget[l] = m->lim.kv.budget[l];
        /* Peak memory: what the device reports in use by the model, or on
         * the CPU the planned weights + arena (all of it, allocated once). */
        o->peak_mb = ops->device_used_bytes
                         ? (double)(ops->device_used_bytes(m->ctx) - m->device_used_before) /
                               1048576.0
                         : (double)(m->wplan.total + m->plan.total) / 1048576.0;
        o->label = rk_kv_policy_name(&m->lim.kv);
        rk_model_free(m);
    }

    /* The table: stdout, and the same lines as markdown, written whole at
     * the end when asked. */
    cli_str line = {0}, md = {0};
    cli_str_add(&line, "| row | budget |");
    for (int s = 0; s < n_sets; s++)
        cli_str_add(&line, " %s PPL | dNLL vs full |", sets[s].name);
    cli_str_add(&line,
                " TTFT ms | TPOT ms | prefill tok/s | decode tok/s | KV MB (used) | peak MB |");
    printf("%s\n", line.s);
    cli_str_add(&md, "%s\n|---|---|", line.s);
    for (int s = 0; s < n_sets; s++)
        cli_str_add(&md, "---|---|");
    cli_str_add(&md, "---|---|---|---|---|---|\n");
    for (int r = 0; r < n_rows; r++) {
        const row_result *o = &res[r];
        cli_str_clear(&line);
        if (o->full)
            cli_str_add(&line, "| %s | - |", o->name);
        else
            cli_str_add(&line, "| %s | %d |", o->name, o->budget);
        for (int s = 0; s < n_sets; s++) {
            cli_str_add(&line, " %.3f |", o->ppl[s]);
            if (o->have_dnll[s])
                cli_str_add(&line, " %+.4f ± %.4f |", o->dnll[s], o->dnll_se[s]);
            else
                cli_str_add(&line, " - |");
        }
        cli_str_add(&line, " %.2f | %.3f | %.0f | %.1f | %.1f (%.1f) | %.0f |", o->ttft_ms,
                    o->tpot_ms, o->prefill_tok_s, o->decode_tok_s, o->kv_mb, o->kv_used_mb,
                    o->peak_mb);
        printf("%s\n", line.s);
        cli_str_add(&md, "%s\n", line.s);
    }
    if (md_path) {
        FILE *f = cli_out_open(md_path);
        fputs(md.s, f);
        cli_out_close(f);
    }
    cli_str_free(&line);
    cli_str_free(&md);

    if (json_path) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        cJSON *j = cli_record_new(argc, argv, cli_base_name(model), device, ops->name);
        cJSON_AddNumberToObject(j, "context", context);
        cJSON_AddNumberToObject(j, "tail", tail);
        cJSON_AddNumberToObject(j, "timing_prompt_tokens", prompt_tokens);
        cJSON_AddNumberToObject(j, "timing_new_tokens", new_tokens);
        cJSON_AddNumberToObject(j, "repeats", repeats);
        cJSON_AddNumberToObject(j, "peak_rss_mb", ru.ru_maxrss / 1024.0);
        cJSON *datasets = cJSON_AddArrayToObject(j, "datasets");
        for (int s = 0; s < n_sets; s++) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "name", sets[s].name);
            cJSON_AddStringToObject(d, "path", sets[s].path);
            cJSON_AddNumberToObject(d, "windows", sets[s].n_windows);
            cJSON_AddItemToArray(datasets, d);
        }
        cJSON *rows = cJSON_AddArrayToObject(j, "rows");
        for (int r = 0; r < n_rows; r++) {
            const row_result *o = &res[r];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "row", o->name);
            cJSON_AddStringToObject(x, "policy", o->label);
            if (!o->full) {
                cJSON_AddNumberToObject(x, "budget", o->budget);
                cJSON *mb = cJSON_AddArrayToObject(x, "mean_layer_budgets");
                for (int l = 0; l < cfg.n_layers; l++)
                    cJSON_AddItemToArray(mb, cJSON_CreateNumber(o->mean_budget[l]));
            }
            cli_str key = {0};
            for (int s = 0; s < n_sets; s++) {
                cli_str_clear(&key);
                cli_str_add(&key, "%s_ppl", sets[s].name);
                cJSON_AddNumberToObject(x, key.s, o->ppl[s]);
                if (o->have_dnll[s]) {
                    cli_str_clear(&key);
                    cli_str_add(&key, "%s_nll_minus_full", sets[s].name);
                    cJSON_AddNumberToObject(x, key.s, o->dnll[s]);
                    cli_str_clear(&key);
                    cli_str_add(&key, "%s_nll_minus_full_se", sets[s].name);
                    cJSON_AddNumberToObject(x, key.s, o->dnll_se[s]);
                }
            }
            cli_str_free(&key);
            cJSON_AddNumberToObject(x, "ttft_ms", o->ttft_ms);
            cJSON_AddNumberToObject(x, "tpot_ms", o->tpot_ms);
            cJSON_AddNumberToObject(x, "prefill_tok_s", o->prefill_tok_s);
            cJSON_AddNumberToObject(x, "decode_tok_s", o->decode_tok_s);
            cJSON_AddNumberToObject(x, "kv_cache_mb", o->kv_mb);
            cJSON_AddNumberToObject(x, "kv_used_mb", o->kv_used_mb);
            cJSON_AddNumberToObject(x, "peak_mb", o->peak_mb);
            cJSON_AddItemToArray(rows, x);
        }
        cli_write_json(json_path, j);
        cJSON_Delete(j);
    }
    for (int s = 0; s < n_sets; s++) {
        free(sets[s].windows);
        free(sets[s].full_nll);
        free((char *)sets[s].name);
    }
    free(prompt);
    free(row_nll);
    free(row_names[0]);
    if (tok)
        rk_tok_free(tok);
    return 0;
}
