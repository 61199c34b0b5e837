/* rankkv-compare: the static-vs-dynamic bench. Every row runs on the same
 * inputs: the full cache, uniform SnapKV, PyramidKV, RankKV with the
 * compiled profile's budgets (over SnapKV's uniform allocation: rankkv;
 * over PyramidKV's schedule: pyramidkv-rankkv), RankKV with budgets from
 * each prompt's own ranks (dynamic builds), and the random/inverse
 * ablations of both, at each average budget. Columns: perplexity through
 * the compression harness per dataset, TTFT, TPOT, throughput, GFLOPs
 * (core/flops.h), KV cache and peak memory. Markdown (this tool's rows, or
 * the published table's layout) + JSON, and a gnuplot PNG. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "flops.h"
#include "harness.h"
#include "model.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

#define ABLATION_ROWS                                                                         \
    "rankkv-random,rankkv-inverse,pyramidkv-rankkv-random,pyramidkv-rankkv-inverse"
#ifdef RANKKV_DYNAMIC
#define DEFAULT_ROWS                                                                          \
    "full,snapkv,pyramidkv,rankkv,rankkv-dynamic,pyramidkv-rankkv," ABLATION_ROWS
#else
#define DEFAULT_ROWS "full,snapkv,pyramidkv,rankkv,pyramidkv-rankkv," ABLATION_ROWS
#endif

static const char usage[] =
    "usage: rankkv-compare --model DIR [--dataset NAME=PATH ...] [options]\n"
    "Static RankKV (budgets compiled in from profiles/) against dynamic RankKV\n"
    "(budgets from each prompt's measured ranks), the baselines and the ablations,\n"
    "on the same windows and prompts. Perplexity: each C-token window prefilled up\n"
    "to its last T tokens, which are scored one decode step at a time (as\n"
    "rankkv-eval). Timing: greedy generation after the first window's prompt (a\n"
    "synthetic one without datasets), medians over repeats after a warm-up (--json's\n"
    "record also keeps each timed run: ttft_ms_runs, tpot_ms_runs).\n"
    "\n";

enum { MAX_ROWS = 16, MAX_BUDGETS = 8 };

typedef struct {
    const char *name;
    const char *label;
    double ppl[HARNESS_MAX_DATASETS], dnll[HARNESS_MAX_DATASETS], dnll_se[HARNESS_MAX_DATASETS];
    int have_dnll[HARNESS_MAX_DATASETS];
    harness_timing t;
    rk_flops flops; /* of one timed generation */
    double kv_mb, kv_used_mb, peak_mb;
    double mean_budget[RK_MAX_LAYERS];
    int budget, full;
    const char *dtype;     /* how its KV cache stores rows */
    const char *precision; /* and at how many bits per layer (kv_precision.h) */
} row_result;

/* The row's storage as the tables name it: the dtype, and rank after it
 * where the bits vary by layer. */
static void add_storage(cli_str *s, const row_result *o)
{
    cli_str_add(s, "%s%s", o->dtype, strcmp(o->precision, "uniform") == 0 ? "" : " rank");
}

/* The policies whose rows may name a rank strategy: POLICY-STRATEGY. */
static const char *const ranked[] = {"rankkv", "pyramidkv-rankkv"};

/* Maps a row name to the options of the tool's policy. */
static void row_options(const char *row, const cli_kv *base, int budget, cli_kv *out)
{
    *out = *base;
    out->opt.average = strcmp(row, "full") == 0 ? 0 : budget;
    out->opt.method = row;
    if (strcmp(row, "rankkv-dynamic") == 0)
        return;
    for (size_t i = 0; i < sizeof ranked / sizeof ranked[0]; i++) {
        const size_t len = strlen(ranked[i]);
        if (strncmp(row, ranked[i], len) == 0 && row[len] == '-') {
            out->opt.method = ranked[i];
            if (rk_rank_strategy_parse(row + len + 1, &out->opt.rank.strategy) != RK_OK)
                cli_usage_error("--rows: %s", rk_last_error());
        }
    }
}

/* Where a row goes in the published table's layout: its method, its
 * allocation, and whether it is an ablation; 0 for a row that table has
 * no place for (it stays in the JSON). */
typedef struct {
    const char *row, *method, *allocation;
    int ablation;
} seed_place;

static const seed_place seed_places[] = {
    {"full", "Full KV", "-", 0},
    {"snapkv", "SnapKV", "original", 0},
    {"rankkv", "SnapKV", "RankKV", 0},
    {"pyramidkv", "PyramidKV", "original", 0},
    {"pyramidkv-rankkv", "PyramidKV", "RankKV", 0},
    {"rankkv-random", "SnapKV", "random", 1},
    {"rankkv-inverse", "SnapKV", "inverse", 1},
    {"pyramidkv-rankkv-random", "PyramidKV", "random", 1},
    {"pyramidkv-rankkv-inverse", "PyramidKV", "inverse", 1},
};

static const seed_place *seed_place_of(const char *row)
{
    for (size_t i = 0; i < sizeof seed_places / sizeof seed_places[0]; i++)
        if (strcmp(seed_places[i].row, row) == 0)
            return &seed_places[i];
    return NULL;
}

/* The published table's ablations are at these budgets. */
static const int seed_ablation_budgets[] = {256, 512};

/* What the plot's script draws: the data file's blocks, one per row name. */
typedef struct {
    const char *dat, *model;
    const harness_datasets *sets;
    const char *const *names;
    int n_names;
} plot_text;

/* One panel: column COL of every block against the budget. */
static void plot_panel(FILE *f, const plot_text *t, const char *title, const char *ylabel,
                       int col)
{
    fputs("set title ", f);
    cli_gp_string(f, title);
    fputs("\nset ylabel ", f);
    cli_gp_string(f, ylabel);
    fprintf(f, "\nplot for [i=0:%d] ", t->n_names - 1);
    cli_gp_string(f, t->dat);
    fprintf(f,
            " index i using 1:%d with linespoints lw 2 lt (i + 1) pt ((i %% 7) + 1) "
            "title word(names, i + 1)\n",
            col);
}

/* PPL and dNLL against budget per dataset, then TPOT and KV MB, one row of
 * two panels each. */
static void plot_script(FILE *f, const char *png, const void *arg)
{
    const plot_text *t = arg;
    const int n = t->sets->n;
    fprintf(f, "set terminal pngcairo size 1200,%d noenhanced\nset output ", 380 * (n + 1));
    cli_gp_string(f, png);
    cli_str s = {0};
    for (int i = 0; i < t->n_names; i++)
        cli_str_add(&s, "%s%s", i ? " " : "", t->names[i]);
    fputs("\nnames = ", f);
    cli_gp_string(f, s.s);
    fputs("\nset multiplot layout ", f);
    fprintf(f, "%d,2 title ", n + 1);
    cli_str_clear(&s);
    cli_str_add(&s, "rankkv-compare: %s", t->model);
    cli_gp_string(f, s.s);
    /* gnuplot has 8 line colours: rows past them are their colours dashed,
     * so no two rows look alike. */
    fputs("\nset xlabel 'average budget (positions per layer)'\nset logscale x 2\n"
          "set grid\nset key outside right font ',9'\n"
          "do for [j=1:8] { set linetype j + 8 lc j dt 2 }\n",
          f);
    for (int d = 0; d < n; d++) {
        cli_str_clear(&s);
        cli_str_add(&s, "%s: perplexity", t->sets->set[d].name);
        plot_panel(f, t, s.s, "PPL", 2 + 2 * d);
        cli_str_clear(&s);
        cli_str_add(&s, "%s: NLL per token minus the full cache's", t->sets->set[d].name);
        plot_panel(f, t, s.s, "dNLL (nats)", 3 + 2 * d);
    }
    plot_panel(f, t, "time per output token", "TPOT (ms)", 2 + 2 * n);
    plot_panel(f, t, "KV cache after the timing prompt", "KV MB", 3 + 2 * n);
    fputs("unset multiplot\n", f);
    cli_str_free(&s);
}

/* The plot's data: a block per row name (the full cache's a level line
 * across the budgets) of budget, PPL and dNLL per dataset, TPOT, KV MB. */
static void plot(const cli_plot_paths *paths, const char *model, const harness_datasets *sets,
                 const row_result *res, int n_rows, const cli_ints *budgets)
{
    const char *names[MAX_ROWS];
    int n_names = 0;
    FILE *f = cli_out_open(paths->dat);
    fputs("# budget", f);
    for (int d = 0; d < sets->n; d++)
        fprintf(f, " %s_ppl %s_dnll", sets->set[d].name, sets->set[d].name);
    fputs(" tpot_ms kv_used_mb\n", f);
    int lo = budgets->v[0], hi = budgets->v[0];
    for (int b = 1; b < budgets->n; b++) {
        lo = budgets->v[b] < lo ? budgets->v[b] : lo;
        hi = budgets->v[b] > hi ? budgets->v[b] : hi;
    }
    for (int r = 0; r < n_rows; r++) {
        if (r > 0 && strcmp(res[r].name, res[r - 1].name) == 0)
            continue;
        fprintf(f, "%s# %s\n", n_names ? "\n\n" : "", res[r].name);
        names[n_names++] = res[r].name;
        for (int q = r; q < n_rows && strcmp(res[q].name, res[r].name) == 0; q++)
            for (int edge = 0; edge < (res[q].full ? 2 : 1); edge++) {
                fprintf(f, "%d", res[q].full ? (edge ? hi : lo) : res[q].budget);
                for (int d = 0; d < sets->n; d++)
                    fprintf(f, " %.6f %.6f", res[q].ppl[d],
                            res[q].full ? 0.0 : res[q].have_dnll[d] ? res[q].dnll[d] : NAN);
                fprintf(f, " %.6f %.6f\n", res[q].t.tpot_ms, res[q].kv_used_mb);
            }
    }
    cli_out_close(f);
    const plot_text t = {paths->dat, model, sets, names, n_names};
    cli_plot(paths, plot_script, &t);
}

/* A row's measurement cells, as both layouts print them. */
static void add_cells(cli_str *line, const row_result *o, int n_sets, int seed)
{
    for (int s = 0; s < n_sets; s++) {
        cli_str_add(line, " %.3f |", o->ppl[s]);
        if (seed)
            continue;
        if (o->have_dnll[s])
            cli_str_add(line, " %+.4f ± %.4f |", o->dnll[s], o->dnll_se[s]);
        else
            cli_str_add(line, " - |");
    }
    const double gflops = rk_flops_total(&o->flops) / 1e9;
    if (seed)
        cli_str_add(line, " %.2f | %.3f | %.1f | %.2f | %.0f | %.1f |", o->t.ttft_ms,
                    o->t.tpot_ms, o->t.e2e_tok_s, gflops, o->peak_mb, o->kv_used_mb);
    else
        cli_str_add(line, " %.2f | %.3f | %.0f | %.1f | %.1f | %.2f | %.1f (%.1f) | %.0f |",
                    o->t.ttft_ms, o->t.tpot_ms, o->t.prefill_tok_s, o->t.decode_tok_s,
                    o->t.e2e_tok_s, gflops, o->kv_mb, o->kv_used_mb, o->peak_mb);
}

/* The header of a seed-layout section. */
static void seed_header(cli_str *md, const char *title, const harness_datasets *sets)
{
    cli_str_add(md, "\n### %s\n\n| Method | Allocation | row |", title);
    for (int s = 0; s < sets->n; s++)
        cli_str_add(md, " %s PPL |", sets->set[s].name);
    cli_str_add(md, " TTFT (ms) | TPOT (ms) | Throughput (tok/s) | GFLOPs | Peak memory (MB) | "
                    "KV cache (MB) |\n|---|---|---|");
    for (int s = 0; s < sets->n; s++)
        cli_str_add(md, "---|");
    cli_str_add(md, "---|---|---|---|---|---|\n");
}

/* A seed-layout section: the rows at BUDGET (any, for the full cache)
 * that belong to it; nothing when none does. */
static void seed_section(cli_str *md, const char *title, const harness_datasets *sets,
                         const row_result *res, int n_rows, int full, int ablation, int budget)
{
    int header = 0;
    for (int r = 0; r < n_rows; r++) {
        const seed_place *p = seed_place_of(res[r].name);
        if (!p || res[r].full != full || (!full && (p->ablation != ablation ||
                                                     res[r].budget != budget)))
            continue;
        if (!header++)
            seed_header(md, title, sets);
        cli_str_add(md, "| %s | %s | %s |", p->method, p->allocation, res[r].name);
        add_cells(md, &res[r], sets->n, 1);
        cli_str_add(md, "\n");
    }
}

/* The published table's layout: a section per budget (SnapKV and PyramidKV,
 * each with its own allocation and with RankKV's), the full-cache
 * baseline, and the ablations at 256 and 512, after the KV dtype of all. */
static void seed_layout(cli_str *md, const harness_datasets *sets, const row_result *res,
                        int n_rows, const cli_ints *budgets)
{
    char title[64];
    cli_str_add(md, "KV cache rows stored as ");
    if (n_rows)
        add_storage(md, &res[0]);
    else
        cli_str_add(md, "-");
    cli_str_add(md, ".\n");
    for (int b = 0; b < budgets->n; b++) {
        cli_fmt(title, sizeof title, "Average budget %d", budgets->v[b]);
        seed_section(md, title, sets, res, n_rows, 0, 0, budgets->v[b]);
    }
    seed_section(md, "Full KV cache (baseline)", sets, res, n_rows, 1, 0, 0);
    for (size_t a = 0; a < sizeof seed_ablation_budgets / sizeof seed_ablation_budgets[0]; a++) {
        cli_fmt(title, sizeof title, "Ablation: average budget %d", seed_ablation_budgets[a]);
        seed_section(md, title, sets, res, n_rows, 0, 1, seed_ablation_budgets[a]);
    }
}

/* A number of row R of RECORD, or an error exit naming it. */
static double record_number(const char *record, const cJSON *row, int r, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    if (!cJSON_IsNumber(v)) {
        rk_fail(RK_EINVAL, "%s: row %d has no number '%s'", record, r, key);
        cli_die();
    }
    return v->valuedouble;
}

/* --from-json: the rows, datasets and model name of a record this tool
 * wrote, for its table and plot again without running anything. The
 * returned tree owns the strings the rows point to. */
static cJSON *read_record(const char *record, harness_datasets *sets, row_result *res,
                          int *n_rows, cli_ints *budgets, const char **model)
{
    char *text;
    size_t len;
    if (rk_read_file(record, 1 << 26, &text, &len) != RK_OK)
        cli_die();
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *datasets = cJSON_GetObjectItemCaseSensitive(j, "datasets");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "rows");
    if (!cJSON_IsString(name) || !cJSON_IsArray(datasets) || !cJSON_IsArray(rows)) {
        rk_fail(RK_EINVAL, "%s is not a rankkv-compare record (model, datasets, rows)", record);
        cli_die();
    }
    *model = name->valuestring;
    /* Records from before --kv-dtype name none: each target's own then. */
    const cJSON *target = cJSON_GetObjectItemCaseSensitive(j, "target");
    const char *own_dtype =
        cJSON_IsString(target) && strcmp(target->valuestring, "cuda") == 0 ? "fp16" : "fp32";
    const cJSON *d;
    cJSON_ArrayForEach(d, datasets) {
        const cJSON *dn = cJSON_GetObjectItemCaseSensitive(d, "name");
        if (!cJSON_IsString(dn) || sets->n == HARNESS_MAX_DATASETS) {
            rk_fail(RK_EINVAL, "%s: dataset %d has no name, or there are more than %d", record,
                    sets->n, HARNESS_MAX_DATASETS);
            cli_die();
        }
        sets->set[sets->n++].name = dn->valuestring;
    }
    budgets->n = 0;
    *n_rows = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const int r = *n_rows;
        const cJSON *rn = cJSON_GetObjectItemCaseSensitive(row, "row");
        const cJSON *policy = cJSON_GetObjectItemCaseSensitive(row, "policy");
        if (r == MAX_ROWS * MAX_BUDGETS || !cJSON_IsString(rn) || !cJSON_IsString(policy)) {
            rk_fail(RK_EINVAL, "%s: row %d has no row and policy names, or there are more than %d",
                    record, r, MAX_ROWS * MAX_BUDGETS);
            cli_die();
        }
        row_result *o = &res[r];
        o->name = rn->valuestring;
        o->label = policy->valuestring;
        o->full = strcmp(o->name, "full") == 0;
        const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(row, "kv_dtype");
        o->dtype = cJSON_IsString(dtype) ? dtype->valuestring : own_dtype;
        /* Records from before --kv-precision: uniform. */
        const cJSON *precision = cJSON_GetObjectItemCaseSensitive(row, "kv_precision");
        o->precision = cJSON_IsString(precision) ? precision->valuestring : "uniform";
        const double budget = o->full ? 0 : record_number(record, row, r, "budget");
        if (!o->full && !(budget >= 1 && budget <= (1 << 20) && budget == floor(budget))) {
            rk_fail(RK_EINVAL, "%s: row %d has budget %g, not a whole number in 1..%d", record,
                    r, budget, 1 << 20);
            cli_die();
        }
        o->budget = (int)budget;
        int b = 0;
        while (!o->full && b < budgets->n && budgets->v[b] != o->budget)
            b++;
        if (!o->full && b == budgets->n && budgets->n < MAX_BUDGETS)
            budgets->v[budgets->n++] = o->budget;
        cli_str key = {0};
        for (int s = 0; s < sets->n; s++) {
            cli_str_clear(&key);
            cli_str_add(&key, "%s_ppl", sets->set[s].name);
            o->ppl[s] = record_number(record, row, r, key.s);
            cli_str_add(&key, " of row %d", r);
            if (harness_ppl_check(o->ppl[s], key.s) != RK_OK) {
                rk_fail(RK_EINVAL, "%s: %s", record, rk_last_error());
                cli_die();
            }
            cli_str_clear(&key);
            cli_str_add(&key, "%s_nll_minus_full", sets->set[s].name);
            if ((o->have_dnll[s] = cJSON_HasObjectItem(row, key.s))) {
                o->dnll[s] = record_number(record, row, r, key.s);
                cli_str_add(&key, "_se");
                o->dnll_se[s] = record_number(record, row, r, key.s);
            }
        }
        cli_str_free(&key);
        o->t = (harness_timing){.ttft_ms = record_number(record, row, r, "ttft_ms"),
                                .tpot_ms = record_number(record, row, r, "tpot_ms"),
                                .prefill_tok_s = record_number(record, row, r, "prefill_tok_s"),
                                .decode_tok_s = record_number(record, row, r, "decode_tok_s"),
                                .e2e_tok_s = record_number(record, row, r, "e2e_tok_s")};
        o->flops = (rk_flops){record_number(record, row, r, "gflops_prefill") * 1e9,
                              record_number(record, row, r, "gflops_compress") * 1e9,
                              record_number(record, row, r, "gflops_decode") * 1e9};
        o->kv_mb = record_number(record, row, r, "kv_cache_mb");
        o->kv_used_mb = record_number(record, row, r, "kv_used_mb");
        o->peak_mb = record_number(record, row, r, "peak_mb");
        (*n_rows)++;
    }
    if (*n_rows == 0 || budgets->n == 0) {
        rk_fail(RK_EINVAL, "%s holds no compressed rows to show", record);
        cli_die();
    }
    return j;
}

/* The results: the table on stdout and, when asked, as markdown (either
 * layout) and as a plot. */
static void show(const char *md_path, int seed, const harness_datasets *sets,
                 const row_result *res, int n_rows, const cli_ints *budgets,
                 const cli_plot_paths *plot_to, const char *model_name)
{
    cli_str line = {0}, md = {0};
    if (seed) {
        seed_layout(&md, sets, res, n_rows, budgets);
        fputs(md.s ? md.s : "", stdout);
    } else {
        cli_str_add(&line, "| row | budget | KV dtype |");
        for (int s = 0; s < sets->n; s++)
            cli_str_add(&line, " %s PPL | dNLL vs full |", sets->set[s].name);
        cli_str_add(&line, " TTFT ms | TPOT ms | prefill tok/s | decode tok/s | e2e tok/s | "
                           "GFLOPs | KV MB (used) | peak MB |");
        printf("%s\n", line.s);
        cli_str_add(&md, "%s\n|---|---|---|", line.s);
        for (int s = 0; s < sets->n; s++)
            cli_str_add(&md, "---|---|");
        cli_str_add(&md, "---|---|---|---|---|---|---|---|\n");
        for (int r = 0; r < n_rows; r++) {
            const row_result *o = &res[r];
            cli_str_clear(&line);
            if (o->full)
                cli_str_add(&line, "| %s | - | ", o->name);
            else
                cli_str_add(&line, "| %s | %d | ", o->name, o->budget);
            add_storage(&line, o);
            cli_str_add(&line, " |");
            add_cells(&line, o, sets->n, 0);
            printf("%s\n", line.s);
            cli_str_add(&md, "%s\n", line.s);
        }
    }
    if (md_path) {
        FILE *f = cli_out_open(md_path);
        fputs(md.s ? md.s : "", f);
        cli_out_close(f);
    }
    cli_str_free(&line);
    cli_str_free(&md);

    if (plot_to->png)
        plot(plot_to, model_name, sets, res, n_rows, budgets);
}

int main(int argc, char **argv)
{
    cli_init("rankkv-compare");
    const char *model = RK_DEFAULT_MODEL, *target = "cpu", *json_path = NULL, *md_path = NULL;
    const char *rows_arg = DEFAULT_ROWS, *layout = "rows", *from_json = NULL;
    cli_plot_paths plot_to = {0};
    int context = 2048, tail = 256, max_windows = 16, prompt_tokens = 0, new_tokens = 128;
    int repeats = 3;
    const cli_ints default_budgets = {3, {256, 512, 1024}};
    cli_ints budgets = default_budgets;
    harness_datasets sets = {0};
    cli_kv kv = {0};
    const cli_opt opts[] = {
        CLI_MODEL_OPT(&model),
        CLI_CALL_OPT("--dataset", &sets, harness_dataset_take, "NAME=PATH",
                     "perplexity dataset, a file or a directory of .txt\n"
                     "(repeatable, up to 8; none: timing only)"),
        CLI_STRING_OPT("--rows", &rows_arg, "LIST",
                       "comma-separated rows (default " DEFAULT_ROWS ");\n"
                       "full, snapkv, pyramidkv, h2o, streamingllm, rankkv,\n"
                       "pyramidkv-rankkv, rankkv-dynamic, or rankkv-<strategy> and\n"
                       "pyramidkv-rankkv-<strategy> (" RK_RANK_STRATEGIES ")"),
        CLI_INTS_OPT("--budget", &budgets, 1, 1 << 20, MAX_BUDGETS, "LIST",
                     "average budgets (default 256,512,1024)"),
        CLI_NUM("--context", &context, 2, 1 << 20, "C", "window length (default 2048)"),
        CLI_NUM("--tail", &tail, 1, 1 << 20, "T", "scored tokens per window (default 256)"),
        CLI_NUM("--max-windows", &max_windows, 1, 1 << 20, "N", "windows per dataset (default 16)"),
        CLI_NUM("--prompt-tokens", &prompt_tokens, 1, 1 << 20, "N",
                "timing prompt (default C - T)"),
        CLI_NUM("--new-tokens", &new_tokens, 2, 1 << 20, "N",
                "timed generated tokens (default 128)"),
        HARNESS_REPEATS_OPT(&repeats, "row"),
        CLI_TARGET_OPT(&target),
        CLI_PATH_OPT("--json", CLI_OUTPUT_STDOUT, &json_path, "FILE",
                     "results as JSON (device, commit, command, rows)"),
        CLI_PATH_OPT("--markdown", CLI_OUTPUT_STDOUT, &md_path, "FILE",
                     "the table as markdown\n('-' for either: standard output, after the table)"),
        CLI_STRING_OPT("--layout", &layout, "rows|seed",
                       "the table: a line per row (default), or the published\n"
                       "table's layout: a section per budget, the full cache,\n"
                       "the ablations at 256 and 512"),
        CLI_CALL_OPT("--plot", &plot_to, cli_plot_take, "FILE.png",
                     "PPL and dNLL against budget per row and dataset, TPOT and\n"
                     "KV MB (needs gnuplot; FILE.png.dat and FILE.png.gp, its\n"
                     "data and script, beside it)"),
        CLI_PATH_OPT("--from-json", CLI_INPUT, &from_json, "RECORD",
                     "show a record this tool wrote (--json) again, as a table,\n"
                     "--markdown and --plot, without running anything"),
        CLI_KV_OPTIONS(&kv),
        CLI_HELP_OPT,
        CLI_TEXT_OPT("KV tuning options of every tool (--kv-window, --rank-temperature, ...) "
                     "apply to\nevery row; --kv and --kv-budget are --rows and --budget here.\n"),
        {0}};
    cli_parse(argc, argv, usage, opts);
    cli_kv_check_dtype_options(&kv);
    if (kv.opt.method || kv.opt.average || kv.memory)
        cli_usage_error("rankkv-compare takes --rows and --budget lists, not "
                        "--kv/--kv-budget/--kv-memory");
    harness_check_tail(tail, context);
    const int seed = strcmp(layout, "seed") == 0;
    if (!seed && strcmp(layout, "rows") != 0)
        cli_usage_error("--layout wants rows or seed, got '%s'", layout);
    static row_result res[MAX_ROWS * MAX_BUDGETS];
    int n_rows = 0;
    if (from_json) {
        if (json_path || sets.n || strcmp(rows_arg, DEFAULT_ROWS) != 0 ||
            memcmp(&budgets, &default_budgets, sizeof budgets) != 0)
            cli_usage_error("--from-json shows a record again: it takes --layout, --markdown "
                            "and --plot, not what to run");
        /* The record is an input like any other: no output may replace it. */
        cli_check_paths(NULL);
        const char *record_model;
        cJSON *record = read_record(from_json, &sets, res, &n_rows, &budgets, &record_model);
        show(md_path, seed, &sets, res, n_rows, &budgets, &plot_to, record_model);
        cJSON_Delete(record);
        free(plot_to.dat);
        free(plot_to.gp);
        return 0;
    }
    char *row_names[MAX_ROWS];
    const int n_row_names = cli_split_list("--rows", rows_arg, row_names, MAX_ROWS);
    const rk_ops *ops = cli_target(target);
    cli_check_paths(model);
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
    for (int i = 0; i < n_row_names; i++)
        for (int b = 0; b < budgets.n; b++) {
            const int full = strcmp(row_names[i], "full") == 0;
            if (full && b > 0)
                break;
            cli_kv one;
            row_options(row_names[i], &kv, budgets.v[b], &one);
            limits[n_rows] = (rk_limits){.max_prompt = max_prompt, .max_new_tokens = max_new,
                                         .prefill_chunk = max_prompt, .logits_rows = 1};
            cli_kv_limits(&one, model, &cfg, ops, &limits[n_rows]);
            res[n_rows].dtype = rk_kv_format_name(limits[n_rows].kv_format);
            res[n_rows].precision = rk_kv_precision_name(limits[n_rows].kv_precision);
            cli_check_plan(&cfg, ops, &limits[n_rows]);
            res[n_rows].name = row_names[i];
            res[n_rows].budget = full ? 0 : budgets.v[b];
            res[n_rows].full = full;
            n_rows++;
        }

    harness_load_datasets(&sets, model, cfg.vocab, context, max_windows);
    int32_t *prompt = malloc((size_t)max_prompt * sizeof *prompt);
    double *row_nll = malloc((size_t)max_windows * sizeof *row_nll);
    if (!prompt || !row_nll) {
        rk_fail(RK_ENOMEM, "out of memory for the timing prompt and per-window NLLs");
        cli_die();
    }
    /* Real text where there is some, so that dynamic ranks are a real
     * prompt's; the timing prompt is the first window's start. */
    for (int i = 0; i < max_prompt; i++)
        prompt[i] = sets.n && i < context ? sets.set[0].windows[i]
                                          : (int32_t)((i * 7919 + 13) % cfg.vocab);

    for (int r = 0; r < n_rows; r++) {
        row_result *o = &res[r];
        fprintf(stderr, "[compare %d/%d] %s %d: loading\n", r + 1, n_rows, o->name, o->budget);
        rk_model *m = cli_model_load(model, ops, &limits[r]);
        char label[128];
        cli_fmt(label, sizeof label, "[compare %d/%d] %.63s %d", r + 1, n_rows, o->name,
                o->budget);
        for (int s = 0; s < sets.n; s++) {
            harness_row row;
            harness_run_dataset(m, &sets.set[s], context, tail, label, row_nll, &row);
            o->ppl[s] = row.ppl;
            o->have_dnll[s] = row.have_diff;
            o->dnll[s] = row.d_mean;
            o->dnll_se[s] = row.d_se;
            if (s == 0)
                memcpy(o->mean_budget, row.mean_budget, sizeof o->mean_budget);
        }
        o->t = harness_time(m, prompt, prompt_tokens, new_tokens, repeats, label);
        /* After the timing runs: a dynamic policy's budgets are the timing
         * prompt's. */
        o->flops = rk_flops_count(&m->cfg, &m->lim, prompt_tokens, new_tokens);
        o->kv_mb = harness_mb(rk_model_kv_bytes(m));
        o->kv_used_mb = harness_mb(rk_model_kv_bytes_used(m, prompt_tokens));
        if (sets.n == 0)
            for (int l = 0; l < cfg.n_layers; l++)
                o->mean_budget[l] = m->lim.kv.budget[l];
        /* Peak memory: what the device reports in use since the model began
         * to load, or on the CPU all the model holds (allocated once). */
        size_t in_use, since_load;
        o->peak_mb = harness_mb(rk_model_device_used(m, &in_use, &since_load)
                                    ? since_load
                                    : rk_model_memory_bytes(m));
        o->label = rk_kv_policy_name(&m->lim.kv);
        rk_model_free(m);
    }

    show(md_path, seed, &sets, res, n_rows, &budgets, &plot_to, cli_base_name(model));

    if (json_path) {
        cJSON *j = harness_record(argc, argv, model, ops->name, context, tail);
        cJSON_AddNumberToObject(j, "timing_prompt_tokens", prompt_tokens);
        cJSON_AddNumberToObject(j, "timing_new_tokens", new_tokens);
        cJSON_AddNumberToObject(j, "repeats", repeats);
        cJSON_AddNumberToObject(j, "peak_rss_mb", cli_peak_rss_mb());
        cJSON *datasets = cJSON_AddArrayToObject(j, "datasets");
        for (int s = 0; s < sets.n; s++) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "name", sets.set[s].name);
            cJSON_AddStringToObject(d, "path", sets.set[s].path);
            cJSON_AddNumberToObject(d, "windows", sets.set[s].n_windows);
            cJSON_AddItemToArray(datasets, d);
        }
        cJSON *rows = cJSON_AddArrayToObject(j, "rows");
        for (int r = 0; r < n_rows; r++) {
            const row_result *o = &res[r];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "row", o->name);
            cJSON_AddStringToObject(x, "policy", o->label);
            cJSON_AddStringToObject(x, "kv_dtype", o->dtype);
            cJSON_AddStringToObject(x, "kv_precision", o->precision);
            if (!o->full) {
                cJSON_AddNumberToObject(x, "budget", o->budget);
                cJSON_AddItemToObject(x, "mean_layer_budgets",
                                      cJSON_CreateDoubleArray(o->mean_budget, cfg.n_layers));
            }
            cli_str key = {0};
            for (int s = 0; s < sets.n; s++) {
                cli_str_clear(&key);
                cli_str_add(&key, "%s_ppl", sets.set[s].name);
                cJSON_AddNumberToObject(x, key.s, o->ppl[s]);
                if (o->have_dnll[s]) {
                    cli_str_clear(&key);
                    cli_str_add(&key, "%s_nll_minus_full", sets.set[s].name);
                    cJSON_AddNumberToObject(x, key.s, o->dnll[s]);
                    cli_str_clear(&key);
                    cli_str_add(&key, "%s_nll_minus_full_se", sets.set[s].name);
                    cJSON_AddNumberToObject(x, key.s, o->dnll_se[s]);
                }
            }
            cli_str_free(&key);
            harness_timing_json(x, &o->t);
            cJSON_AddNumberToObject(x, "gflops", rk_flops_total(&o->flops) / 1e9);
            cJSON_AddNumberToObject(x, "gflops_prefill", o->flops.prefill / 1e9);
            cJSON_AddNumberToObject(x, "gflops_compress", o->flops.compress / 1e9);
            cJSON_AddNumberToObject(x, "gflops_decode", o->flops.decode / 1e9);
            cJSON_AddNumberToObject(x, "kv_cache_mb", o->kv_mb);
            cJSON_AddNumberToObject(x, "kv_used_mb", o->kv_used_mb);
            cJSON_AddNumberToObject(x, "peak_mb", o->peak_mb);
            cJSON_AddItemToArray(rows, x);
        }
        cli_write_json(json_path, j);
        cJSON_Delete(j);
    }
    free(plot_to.dat);
    free(plot_to.gp);
    harness_free_datasets(&sets);
    free(prompt);
    free(row_nll);
    free(row_names[0]);
    return 0;
}
