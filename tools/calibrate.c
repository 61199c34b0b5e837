/* rankkv-calibrate: the offline half of RankKV. Measures the effective rank
 * of every head's attention over calibration samples, averages it into a
 * static profile and has codegen write the profile as a C header. With
 * --holdout it also tests how well that profile stands for unseen text
 * (the static consistency experiment). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "profile.h"
#include "profile_codegen.h"
#include "rank.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

static const char usage[] =
    "usage: rankkv-calibrate --data FILE --out profiles/profile_<name>.h [options]\n"
    "Runs the model over SAMPLES evenly spaced sequences of SEQ_LEN tokens of FILE,\n"
    "measures the effective rank of each head's causal attention matrix (SVD: LAPACK\n"
    "on the CPU, cuSOLVER on CUDA), and writes the profile header that builds\n"
    "compile in (-DRANKKV_PROFILES): identity, per-layer mean/std and per-head\n"
    "ranks, budget tables for averages 128/256/512/1024 x every strategy.\n"
    "\n";

typedef struct {
    const char *model, *data, *out, *json, *from_json, *target, *holdout, *report;
    cli_plot_paths plot;
    const char *tokenizer;
    int samples, seq_len, holdout_samples, min_budget;
} options;

static options parse(int argc, char **argv)
{
    options o = {.model = RK_DEFAULT_MODEL, .target = "cpu", .samples = 32, .seq_len = 1024,
                 .holdout_samples = 50, .min_budget = RK_KV_WINDOW};
    const cli_opt opts[] = {
        CLI_MODEL_OPT(&o.model),
        CLI_PATH_OPT("--data", CLI_INPUT, &o.data, "FILE",
                     "calibration text (e.g. wikitext-2/wiki.valid.tokens)"),
        CLI_NUM("--samples", &o.samples, 1, 100000, "N", "calibration sequences (default 32)"),
        CLI_NUM("--seq-len", &o.seq_len, 2, 1 << 16, "N", "tokens per sequence (default 1024)"),
        CLI_PATH_OPT("--out", CLI_OUTPUT, &o.out, "FILE",
                     "the header to write (its name gives the C symbol:\n"
                     "profile_<model>.h defines rk_profile_<model>)"),
        CLI_PATH_OPT("--json", CLI_OUTPUT, &o.json, "FILE",
                     "also write every sample's per-head ranks as JSON"),
        CLI_PATH_OPT("--from-json", CLI_INPUT, &o.from_json, "FILE",
                     "write the header from an earlier run's --json instead of\n"
                     "measuring (after a change to the strategies, say)"),
        CLI_NUM("--min-budget", &o.min_budget, 0, 128, "N",
                "smallest layer budget in the tables (default 32, SnapKV's\nwindow)"),
        CLI_PATH_OPT("--tokenizer", CLI_INPUT, &o.tokenizer, "FILE",
                     "tokenizer.json to read the text with (default: the model's)"),
        CLI_TARGET_OPT(&o.target),
        CLI_TEXT_OPT("Static consistency (optional):\n"),
        CLI_PATH_OPT("--holdout", CLI_INPUT, &o.holdout, "FILE",
                     "held-out text (e.g. wikitext-2/wiki.test.raw)"),
        CLI_NUM("--holdout-samples", &o.holdout_samples, 2, 100000, "N",
                "held-out sequences (default 50)"),
        CLI_PATH_OPT("--report", CLI_OUTPUT, &o.report, "FILE",
                     "the experiment as JSON: Pearson correlation and cosine\n"
                     "similarity of each held-out sample's per-layer ranks with\n"
                     "the profile, their mean and minimum"),
        CLI_CALL_OPT("--plot", &o.plot, cli_plot_take, "FILE.png",
                     "plot of the profile against the held-out ranks per layer\n"
                     "(needs gnuplot; FILE.png.dat and FILE.png.gp, its data and\n"
                     "script, are written beside it)"),
        CLI_HELP_OPT,
        CLI_TEXT_OPT("Progress goes to stderr.\n"),
        {0}};
    cli_parse(argc, argv, usage, opts);
    if (!o.out || (!o.data && !o.from_json))
        cli_usage_error("give --out HEADER and --data FILE (or --from-json FILE)");
    if (o.from_json && (o.data || o.json))
        cli_usage_error("--from-json takes the samples, data and command of the earlier run; "
                        "leave out --data and --json");
    if ((o.report || o.plot.png) && !o.holdout)
        cli_usage_error("--report and --plot belong to the consistency experiment: give "
                        "--holdout FILE");
    return o;
}

/* Per-sample ranks: L × H per sample. */
typedef struct {
    double *ranks;
    int n;
} measured;

static void progress(const char *what, int done, int total, double t0)
{
    const int width = 30, fill = total ? done * width / total : width;
    const double elapsed = rk_now() - t0, per = done ? elapsed / done : 0;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] [%s] %d/%d samples  %.1f s/sample  eta %.0f s ", what, bar, done,
            total, per, per * (total - done));
    if (done == total)
        fputc('\n', stderr);
}

/* SAMPLES sequences of SEQ_LEN tokens spread evenly over the file's tokens,
 * each measured with the model. */
static measured measure_file(rk_model *m, const rk_tokenizer *tok, const char *path, int samples,
                             int seq_len, const char *what)
{
    int32_t *ids;
    size_t n;
    if (cli_tokenize_file(tok, path, 0, &ids, &n) != RK_OK)
        cli_die();
    const size_t stride = n / (size_t)samples;
    if (stride < (size_t)seq_len) {
        rk_fail(RK_EINVAL, "%s has %zu tokens; %d samples of %d tokens need %lld", path, n,
                samples, seq_len, (long long)samples * seq_len);
        cli_die();
    }
    const int LH = m->cfg.n_layers * m->cfg.n_heads;
    measured r = {malloc((size_t)samples * LH * sizeof(double)), samples};
    if (!r.ranks) {
        rk_fail(RK_ENOMEM, "out of memory for %d samples' ranks", samples);
        cli_die();
    }
    const double t0 = rk_now();
    for (int s = 0; s < samples; s++) {
        progress(what, s, samples, t0);
        if (rk_model_measure_ranks(m, ids + (size_t)s * stride, seq_len,
                                   r.ranks + (size_t)s * LH) != RK_OK)
            cli_die();
    }
    progress(what, samples, samples, t0);
    free(ids);
    return r;
}

/* An earlier run's --json: its identity, settings and every sample's
 * per-head ranks. */
typedef struct {
    rk_identity id;
    int samples, seq_len;
    char data[4096], command[4096];
    measured ranks;
} earlier_run;

/* Parsed and checked by codegen, the code the profile-JSON fuzzer runs. */
static earlier_run read_earlier(const char *path)
{
    char *text;
    size_t len;
    if (rk_read_file(path, (size_t)1 << 30, &text, &len) != RK_OK)
        cli_die();
    rk_calibration_run c;
    const rk_status st = rk_calibration_parse(text, len, path, &c);
    free(text);
    if (st != RK_OK)
        cli_die();
    earlier_run r = {.id = c.id, .samples = c.samples, .seq_len = c.seq_len,
                     .ranks = {c.ranks, c.samples}};
    cli_fmt(r.data, sizeof r.data, "%s", c.data);
    cli_fmt(r.command, sizeof r.command, "%s", c.command);
    return r;
}

/* Sample S's layer ranks (mean over heads). */
static void layer_ranks(const measured *r, int s, int L, int H, double *out)
{
    rk_erank_layer_means(r->ranks + (size_t)s * L * H, L, H, out);
}

/* Mean and sample standard deviation over samples of each layer's rank. */
static void layer_stats(const measured *r, int L, int H, double *mean, double *std)
{
    double v[RK_MAX_LAYERS];
    for (int l = 0; l < L; l++)
        mean[l] = std[l] = 0;
    for (int s = 0; s < r->n; s++) {
        layer_ranks(r, s, L, H, v);
        for (int l = 0; l < L; l++)
            mean[l] += v[l] / r->n;
    }
    for (int s = 0; s < r->n; s++) {
        layer_ranks(r, s, L, H, v);
        for (int l = 0; l < L; l++)
            std[l] += (v[l] - mean[l]) * (v[l] - mean[l]);
    }
    for (int l = 0; l < L; l++)
        std[l] = r->n > 1 ? sqrt(std[l] / (r->n - 1)) : 0;
}

static double pearson(const double *a, const double *b, int n)
{
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++)
        ma += a[i] / n, mb += b[i] / n;
    for (int i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}

static double cosine(const double *a, const double *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += a[i] * b[i];
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

/* Numbers at 17 significant digits (cJSON's own printing may drop the last
 * bit), so that --from-json regenerates the header exactly. */
static cJSON *array_of(const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    char buf[32];
    for (int i = 0; i < n; i++) {
        cli_fmt(buf, sizeof buf, "%.17g", v[i]);
        cJSON_AddItemToArray(a, cJSON_CreateRaw(buf));
    }
    return a;
}

/* What the plot's script shows. */
typedef struct {
    const char *dat, *model;
    double corr, cos_sim;
} plot_text;

/* The plot's gnuplot script, drawing the data into PNG. */
static void plot_script(FILE *f, const char *png, const void *arg)
{
    const plot_text *t = arg;
    fputs("set terminal pngcairo size 900,540 noenhanced\nset output ", f);
    cli_gp_string(f, png);
    fputs("\nset title ", f);
    cli_str title = {0};
    cli_str_add(&title, "Effective rank per layer: %s (held-out Pearson %.3f, cosine %.4f)",
                t->model, t->corr, t->cos_sim);
    cli_gp_string(f, title.s);
    cli_str_free(&title);
    fputs("\nset xlabel 'layer'\nset ylabel 'effective rank (mean over heads)'\n"
          "set key top right\nset grid\nplot ", f);
    cli_gp_string(f, t->dat);
    fputs(" using 1:($4-$5):($4+$5) with filledcurves fc rgb '#c6dbef' fs solid 0.6 "
          "title 'held-out mean +- std', \\\n"
          "     '' using 1:4 with lines lw 2 lc rgb '#2171b5' title 'held-out mean', \\\n"
          "     '' using 1:2:3 with yerrorlines lw 2 pt 7 ps 0.8 lc rgb '#cb181d' "
          "title 'static profile (calibration mean +- std)'\n",
          f);
}

/* The experiment's plot: the profile's per-layer mean ± std against the
 * held-out samples' mean ± std, drawn by gnuplot from a data file written
 * beside the PNG with the script. */
static void plot(const options *o, const char *model, int L, const double *pm, const double *ps,
                 const double *hm, const double *hs, double corr, double cos_sim)
{
    FILE *f = cli_out_open(o->plot.dat);
    fprintf(f, "# layer profile_mean profile_std holdout_mean holdout_std\n");
    for (int l = 0; l < L; l++)
        fprintf(f, "%d %.6f %.6f %.6f %.6f\n", l, pm[l], ps[l], hm[l], hs[l]);
    cli_out_close(f);
    const plot_text t = {o->plot.dat, model, corr, cos_sim};
    cli_plot(&o->plot, plot_script, &t);
}

int main(int argc, char **argv)
{
    cli_init("rankkv-calibrate");
    const options o = parse(argc, argv);
    const rk_ops *ops = cli_target(o.target);
    cli_check_paths(o.model);
    char symbol[256];
    cli_str command = {0};
    cli_command_line(argc, argv, &command);
    rk_codegen_symbol(o.out, symbol, sizeof symbol);
    earlier_run run = {0};
    rk_model *m = NULL;
    rk_tokenizer *tok = NULL;

    /* The model is needed to measure: the calibration samples, unless an
     * earlier run's are given, and the held-out ones. */
    if (o.from_json) {
        run = read_earlier(o.from_json);
    } else {
        if (rk_identity_of(o.model, &run.id) != RK_OK)
            cli_die();
        run.samples = o.samples;
        run.seq_len = o.seq_len;
        cli_fmt(run.data, sizeof run.data, "%s", cli_base_name(o.data));
        cli_fmt(run.command, sizeof run.command, "%s", command.s);
    }
    if (!o.from_json || o.holdout) {
        const rk_rank_ops *rank = rk_rank_find(o.target);
        if (!rank)
            cli_die();
        rk_identity id;
        if (rk_identity_of(o.model, &id) != RK_OK)
            cli_die();
        if (id.hash != run.id.hash) {
            rk_fail(RK_EINVAL, "%s was calibrated on %s, not on the model in %s", o.from_json,
                    run.id.name, o.model);
            cli_die();
        }
        tok = cli_tokenizer(o.model, o.tokenizer, 0);
        rk_limits lim = {.max_prompt = run.seq_len, .max_new_tokens = 0,
                         .prefill_chunk = run.seq_len, .logits_rows = 1,
                         .kv_format = ops->kv_format, .rank = rank, .rank_len = run.seq_len};
        m = cli_model_load(o.model, ops, &lim);
        if (rk_tok_check_vocab(tok, m->cfg.vocab) != RK_OK)
            cli_die();
    }
    if (!o.from_json) {
        fprintf(stderr, "[calibrate] %s on %s (%s): %d samples x %d tokens of %s\n",
                run.id.name, ops->name, cli_device(), o.samples, o.seq_len, o.data);
        run.ranks = measure_file(m, tok, o.data, o.samples, o.seq_len, "calibrate");
    }
    const measured cal = run.ranks;
    const int L = run.id.layers, H = run.id.heads;
    double mean[RK_MAX_LAYERS], std[RK_MAX_LAYERS];
    double *head = calloc((size_t)L * H, sizeof *head);
    if (!head) {
        rk_fail(RK_ENOMEM, "out of memory for %d head ranks", L * H);
        cli_die();
    }
    layer_stats(&cal, L, H, mean, std);
    for (int s = 0; s < cal.n; s++)
        for (int i = 0; i < L * H; i++)
            head[i] += cal.ranks[(size_t)s * L * H + i] / cal.n;

    const rk_calibration c = {.id = run.id, .samples = run.samples, .seq_len = run.seq_len,
                              .data = run.data, .command = run.command, .rank_mean = mean,
                              .rank_std = std, .head_rank = head, .min_budget = o.min_budget};
    FILE *f = cli_out_open(o.out);
    if (rk_codegen_profile(&c, symbol, f) != RK_OK)
        cli_die();
    cli_out_close(f);
    fprintf(stderr, "[calibrate] %s defines %s\n", o.out, symbol);
    for (int l = 0; l < L; l++)
        printf("layer %2d  rank %8.3f +- %.3f\n", l, mean[l], std[l]);

    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        char hash[32];
        cli_fmt(hash, sizeof hash, "%016llx", (unsigned long long)run.id.hash);
        cJSON_AddStringToObject(j, "model", run.id.name);
        cJSON_AddStringToObject(j, "identity", hash);
        cJSON_AddNumberToObject(j, "layers", L);
        cJSON_AddNumberToObject(j, "heads", H);
        cJSON_AddNumberToObject(j, "hidden", run.id.hidden);
        cJSON_AddStringToObject(j, "device", cli_device());
        cJSON_AddStringToObject(j, "command", command.s);
        cJSON_AddStringToObject(j, "data", run.data);
        cJSON_AddNumberToObject(j, "samples", run.samples);
        cJSON_AddNumberToObject(j, "seq_len", run.seq_len);
        cJSON_AddItemToObject(j, "layer_rank_mean", array_of(mean, L));
        cJSON_AddItemToObject(j, "layer_rank_std", array_of(std, L));
        cJSON *per = cJSON_AddArrayToObject(j, "sample_layer_head_ranks");
        for (int s = 0; s < cal.n; s++)
            cJSON_AddItemToArray(per, array_of(cal.ranks + (size_t)s * L * H, L * H));
        cli_write_json(o.json, j);
        cJSON_Delete(j);
    }

    if (o.holdout) {
        measured test =
            measure_file(m, tok, o.holdout, o.holdout_samples, run.seq_len, "holdout");
        double v[RK_MAX_LAYERS], hmean[RK_MAX_LAYERS], hstd[RK_MAX_LAYERS];
        double corr_sum = 0, cos_sum = 0, corr_min = 2, cos_min = 2;
        cJSON *rows = cJSON_CreateArray();
        for (int s = 0; s < test.n; s++) {
            layer_ranks(&test, s, L, H, v);
            const double r = pearson(v, mean, L), cs = cosine(v, mean, L);
            corr_sum += r, cos_sum += cs;
            corr_min = r < corr_min ? r : corr_min;
            cos_min = cs < cos_min ? cs : cos_min;
            cJSON *row = cJSON_CreateObject();
            cJSON_AddNumberToObject(row, "pearson", r);
            cJSON_AddNumberToObject(row, "cosine", cs);
            cJSON_AddItemToObject(row, "layer_ranks", array_of(v, L));
            cJSON_AddItemToArray(rows, row);
        }
        layer_stats(&test, L, H, hmean, hstd);
        const double corr = corr_sum / test.n, cos_sim = cos_sum / test.n;
        printf("static consistency over %d held-out samples of %s: Pearson mean %.4f min %.4f, "
               "cosine mean %.5f min %.5f\n",
               test.n, cli_base_name(o.holdout), corr, corr_min, cos_sim, cos_min);
        if (o.report) {
            cJSON *j = cli_record_new(argc, argv, run.id.name, ops->name);
            cJSON_AddStringToObject(j, "calibration_data", run.data);
            cJSON_AddNumberToObject(j, "calibration_samples", run.samples);
            cJSON_AddStringToObject(j, "holdout_data", o.holdout);
            cJSON_AddNumberToObject(j, "holdout_samples", test.n);
            cJSON_AddNumberToObject(j, "seq_len", run.seq_len);
            cJSON_AddNumberToObject(j, "pearson_mean", corr);
            cJSON_AddNumberToObject(j, "pearson_min", corr_min);
            cJSON_AddNumberToObject(j, "cosine_mean", cos_sim);
            cJSON_AddNumberToObject(j, "cosine_min", cos_min);
            cJSON_AddItemToObject(j, "profile_layer_rank_mean", array_of(mean, L));
            cJSON_AddItemToObject(j, "profile_layer_rank_std", array_of(std, L));
            cJSON_AddItemToObject(j, "holdout_layer_rank_mean", array_of(hmean, L));
            cJSON_AddItemToObject(j, "holdout_layer_rank_std", array_of(hstd, L));
            cJSON_AddItemToObject(j, "holdout", rows);
            cli_write_json(o.report, j);
            cJSON_Delete(j);
        } else {
            cJSON_Delete(rows);
        }
        if (o.plot.png)
            plot(&o, run.id.name, L, mean, std, hmean, hstd, corr, cos_sim);
        free(test.ranks);
    }
    free(cal.ranks);
    free(head);
    free(o.plot.dat);
    free(o.plot.gp);
    cli_str_free(&command);
    rk_model_free(m);
    if (tok)
        rk_tok_free(tok);
    return 0;
}
