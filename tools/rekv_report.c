#include "rekv_report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "textio.h"

const char *const rekv_report_plot_names[REKV_REPORT_PLOTS] = {
    "fig1_similarity_distribution", "fig2_layer_similarity", "fig3_confidence_similarity",
    "fig4_window_similarity",       "fig5_target_rank",      "fig6_rejection_position"};

/* DIR/NAME, malloc'd. */
static char *in_dir(const char *dir, const char *name)
{
    cli_str s = {0};
    cli_str_add(&s, "%s/%s", dir, name);
    return s.s;
}

/* DIR/STEM_K{K}.json, malloc'd. */
static char *run_file(const char *dir, const char *stem, int k)
{
    cli_str s = {0};
    cli_str_add(&s, "%s/%s_K%d.json", dir, stem, k);
    return s.s;
}

/* DIR/plots/NAME_K{K}.png and its data and script beside it (malloc'd). */
static cli_plot_paths plot_files(const char *dir, const char *name, int k)
{
    cli_str png = {0}, dat = {0}, gp = {0};
    cli_str_add(&png, "%s/plots/%s_K%d.png", dir, name, k);
    cli_str_add(&dat, "%s.dat", png.s);
    cli_str_add(&gp, "%s.gp", png.s);
    return (cli_plot_paths){.png = png.s, .dat = dat.s, .gp = gp.s};
}

static void free_plot_files(cli_plot_paths *p)
{
    free((char *)p->png);
    free(p->dat);
    free(p->gp);
}

static void check_out(char *path)
{
    cli_check_output("--rekv", path);
    free(path);
}

void rekv_report_check(const char *dir, const int *ks, int n)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        rk_fail(RK_EIO, "the ReKV output directory %s: %s", dir, strerror(errno));
        cli_die();
    }
    if (!S_ISDIR(sb.st_mode)) {
        rk_fail(RK_EIO, "the ReKV output directory %s is not a directory", dir);
        cli_die();
    }
    char *plots = in_dir(dir, "plots");
    if (mkdir(plots, 0777) != 0 && errno != EEXIST) {
        rk_fail(RK_EIO, "cannot make %s: %s", plots, strerror(errno));
        cli_die();
    }
    free(plots);
    check_out(in_dir(dir, "combined_results.json"));
    for (int i = 0; i < n; i++) {
        check_out(run_file(dir, "summary", ks[i]));
        check_out(run_file(dir, "events", ks[i]));
        for (int f = 0; f < REKV_REPORT_PLOTS; f++) {
            cli_plot_paths p = plot_files(dir, rekv_report_plot_names[f], ks[i]);
            check_out((char *)p.png);
            check_out(p.dat);
            check_out(p.gp);
        }
    }
}

/* JSON */

/* A mean as a number, or null where nothing was averaged. */
static void add_mean(cJSON *o, const char *key, double x, int n)
{
    if (n)
        cJSON_AddNumberToObject(o, key, x);
    else
        cJSON_AddNullToObject(o, key);
}

static cJSON *stat_json(const rk_rekv_stat *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", s->n);
    add_mean(o, "cos_k", s->mean.cos_k, s->n);
    add_mean(o, "cos_v", s->mean.cos_v, s->n);
    add_mean(o, "l2_k", s->mean.l2_k, s->n);
    add_mean(o, "l2_v", s->mean.l2_v, s->n);
    return o;
}

static cJSON *pair_json(const rk_rekv_pair *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "draft_vs_target", stat_json(&p->draft));
    cJSON_AddItemToObject(o, "target_rejected_vs_target", stat_json(&p->self));
    return o;
}

static cJSON *ints_json(const int *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* The fields every file of a run starts with. */
static cJSON *run_json(const rk_rekv *r, const rekv_report_meta *meta)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "analysis", "rekv_rejected_kv");
    cJSON_AddStringToObject(j, "draft_model", meta->draft_model);
    cJSON_AddStringToObject(j, "target_model", meta->target_model);
    cJSON_AddNumberToObject(j, "k", r->k);
    cJSON_AddNumberToObject(j, "rounds", (double)meta->rounds);
    cJSON_AddNumberToObject(j, "drafted", (double)meta->drafted);
    cJSON_AddNumberToObject(j, "accepted", (double)meta->accepted);
    add_mean(j, "acceptance_rate", meta->drafted ? (double)meta->accepted / meta->drafted : 0,
             meta->drafted > 0);
    cJSON_AddNumberToObject(j, "events", r->n);
    cJSON_AddNumberToObject(j, "truth_steps", (double)meta->truth_steps);
    return j;
}

static cJSON *shape_json(int layers, int heads, int dim)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "layers", layers);
    cJSON_AddNumberToObject(o, "heads", heads);
    cJSON_AddNumberToObject(o, "head_dim", dim);
    return o;
}

static const char method_note[] =
    "draft layer i is compared with target layer round(i (L_t-1)/(L_d-1)); the first "
    "min(H_d, H_t) heads and, of each, the first min(d_d, d_t) dims. Keys are cached after "
    "rotary and GPT-NeoX rotates the first rotary_dims of a head, so with different head dims "
    "the compared dims mix rotated dims of different frequencies with unrotated ones; heads of "
    "two models are not aligned by training. A low draft-vs-target cosine means the rows cannot "
    "be reused as they are, not that no map between them exists. cos: mean over the compared "
    "heads of each head's cosine; l2: Euclidean distance over all compared elements of the "
    "layer, in the cache's units. Means over events are of each event's mean over layers.";

static cJSON *summary_json(const rk_rekv *r, const rk_rekv_summary *s,
                           const rekv_report_meta *meta)
{
    cJSON *j = run_json(r, meta);
    cJSON_AddItemToObject(j, "draft", shape_json(r->draft_layers, r->draft_heads, r->draft_dim));
    cJSON_AddItemToObject(j, "target",
                          shape_json(r->target_layers, r->target_heads, r->target_dim));
    cJSON *cmp = cJSON_AddObjectToObject(j, "compared");
    cJSON_AddNumberToObject(cmp, "heads", r->heads);
    cJSON_AddNumberToObject(cmp, "head_dim", r->dims);
    cJSON_AddItemToObject(cmp, "layer_map", ints_json(r->map, r->draft_layers));
    cJSON_AddStringToObject(cmp, "method", method_note);

    char text[1024];
    rk_rekv_verdict_text(s, text, sizeof text);
    cJSON *v = cJSON_AddObjectToObject(j, "verdict");
    cJSON_AddStringToObject(v, "verdict", rk_rekv_verdict_name(s->verdict));
    add_mean(v, "score", s->score, s->events);
    cJSON_AddStringToObject(v, "score_is", "mean of the mean K and V cosines, draft vs target");
    cJSON_AddNumberToObject(v, "go_above", RK_REKV_GO_ABOVE);
    cJSON_AddNumberToObject(v, "caution_from", RK_REKV_CAUTION_FROM);
    cJSON *layers = cJSON_AddArrayToObject(v, "draft_layers_above_go");
    for (int i = 0; i < r->draft_layers; i++)
        if (s->layer_passes[i]) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "draft_layer", i);
            cJSON_AddNumberToObject(o, "target_layer", r->map[i]);
            cJSON_AddItemToArray(layers, o);
        }
    cJSON *bins = cJSON_AddArrayToObject(v, "confidence_bins_above_go");
    for (int b = 0; b < RK_REKV_CONF_BINS; b++)
        if (s->conf_passes[b])
            cJSON_AddItemToArray(bins, cJSON_CreateString(rk_rekv_conf_bin_name(b)));
    cJSON_AddStringToObject(v, "text", text);

    cJSON_AddItemToObject(j, "overall", pair_json(&s->all));

    cJSON *by_layer = cJSON_AddObjectToObject(j, "by_layer");
    cJSON *dl = cJSON_AddArrayToObject(by_layer, "draft_vs_target");
    for (int i = 0; i < r->draft_layers; i++) {
        cJSON *o = stat_json(&s->by_draft_layer[i]);
        cJSON_AddNumberToObject(o, "draft_layer", i);
        cJSON_AddNumberToObject(o, "target_layer", r->map[i]);
        cJSON_AddItemToArray(dl, o);
    }
    cJSON *tl = cJSON_AddArrayToObject(by_layer, "target_rejected_vs_target");
    for (int l = 0; l < r->target_layers; l++) {
        cJSON *o = stat_json(&s->by_target_layer[l]);
        cJSON_AddNumberToObject(o, "target_layer", l);
        cJSON_AddItemToArray(tl, o);
    }

    cJSON *win = cJSON_AddArrayToObject(j, "by_window_position");
    cJSON *rej = cJSON_AddArrayToObject(j, "rejection_positions");
    for (int p = 1; p <= r->k; p++) {
        cJSON *o = pair_json(&s->by_window[p - 1]);
        cJSON_AddNumberToObject(o, "window_position", p);
        cJSON_AddItemToArray(win, o);
        const int count = s->by_window[p - 1].draft.n;
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "window_position", p);
        cJSON_AddNumberToObject(c, "count", count);
        add_mean(c, "fraction", r->n ? (double)count / r->n : 0, r->n);
        cJSON_AddItemToArray(rej, c);
    }
    cJSON *conf = cJSON_AddArrayToObject(j, "by_draft_confidence");
    for (int b = 0; b < RK_REKV_CONF_BINS; b++) {
        cJSON *o = pair_json(&s->by_conf[b]);
        cJSON_AddStringToObject(o, "bin", rk_rekv_conf_bin_name(b));
        cJSON_AddItemToArray(conf, o);
    }
    cJSON *rank = cJSON_AddArrayToObject(j, "by_target_rank");
    for (int b = 0; b < RK_REKV_RANK_BINS; b++) {
        cJSON *o = pair_json(&s->by_rank[b]);
        cJSON_AddStringToObject(o, "bin", rk_rekv_rank_bin_name(b));
        cJSON_AddItemToArray(rank, o);
    }

    cJSON *hist = cJSON_AddObjectToObject(j, "cosine_histogram");
    cJSON_AddStringToObject(hist, "counts",
                            "(event, layer) pairs per bin of width 0.1 from -1 to 1");
    cJSON_AddItemToObject(hist, "draft_vs_target_k", ints_json(s->hist_draft_k, RK_REKV_HIST_BINS));
    cJSON_AddItemToObject(hist, "draft_vs_target_v", ints_json(s->hist_draft_v, RK_REKV_HIST_BINS));
    cJSON_AddItemToObject(hist, "target_rejected_vs_target_k",
                          ints_json(s->hist_self_k, RK_REKV_HIST_BINS));
    cJSON_AddItemToObject(hist, "target_rejected_vs_target_v",
                          ints_json(s->hist_self_v, RK_REKV_HIST_BINS));
    return j;
}

static cJSON *layers_json(const rk_rekv_sim *sims, int n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *a[4] = {cJSON_AddArrayToObject(o, "cos_k"), cJSON_AddArrayToObject(o, "cos_v"),
                   cJSON_AddArrayToObject(o, "l2_k"), cJSON_AddArrayToObject(o, "l2_v")};
    for (int l = 0; l < n; l++) {
        cJSON_AddItemToArray(a[0], cJSON_CreateNumber(sims[l].cos_k));
        cJSON_AddItemToArray(a[1], cJSON_CreateNumber(sims[l].cos_v));
        cJSON_AddItemToArray(a[2], cJSON_CreateNumber(sims[l].l2_k));
        cJSON_AddItemToArray(a[3], cJSON_CreateNumber(sims[l].l2_v));
    }
    return o;
}

static cJSON *sim_json(const rk_rekv_sim *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "cos_k", m->cos_k);
    cJSON_AddNumberToObject(o, "cos_v", m->cos_v);
    cJSON_AddNumberToObject(o, "l2_k", m->l2_k);
    cJSON_AddNumberToObject(o, "l2_v", m->l2_v);
    return o;
}

static cJSON *events_json(const rk_rekv *r, const rekv_report_meta *meta)
{
    cJSON *j = run_json(r, meta);
    cJSON_AddItemToObject(j, "layer_map", ints_json(r->map, r->draft_layers));
    cJSON *all = cJSON_AddArrayToObject(j, "event_list");
    for (int e = 0; e < r->n; e++) {
        const rk_rekv_event *ev = &r->events[e];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "window_position", ev->window_pos);
        cJSON_AddNumberToObject(o, "position", ev->position);
        cJSON_AddNumberToObject(o, "draft_token", ev->draft_token);
        cJSON_AddNumberToObject(o, "target_token", ev->target_token);
        cJSON_AddNumberToObject(o, "draft_prob", ev->draft_prob);
        cJSON_AddNumberToObject(o, "target_rank", ev->target_rank);
        cJSON *d = layers_json(rk_rekv_draft_sims(r, e), r->draft_layers);
        cJSON_AddItemToObject(d, "mean", sim_json(&ev->draft));
        cJSON_AddItemToObject(o, "draft_vs_target", d);
        cJSON *t = layers_json(rk_rekv_self_sims(r, e), r->target_layers);
        cJSON_AddItemToObject(t, "mean", sim_json(&ev->self));
        cJSON_AddItemToObject(o, "target_rejected_vs_target", t);
        cJSON_AddItemToArray(all, o);
    }
    return j;
}

/* Plots: each a .dat written here and a script cli_plot runs. */

typedef struct {
    const rk_rekv *r;
    const rk_rekv_summary *s;
    const rekv_report_meta *meta;
    const char *dat;
    int fig;
} plot_ctx;

/* A mean for gnuplot: NaN (a gap) where nothing was averaged. */
static void dat_mean(FILE *f, double x, int n)
{
    if (n)
        fprintf(f, " %.6f", x);
    else
        fputs(" NaN", f);
}

static void dat_pair(FILE *f, const rk_rekv_pair *p)
{
    dat_mean(f, p->draft.mean.cos_k, p->draft.n);
    dat_mean(f, p->draft.mean.cos_v, p->draft.n);
    dat_mean(f, p->self.mean.cos_k, p->self.n);
    dat_mean(f, p->self.mean.cos_v, p->self.n);
}

static void write_dat(const plot_ctx *c)
{
    const rk_rekv *r = c->r;
    const rk_rekv_summary *s = c->s;
    FILE *f = cli_out_open(c->dat);
    switch (c->fig) {
    case 0: {
        const double dn = (double)r->n * r->draft_layers, tn = (double)r->n * r->target_layers;
        fputs("# cos_center draft_k draft_v target_rejected_k target_rejected_v "
              "(fractions of compared layer rows)\n", f);
        for (int b = 0; b < RK_REKV_HIST_BINS; b++)
            fprintf(f, "%.3f %.6f %.6f %.6f %.6f\n", -1 + (b + 0.5) * 2.0 / RK_REKV_HIST_BINS,
                    s->hist_draft_k[b] / dn, s->hist_draft_v[b] / dn, s->hist_self_k[b] / tn,
                    s->hist_self_v[b] / tn);
        break;
    }
    case 1:
        fputs("# block 0: target_layer draft_layer cos_k cos_v (draft vs target)\n", f);
        for (int i = 0; i < r->draft_layers; i++) {
            fprintf(f, "%d %d", r->map[i], i);
            dat_mean(f, s->by_draft_layer[i].mean.cos_k, s->by_draft_layer[i].n);
            dat_mean(f, s->by_draft_layer[i].mean.cos_v, s->by_draft_layer[i].n);
            fputc('\n', f);
        }
        fputs("\n\n# block 1: target_layer cos_k cos_v (target rejected vs target)\n", f);
        for (int l = 0; l < r->target_layers; l++) {
            fprintf(f, "%d", l);
            dat_mean(f, s->by_target_layer[l].mean.cos_k, s->by_target_layer[l].n);
            dat_mean(f, s->by_target_layer[l].mean.cos_v, s->by_target_layer[l].n);
            fputc('\n', f);
        }
        break;
    case 2:
        fputs("# block 0: draft_prob cos_k cos_v per event (draft vs target)\n", f);
        for (int e = 0; e < r->n; e++)
            fprintf(f, "%.6f %.6f %.6f\n", r->events[e].draft_prob, r->events[e].draft.cos_k,
                    r->events[e].draft.cos_v);
        fputs("\n\n# block 1: bin_center draft_k draft_v target_rejected_k target_rejected_v "
              "(bin means)\n", f);
        for (int b = 0; b < RK_REKV_CONF_BINS; b++) {
            fprintf(f, "%.2f", (b + 0.5) / RK_REKV_CONF_BINS);
            dat_pair(f, &s->by_conf[b]);
            fputc('\n', f);
        }
        break;
    case 3:
        fputs("# window_position draft_k draft_v target_rejected_k target_rejected_v\n", f);
        for (int p = 1; p <= r->k; p++) {
            fprintf(f, "%d", p);
            dat_pair(f, &s->by_window[p - 1]);
            fputc('\n', f);
        }
        break;
    case 4:
        fputs("# bin label events\n", f);
        for (int b = 0; b < RK_REKV_RANK_BINS; b++)
            fprintf(f, "%d %s %d\n", b, rk_rekv_rank_bin_name(b), s->by_rank[b].draft.n);
        break;
    default:
        fputs("# window_position rejections fraction\n", f);
        for (int p = 1; p <= r->k; p++)
            fprintf(f, "%d %d %.6f\n", p, s->by_window[p - 1].draft.n,
                    (double)s->by_window[p - 1].draft.n / r->n);
        break;
    }
    cli_out_close(f);
}

/* Terminal, output, title and what every plot shares. */
static void script_head(FILE *f, const char *png, const plot_ctx *c, const char *what)
{
    fputs("set terminal pngcairo size 1000,600 noenhanced\nset output ", f);
    cli_gp_string(f, png);
    cli_str t = {0};
    cli_str_add(&t, "%s: draft %s vs target %s, K=%d, %d rejections (%s)", what,
                c->meta->draft_model, c->meta->target_model, c->r->k, c->r->n,
                rk_rekv_verdict_name(c->s->verdict));
    fputs("\nset title ", f);
    cli_gp_string(f, t.s);
    cli_str_free(&t);
    fputs("\nset grid\nset key below\n", f);
}

/* A plot command's first source: the data file. */
static void plot_dat(FILE *f, const plot_ctx *c)
{
    fputs("plot ", f);
    cli_gp_string(f, c->dat);
}

static const char thresholds[] =
    ", \\\n     0.7 with lines dt 3 lc rgb '#238b45' title 'GO above 0.7', \\\n"
    "     0.5 with lines dt 3 lc rgb '#cb181d' title 'NO-GO below 0.5'\n";

static void plot_script(FILE *f, const char *png, const void *arg)
{
    const plot_ctx *c = arg;
    switch (c->fig) {
    case 0:
        script_head(f, png, c, "cosine similarity distribution");
        fputs("set xlabel 'cosine similarity (per event and layer)'\n"
              "set ylabel 'fraction of compared layer rows'\nset xrange [-1:1]\n", f);
        plot_dat(f, c);
        fputs(" using 1:2 with histeps lw 2 lc rgb '#2171b5' title 'K: draft vs target', \\\n"
              "     '' using 1:3 with histeps lw 2 lc rgb '#cb181d' "
              "title 'V: draft vs target', \\\n"
              "     '' using 1:4 with histeps lw 1 dt 2 lc rgb '#6baed6' "
              "title 'K: target rejected vs target', \\\n"
              "     '' using 1:5 with histeps lw 1 dt 2 lc rgb '#fc9272' "
              "title 'V: target rejected vs target'\n", f);
        break;
    case 1:
        script_head(f, png, c, "similarity per layer");
        fputs("set xlabel 'target layer (a draft layer at the target layer it maps to)'\n"
              "set ylabel 'mean cosine'\nset yrange [-1:1]\n", f);
        fprintf(f, "set xrange [-0.5:%d.5]\n", c->r->target_layers - 1);
        plot_dat(f, c);
        fputs(" index 0 using 1:3 with linespoints lw 2 pt 7 lc rgb '#2171b5' "
              "title 'K: draft vs target', \\\n"
              "     '' index 0 using 1:4 with linespoints lw 2 pt 5 lc rgb '#cb181d' "
              "title 'V: draft vs target', \\\n"
              "     '' index 1 using 1:2 with linespoints dt 2 pt 6 lc rgb '#6baed6' "
              "title 'K: target rejected vs target', \\\n"
              "     '' index 1 using 1:3 with linespoints dt 2 pt 4 lc rgb '#fc9272' "
              "title 'V: target rejected vs target'", f);
        fputs(thresholds, f);
        break;
    case 2:
        script_head(f, png, c, "draft confidence vs similarity");
        fputs("set xlabel 'draft probability of the rejected token'\n"
              "set ylabel 'cosine, draft vs target (mean over layers)'\n"
              "set xrange [0:1]\nset yrange [-1:1]\n", f);
        plot_dat(f, c);
        fputs(" index 0 using 1:2 with points pt 7 ps 0.5 lc rgb '#9ecae1' "
              "title 'K, per event', \\\n"
              "     '' index 0 using 1:3 with points pt 7 ps 0.5 lc rgb '#fcbba1' "
              "title 'V, per event', \\\n"
              "     '' index 1 using 1:2 with linespoints lw 2 pt 7 lc rgb '#2171b5' "
              "title 'K, bin mean', \\\n"
              "     '' index 1 using 1:3 with linespoints lw 2 pt 5 lc rgb '#cb181d' "
              "title 'V, bin mean'", f);
        fputs(thresholds, f);
        break;
    case 3:
        script_head(f, png, c, "window position vs similarity");
        fputs("set xlabel 'position of the rejected token in the draft window'\n"
              "set ylabel 'mean cosine'\nset yrange [-1:1]\nset xtics 1\n", f);
        fprintf(f, "set xrange [0.5:%d.5]\n", c->r->k);
        plot_dat(f, c);
        fputs(" using 1:2 with linespoints lw 2 pt 7 lc rgb '#2171b5' "
              "title 'K: draft vs target', \\\n"
              "     '' using 1:3 with linespoints lw 2 pt 5 lc rgb '#cb181d' "
              "title 'V: draft vs target', \\\n"
              "     '' using 1:4 with linespoints dt 2 pt 6 lc rgb '#6baed6' "
              "title 'K: target rejected vs target', \\\n"
              "     '' using 1:5 with linespoints dt 2 pt 4 lc rgb '#fc9272' "
              "title 'V: target rejected vs target'", f);
        fputs(thresholds, f);
        break;
    case 4:
        script_head(f, png, c, "target rank of the rejected token");
        fputs("set xlabel 'rank of the rejected token under the target (1 = its choice)'\n"
              "set ylabel 'rejections'\nset style fill solid 0.6\nset boxwidth 0.7\n"
              "set yrange [0:*]\nset xrange [-0.5:4.5]\n", f);
        plot_dat(f, c);
        fputs(" using 1:3:xtic(2) with boxes lc rgb '#2171b5' notitle\n", f);
        break;
    default:
        script_head(f, png, c, "where in the window drafts are rejected");
        fputs("set xlabel 'window position of the first rejected token'\n"
              "set ylabel 'rejections'\nset style fill solid 0.6\nset boxwidth 0.7\n"
              "set yrange [0:*]\nset xtics 1\n", f);
        fprintf(f, "set xrange [0.5:%d.5]\n", c->r->k);
        plot_dat(f, c);
        fputs(" using 1:2 with boxes lc rgb '#2171b5' notitle\n", f);
        break;
    }
}

void rekv_report_write(const char *dir, const rk_rekv *r, const rekv_report_meta *meta)
{
    rk_rekv_summary *s = malloc(sizeof *s);
    if (!s) {
        rk_fail(RK_ENOMEM, "out of memory for the ReKV summary");
        cli_die();
    }
    rk_rekv_summarize(r, s);
    char text[1024];
    rk_rekv_verdict_text(s, text, sizeof text);
    fprintf(stderr, "[rekv] K=%d: %s\n", r->k, text);

    char *path = run_file(dir, "summary", r->k);
    cJSON *j = summary_json(r, s, meta);
    cli_write_json(path, j);
    cJSON_Delete(j);
    free(path);
    path = run_file(dir, "events", r->k);
    j = events_json(r, meta);
    cli_write_json(path, j);
    cJSON_Delete(j);
    free(path);

    if (r->n == 0)
        fprintf(stderr, "[rekv] K=%d: no rejected draft token with its target row; no plot "
                        "drawn\n", r->k);
    for (int fig = 0; r->n > 0 && fig < REKV_REPORT_PLOTS; fig++) {
        cli_plot_paths p = plot_files(dir, rekv_report_plot_names[fig], r->k);
        const plot_ctx c = {.r = r, .s = s, .meta = meta, .dat = p.dat, .fig = fig};
        write_dat(&c);
        cli_plot(&p, plot_script, &c);
        free_plot_files(&p);
    }
    free(s);
}

void rekv_report_combined(const char *dir, const rk_rekv *const *runs,
                          const rekv_report_meta *metas, int n)
{
    rk_rekv_summary *s = malloc(sizeof *s);
    if (!s) {
        rk_fail(RK_ENOMEM, "out of memory for the ReKV summary");
        cli_die();
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "analysis", "rekv_rejected_kv");
    cJSON *rows = cJSON_AddArrayToObject(j, "runs");
    for (int i = 0; i < n; i++) {
        rk_rekv_summarize(runs[i], s);
        cJSON *o = run_json(runs[i], &metas[i]);
        cJSON_AddItemToObject(o, "overall", pair_json(&s->all));
        cJSON_AddStringToObject(o, "verdict", rk_rekv_verdict_name(s->verdict));
        add_mean(o, "score", s->score, s->events);
        cJSON_AddItemToArray(rows, o);
    }
    char *path = in_dir(dir, "combined_results.json");
    cli_write_json(path, j);
    cJSON_Delete(j);
    free(path);
    free(s);
}
