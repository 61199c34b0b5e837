/* The ReKV rejected-KV analysis: the layer map, exactly which heads and
 * dims are compared, the similarity values, ranks, bins, verdicts and
 * breakdowns on hand-made rows; the report's files (JSON parsed back,
 * plots where gnuplot is installed); and rk_model_kv_row on pythia-nano
 * against K/V computed on the host from the checkpoint and against another
 * run of the same tokens, with its refusals.
 * usage: test_rekv [cpu|cuda] (default cpu) */
#define _XOPEN_SOURCE 700 /* nftw */

#include <cjson/cJSON.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rekv.h"
#include "rekv_report.h"
#include "rk_test.h"
#include "safetensors.h"
#include "sampler.h"
#include "target_test.h"
#include "textio.h"

#define NANO RK_MODELS_DIR "/pythia-nano"

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }

static void layer_map(void)
{
    const int want[4] = {0, 8, 15, 23};
    for (int i = 0; i < 4; i++)
        CHECKF(rk_rekv_map_layer(i, 4, 24) == want[i], "4 -> 24: layer %d -> %d", i,
               rk_rekv_map_layer(i, 4, 24));
    CHECK(rk_rekv_map_layer(0, 1, 24) == 0);
    CHECK(rk_rekv_map_layer(0, 1, 1) == 0);
    for (int i = 0; i < 6; i++)
        CHECK(rk_rekv_map_layer(i, 6, 6) == i);
    /* 1 * 3 / 2 = 1.5: halves go up. */
    CHECK(rk_rekv_map_layer(1, 3, 4) == 2);
    /* Pythia-160M (12) onto 2.8B (32): 31/11 = 2.82, and the ends meet. */
    CHECK(rk_rekv_map_layer(1, 12, 32) == 3 && rk_rekv_map_layer(11, 12, 32) == 31);
    /* A deeper draft than target maps many to one. */
    CHECK(rk_rekv_map_layer(1, 4, 2) == 0 && rk_rekv_map_layer(2, 4, 2) == 1);
}

/* A is 3 heads x 4 dims, B 2 heads x 6: heads 0-1 and dims 0-3 are
 * compared; A's head 2 and B's dims 4-5 are not. */
static void compare_shapes(void)
{
    float a[3 * 4], b[2 * 6];
    for (int h = 0; h < 3; h++)
        for (int d = 0; d < 4; d++)
            a[h * 4 + d] = (float)(1 + h * 4 + d);
    for (int h = 0; h < 2; h++)
        for (int d = 0; d < 6; d++)
            b[h * 6 + d] = d < 4 ? a[h * 4 + d] : 1000.0f;
    a[2 * 4 + 1] = -1000.0f;
    double c, l2;
    rk_rekv_compare(a, 3, 4, b, 2, 6, &c, &l2);
    CHECKF(near(c, 1, 1e-12) && l2 == 0, "identical compared parts: cos %g l2 %g", c, l2);
    /* The same with the arguments swapped. */
    rk_rekv_compare(b, 2, 6, a, 3, 4, &c, &l2);
    CHECK(near(c, 1, 1e-12) && l2 == 0);
    /* Every compared element counts: head 1, dim 3 of A. */
    a[1 * 4 + 3] += 2.0f;
    rk_rekv_compare(a, 3, 4, b, 2, 6, &c, &l2);
    CHECKF(c < 1 - 1e-6 && near(l2, 2, 1e-12), "cos %g l2 %g", c, l2);
    a[1 * 4 + 3] -= 2.0f;
    /* B's dim 4 and A's head 2 never do. */
    b[4] = -5.0f;
    a[2 * 4] = 7.0f;
    rk_rekv_compare(a, 3, 4, b, 2, 6, &c, &l2);
    CHECK(near(c, 1, 1e-12) && l2 == 0);

    /* Known values, one head of 2 dims: orthogonal, opposite, scaled. */
    const float x[2] = {3, 4}, y[2] = {-4, 3}, z[2] = {-3, -4}, w[2] = {6, 8};
    rk_rekv_compare(x, 1, 2, y, 1, 2, &c, &l2);
    CHECK(near(c, 0, 1e-12) && near(l2, sqrt(50), 1e-12));
    rk_rekv_compare(x, 1, 2, z, 1, 2, &c, &l2);
    CHECK(near(c, -1, 1e-12) && near(l2, 10, 1e-12));
    rk_rekv_compare(x, 1, 2, w, 1, 2, &c, &l2);
    CHECK(near(c, 1, 1e-12) && near(l2, 5, 1e-12));

    /* The mean over heads, not one cosine over the concatenation: head 0
     * identical with norm 50, head 1 opposite with norm 1 gives 0 (the
     * concatenated cosine would be 0.998). */
    const float p[4] = {30, 40, 0.6f, 0.8f}, q[4] = {30, 40, -0.6f, -0.8f};
    rk_rekv_compare(p, 2, 2, q, 2, 2, &c, &l2);
    CHECKF(near(c, 0, 1e-7) && near(l2, 2, 1e-6), "cos %g l2 %g", c, l2);

    /* Zero vectors: both zero are alike, one zero is not. */
    const float zero[2] = {0, 0};
    rk_rekv_compare(zero, 1, 2, zero, 1, 2, &c, &l2);
    CHECK(c == 1 && l2 == 0);
    rk_rekv_compare(zero, 1, 2, x, 1, 2, &c, &l2);
    CHECK(c == 0 && near(l2, 5, 1e-12));
}

static void probs_ranks_bins(void)
{
    const float logits[4] = {1, 3, 3, 0};
    CHECK(rk_argmax(logits, 4) == 1);
    CHECK(rk_rekv_rank(logits, 4, 1) == 1 && rk_rekv_rank(logits, 4, 2) == 2 &&
          rk_rekv_rank(logits, 4, 0) == 3 && rk_rekv_rank(logits, 4, 3) == 4);
    CHECK(rk_rekv_rank(logits, 4, 4) == -1 && rk_rekv_rank(logits, 4, -1) == -1);
    double sum = 0;
    for (int i = 0; i < 4; i++)
        sum += rk_rekv_prob(logits, 4, i);
    const double z = exp(1) + 2 * exp(3) + 1;
    CHECK(near(sum, 1, 1e-12) && near(rk_rekv_prob(logits, 4, 2), exp(3) / z, 1e-12));
    CHECK(isnan(rk_rekv_prob(logits, 4, 9)));

    const double probs[] = {0, 0.1999, 0.2, 0.39, 0.4, 0.6, 0.79, 0.8, 1.0};
    const int conf[] = {0, 0, 1, 1, 2, 3, 3, 4, 4};
    for (int i = 0; i < (int)(sizeof conf / sizeof *conf); i++)
        CHECKF(rk_rekv_conf_bin(probs[i]) == conf[i], "p %g in bin %d", probs[i],
               rk_rekv_conf_bin(probs[i]));
    CHECK(strcmp(rk_rekv_conf_bin_name(0), "[0.0,0.2)") == 0 &&
          strcmp(rk_rekv_conf_bin_name(4), "[0.8,1.0]") == 0);

    const int ranks[] = {1, 2, 3, 5, 6, 10, 11, 100, 101, 50000};
    const int bins[] = {-1, 0, 1, 1, 2, 2, 3, 3, 4, 4};
    for (int i = 0; i < (int)(sizeof bins / sizeof *bins); i++)
        CHECKF(rk_rekv_rank_bin(ranks[i]) == bins[i], "rank %d in bin %d", ranks[i],
               rk_rekv_rank_bin(ranks[i]));
    const char *names[RK_REKV_RANK_BINS] = {"2", "3-5", "6-10", "11-100", ">100"};
    for (int b = 0; b < RK_REKV_RANK_BINS; b++)
        CHECK(strcmp(rk_rekv_rank_bin_name(b), names[b]) == 0);

    CHECK(rk_rekv_verdict_of(0.71) == RK_REKV_GO);
    CHECK(rk_rekv_verdict_of(0.7) == RK_REKV_CAUTION);
    CHECK(rk_rekv_verdict_of(0.6) == RK_REKV_CAUTION);
    CHECK(rk_rekv_verdict_of(0.5) == RK_REKV_CAUTION);
    CHECK(rk_rekv_verdict_of(0.49) == RK_REKV_NO_GO);
    CHECK(rk_rekv_verdict_of(0.3) == RK_REKV_NO_GO);
    CHECK(strcmp(rk_rekv_verdict_name(RK_REKV_NO_GO), "NO-GO") == 0 &&
          strcmp(rk_rekv_verdict_name(RK_REKV_GO), "GO") == 0);
}

/* The synthetic runs: a draft of 4 layers x 3 heads x 4 dims, a target of
 * 6 layers x 2 heads x 6 dims (map 0, 2, 3, 5), K = 4. */
static const rk_config draft_cfg = {.n_layers = 4, .n_heads = 3, .head_dim = 4};
static const rk_config target_cfg = {.n_layers = 6, .n_heads = 2, .head_dim = 6};

/* Target truth of layer l: each head the unit vector along dim l % 4, so
 * that a wrong layer map would change every cosine. The draft's row of
 * layer i: WANT[i] along its target layer's vector, the rest along the next
 * dim, so each compared head's cosine is WANT[i]; its head 2 (not compared)
 * is noise. The target's rejected rows: the truth, but negated in target
 * layer 0 when FLIP. K and V alike. */
static void fill_event(const rk_rekv *r, rk_rekv_rows *ev, const double *want, int flip)
{
    const int TH = target_cfg.n_heads, TD = target_cfg.head_dim;
    const int DH = draft_cfg.n_heads, DD = draft_cfg.head_dim;
    for (int l = 0; l < target_cfg.n_layers; l++)
        for (int h = 0; h < TH; h++)
            for (int d = 0; d < TD; d++) {
                const size_t at = ((size_t)l * TH + h) * TD + d;
                ev->truth_k[at] = ev->truth_v[at] = d == l % 4 ? 1.0f : 0.0f;
                ev->rejected_k[at] = ev->rejected_v[at] =
                    (flip && l == 0 ? -1.0f : 1.0f) * ev->truth_k[at];
            }
    for (int i = 0; i < draft_cfg.n_layers; i++) {
        const int u = r->map[i] % 4, w = (u + 1) % 4;
        for (int h = 0; h < DH; h++)
            for (int d = 0; d < DD; d++) {
                const size_t at = ((size_t)i * DH + h) * DD + d;
                float x = d == u ? (float)want[i] : d == w ? (float)sqrt(1 - want[i] * want[i]) : 0;
                if (h == 2)
                    x = (float)(d + 1) * 9.0f;
                ev->draft_k[at] = ev->draft_v[at] = x;
            }
    }
}

/* Two events, CAUTION overall: draft layers 2 and 3 and the top confidence
 * bin pass, the rest do not. */
static rk_rekv *caution_run(void)
{
    rk_rekv *r = NULL;
    CHECK(rk_rekv_new(&draft_cfg, &target_cfg, 4, &r) == RK_OK);
    if (!r)
        return NULL;
    CHECK(r->map[0] == 0 && r->map[1] == 2 && r->map[2] == 3 && r->map[3] == 5);
    CHECK(r->heads == 2 && r->dims == 4);
    rk_rekv_rows ev;
    CHECK(rk_rekv_rows_alloc(r, &ev) == RK_OK);
    const double a[4] = {0.8, 0.8, 0.9, 0.9}, b[4] = {0.0, 0.0, 0.9, 0.9};
    fill_event(r, &ev, a, 0);
    ev.window_pos = 1, ev.position = 20, ev.draft_token = 5, ev.target_token = 6;
    ev.draft_prob = 0.9, ev.target_rank = 2;
    CHECKF(rk_rekv_add(r, &ev) == RK_OK, "%s", rk_last_error());
    fill_event(r, &ev, b, 1);
    ev.window_pos = 3, ev.position = 31, ev.draft_token = 7, ev.target_token = 8;
    ev.draft_prob = 0.1, ev.target_rank = 50;
    CHECKF(rk_rekv_add(r, &ev) == RK_OK, "%s", rk_last_error());

    /* Refusals store nothing. */
    ev.window_pos = 0;
    CHECK(rk_rekv_add(r, &ev) == RK_EINVAL);
    ev.window_pos = 5;
    CHECK(rk_rekv_add(r, &ev) == RK_EINVAL);
    ev.window_pos = 2, ev.draft_prob = 1.5;
    CHECK(rk_rekv_add(r, &ev) == RK_EINVAL);
    ev.draft_prob = 0.5, ev.target_rank = 1;
    CHECK(rk_rekv_add(r, &ev) == RK_EINVAL && strstr(rk_last_error(), "rank 1"));
    ev.target_rank = 3, ev.draft_k[0] = NAN;
    CHECK(rk_rekv_add(r, &ev) == RK_EINVAL && strstr(rk_last_error(), "not finite"));
    CHECK(r->n == 2);
    rk_rekv_rows_free(&ev);
    return r;
}

static void accumulate(void)
{
    rk_rekv *r = caution_run();
    if (!r)
        return;
    const rk_rekv_sim *d0 = rk_rekv_draft_sims(r, 0), *d1 = rk_rekv_draft_sims(r, 1);
    CHECK(near(d0[0].cos_k, 0.8, 1e-6) && near(d0[3].cos_v, 0.9, 1e-6));
    CHECK(near(d1[0].cos_k, 0.0, 1e-6) && near(d1[2].cos_k, 0.9, 1e-6));
    /* Per head |draft - truth|^2 = 2 - 2 cos; over 2 compared heads. */
    CHECK(near(d0[0].l2_k, sqrt(2 * (2 - 2 * 0.8)), 1e-6));
    CHECK(near(r->events[0].draft.cos_k, 0.85, 1e-6) && near(r->events[1].draft.cos_v, 0.45, 1e-6));
    const rk_rekv_sim *s1 = rk_rekv_self_sims(r, 1);
    CHECK(s1[0].cos_k == -1 && near(s1[0].l2_k, 2 * sqrt(2), 1e-12) && s1[1].cos_v == 1 &&
          s1[1].l2_v == 0);

    static rk_rekv_summary s;
    rk_rekv_summarize(r, &s);
    CHECK(s.events == 2 && s.k == 4);
    CHECK(near(s.all.draft.mean.cos_k, 0.65, 1e-6) && near(s.score, 0.65, 1e-6));
    CHECK(s.verdict == RK_REKV_CAUTION);
    const double layer_want[4] = {0.4, 0.4, 0.9, 0.9};
    for (int i = 0; i < 4; i++) {
        CHECK(s.by_draft_layer[i].n == 2 &&
              near(s.by_draft_layer[i].mean.cos_v, layer_want[i], 1e-6));
        CHECK(s.layer_passes[i] == (i >= 2));
    }
    CHECK(s.by_target_layer[0].n == 2 && near(s.by_target_layer[0].mean.cos_k, 0, 1e-12) &&
          near(s.by_target_layer[0].mean.l2_k, sqrt(2), 1e-12));
    CHECK(near(s.by_target_layer[5].mean.cos_v, 1, 1e-12));
    /* Windows 1 and 3 hold one rejection each. */
    CHECK(s.by_window[0].draft.n == 1 && s.by_window[1].draft.n == 0 &&
          s.by_window[2].draft.n == 1 && s.by_window[3].draft.n == 0);
    CHECK(near(s.by_window[2].draft.mean.cos_k, 0.45, 1e-6));
    CHECK(s.by_conf[4].draft.n == 1 && s.by_conf[0].draft.n == 1 && s.conf_passes[4] &&
          !s.conf_passes[0]);
    CHECK(s.by_rank[0].draft.n == 1 && s.by_rank[3].draft.n == 1 && s.by_rank[1].draft.n == 0);
    CHECK(near(s.by_rank[3].self.mean.cos_k, 4.0 / 6.0, 1e-12));
    /* Histogram: 8 draft rows, 0.0 (2, exactly), 0.8 and 0.9 (6, each
     * within float rounding of a bin edge). */
    int total = 0;
    for (int b = 0; b < RK_REKV_HIST_BINS; b++)
        total += s.hist_draft_k[b];
    CHECK(total == 8 && s.hist_draft_k[10] == 2 &&
          s.hist_draft_k[17] + s.hist_draft_k[18] + s.hist_draft_k[19] == 6);
    CHECK(s.hist_self_k[0] == 1 && s.hist_self_k[19] == 11);

    char text[512];
    rk_rekv_verdict_text(&s, text, sizeof text);
    CHECKF(strstr(text, "CAUTION") &&
               strstr(text, "draft layers 2 (target 3), 3 (target 5)") &&
               strstr(text, "confidence bins [0.8,1.0]") && !strstr(text, "[0.0,0.2)"),
           "%s", text);
    rk_rekv_free(r);

    /* GO and NO-GO from the same construction; K and V apart. */
    rk_rekv *g = NULL;
    CHECK(rk_rekv_new(&draft_cfg, &target_cfg, 2, &g) == RK_OK);
    rk_rekv_rows ev;
    CHECK(rk_rekv_rows_alloc(g, &ev) == RK_OK);
    const double hi[4] = {0.71, 0.71, 0.71, 0.71};
    fill_event(g, &ev, hi, 0);
    ev.window_pos = 2, ev.draft_prob = 0.3, ev.target_rank = 4;
    CHECK(rk_rekv_add(g, &ev) == RK_OK);
    rk_rekv_summarize(g, &s);
    CHECK(s.verdict == RK_REKV_GO && near(s.score, 0.71, 1e-6));
    rk_rekv_verdict_text(&s, text, sizeof text);
    CHECK(strncmp(text, "GO:", 3) == 0 && !strstr(text, "layers"));
    rk_rekv_free(g);
    CHECK(rk_rekv_new(&draft_cfg, &target_cfg, 2, &g) == RK_OK);
    const double lo[4] = {0.3, 0.3, 0.3, 0.3};
    fill_event(g, &ev, lo, 0);
    for (size_t i = 0; i < (size_t)4 * 3 * 4; i++)
        ev.draft_v[i] = -ev.draft_v[i];
    CHECK(rk_rekv_add(g, &ev) == RK_OK);
    rk_rekv_summarize(g, &s);
    CHECK(near(s.all.draft.mean.cos_k, 0.3, 1e-6) && near(s.all.draft.mean.cos_v, -0.3, 1e-6));
    CHECK(s.verdict == RK_REKV_NO_GO);
    rk_rekv_free(g);
    rk_rekv_rows_free(&ev);

    CHECK(rk_rekv_new(&draft_cfg, &target_cfg, 0, &g) == RK_EINVAL && !g);
    CHECK(rk_rekv_new(&draft_cfg, &target_cfg, RK_REKV_MAX_K + 1, &g) == RK_EINVAL);
}

static cJSON *read_json(const char *path)
{
    char *text;
    size_t len;
    if (rk_read_file(path, (size_t)1 << 26, &text, &len) != RK_OK) {
        CHECKF(0, "%s", rk_last_error());
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    CHECKF(j != NULL, "%s is not JSON", path);
    return j;
}

static int is_png(const char *path)
{
    unsigned char sig[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    const size_t n = fread(sig, 1, sizeof sig, f);
    fclose(f);
    return n == 8 && memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    return remove(path);
}

static void report(void)
{
    char dir[] = "/tmp/rk_rekv_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECKF(0, "mkdtemp failed");
        return;
    }
    rk_rekv *run = caution_run(), *empty = NULL;
    CHECK(rk_rekv_new(&draft_cfg, &target_cfg, 2, &empty) == RK_OK);
    if (!run || !empty)
        return;
    const int ks[2] = {4, 2};
    rekv_report_check(dir, ks, 2);
    const rekv_report_meta meta[2] = {{"draft-4l", "target-6l", 10, 40, 30, 1},
                                      {"draft-4l", "target-6l", 5, 10, 10, 0}};
    rekv_report_write(dir, run, &meta[0]);
    rekv_report_write(dir, empty, &meta[1]);
    const rk_rekv *runs[2] = {run, empty};
    rekv_report_combined(dir, runs, meta, 2);

    char path[512];
    snprintf(path, sizeof path, "%s/summary_K4.json", dir);
    cJSON *j = read_json(path);
    if (j) {
        const cJSON *v = cJSON_GetObjectItem(j, "verdict");
        CHECK(strcmp(cJSON_GetObjectItem(v, "verdict")->valuestring, "CAUTION") == 0);
        CHECK(near(cJSON_GetObjectItem(v, "score")->valuedouble, 0.65, 1e-6));
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(v, "draft_layers_above_go")) == 2);
        CHECK(cJSON_GetObjectItem(j, "events")->valueint == 2 &&
              cJSON_GetObjectItem(j, "truth_steps")->valueint == 1);
        CHECK(near(cJSON_GetObjectItem(j, "acceptance_rate")->valuedouble, 0.75, 1e-12));
        const cJSON *by = cJSON_GetObjectItem(j, "by_layer");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(by, "draft_vs_target")) == 4 &&
              cJSON_GetArraySize(cJSON_GetObjectItem(by, "target_rejected_vs_target")) == 6);
        const cJSON *win = cJSON_GetObjectItem(j, "by_window_position");
        CHECK(cJSON_GetArraySize(win) == 4);
        /* An empty bin's means are null, not zeros. */
        const cJSON *w2 = cJSON_GetObjectItem(cJSON_GetArrayItem(win, 1), "draft_vs_target");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(w2, "cos_k")));
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "by_draft_confidence")) == 5 &&
              cJSON_GetArraySize(cJSON_GetObjectItem(j, "by_target_rank")) == 5);
        const cJSON *rej = cJSON_GetObjectItem(j, "rejection_positions");
        CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(rej, 2), "count")->valueint == 1);
        cJSON_Delete(j);
    }
    snprintf(path, sizeof path, "%s/events_K4.json", dir);
    if ((j = read_json(path))) {
        const cJSON *list = cJSON_GetObjectItem(j, "event_list");
        CHECK(cJSON_GetArraySize(list) == 2);
        const cJSON *e1 = cJSON_GetArrayItem(list, 1);
        CHECK(cJSON_GetObjectItem(e1, "target_rank")->valueint == 50 &&
              cJSON_GetObjectItem(e1, "window_position")->valueint == 3);
        const cJSON *d = cJSON_GetObjectItem(e1, "draft_vs_target");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(d, "cos_k")) == 4);
        const cJSON *t = cJSON_GetObjectItem(e1, "target_rejected_vs_target");
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(t, "l2_v")) == 6);
        cJSON_Delete(j);
    }
    snprintf(path, sizeof path, "%s/summary_K2.json", dir);
    if ((j = read_json(path))) {
        const cJSON *v = cJSON_GetObjectItem(j, "verdict");
        CHECK(strcmp(cJSON_GetObjectItem(v, "verdict")->valuestring, "NO-DATA") == 0);
        cJSON_Delete(j);
    }
    snprintf(path, sizeof path, "%s/combined_results.json", dir);
    if ((j = read_json(path))) {
        const cJSON *rows = cJSON_GetObjectItem(j, "runs");
        CHECK(cJSON_GetArraySize(rows) == 2);
        CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(rows, 0), "k")->valueint == 4 &&
              cJSON_GetObjectItem(cJSON_GetArrayItem(rows, 1), "k")->valueint == 2);
        cJSON_Delete(j);
    }

    const int gnuplot = system("command -v gnuplot >/dev/null 2>&1") == 0;
    if (!gnuplot)
        printf("gnuplot is not installed: the plots' data and scripts only\n");
    for (int f = 0; f < REKV_REPORT_PLOTS; f++) {
        snprintf(path, sizeof path, "%s/plots/%s_K4.png", dir, rekv_report_plot_names[f]);
        CHECKF(gnuplot ? is_png(path) : !exists(path), "%s", path);
        char side[600];
        snprintf(side, sizeof side, "%s.dat", path);
        CHECKF(exists(side), "%s", side);
        snprintf(side, sizeof side, "%s.gp", path);
        CHECKF(exists(side), "%s", side);
        /* No events: nothing drawn. */
        snprintf(path, sizeof path, "%s/plots/%s_K2.png.dat", dir, rekv_report_plot_names[f]);
        CHECK(!exists(path));
    }
    rk_rekv_free(run);
    rk_rekv_free(empty);
    CHECK(nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) == 0);
}

/* Layer 0's K and V at position POS for TOKEN, from the checkpoint in
 * double: LayerNorm of the embedding, the fused qkv projection (per head
 * [q|k|v]), rotary on the key's first rotary_dims (rotate_half). */
static void layer0_reference(const rk_safetensors *st, const rk_config *c, int token, int pos,
                             double *k, double *v)
{
    const int D = c->hidden, H = c->n_heads, hd = c->head_dim, R = c->rotary_dims;
    const rk_tensor *emb = rk_st_find(st, "gpt_neox.embed_in.weight");
    const rk_tensor *lw = rk_st_find(st, "gpt_neox.layers.0.input_layernorm.weight");
    const rk_tensor *lb = rk_st_find(st, "gpt_neox.layers.0.input_layernorm.bias");
    const rk_tensor *qw = rk_st_find(st, "gpt_neox.layers.0.attention.query_key_value.weight");
    const rk_tensor *qb = rk_st_find(st, "gpt_neox.layers.0.attention.query_key_value.bias");
    double x[1024], h[1024], mean = 0, var = 0;
    for (int i = 0; i < D; i++)
        mean += (x[i] = rk_tensor_value(emb, (size_t)token * D + i)) / D;
    for (int i = 0; i < D; i++)
        var += (x[i] - mean) * (x[i] - mean) / D;
    for (int i = 0; i < D; i++)
        h[i] = (x[i] - mean) / sqrt(var + c->ln_eps) * rk_tensor_value(lw, i) +
               rk_tensor_value(lb, i);
    for (int hh = 0; hh < H; hh++)
        for (int part = 1; part <= 2; part++)
            for (int d = 0; d < hd; d++) {
                const size_t row = ((size_t)hh * 3 + part) * hd + d;
                double y = rk_tensor_value(qb, row);
                for (int i = 0; i < D; i++)
                    y += rk_tensor_value(qw, row * D + i) * h[i];
                (part == 1 ? k : v)[hh * hd + d] = y;
            }
    for (int hh = 0; hh < H; hh++) {
        double *kh = k + hh * hd;
        for (int i = 0; i < R / 2; i++) {
            const double ang = pos * pow(c->rope_base, -2.0 * i / R);
            const double a = kh[i], b = kh[i + R / 2];
            kh[i] = a * cos(ang) - b * sin(ang);
            kh[i + R / 2] = b * cos(ang) + a * sin(ang);
        }
    }
}

/* Largest |a - b| relative to the largest |b|. */
static double rel_diff(const float *a, const double *b, int n)
{
    double d = 0, mx = 1e-30;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        mx = fmax(mx, fabs(b[i]));
    }
    return d / mx;
}

enum { PROMPT = 12, ROW = 2 * 80 }; /* pythia-nano: 2 heads x 80 dims */

static void kv_row(const rk_ops *ops)
{
    /* fp16 caches and activations are held to fp16 rounding, fp32 to the
     * order of summation. */
    const double tol = ops->kv_format == RK_KV_FP16 ? 2e-2 : 1e-4;
    rk_limits lim = {.max_prompt = 40, .max_new_tokens = 8, .prefill_chunk = 40,
                     .logits_rows = 1, .kv_format = ops->kv_format};
    rk_model *m = NULL;
    CHECKF(rk_model_load(NANO, ops, &lim, &m) == RK_OK, "%s", rk_last_error());
    if (!m)
        return;
    const rk_config *c = &m->cfg;
    CHECK(c->n_heads * c->head_dim == ROW && c->n_layers == 4);
    int32_t tokens[PROMPT];
    for (int i = 0; i < PROMPT; i++)
        tokens[i] = (int32_t)((i * 7919 + 13) % c->vocab);

    rk_seq s;
    rk_seq_reset(&s);
    CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK);
    static float k[4][PROMPT][ROW], v[4][PROMPT][ROW];
    for (int l = 0; l < 4; l++)
        for (int p = 0; p < PROMPT; p++)
            CHECKF(rk_model_kv_row(m, &s, l, p, k[l][p], v[l][p]) == RK_OK, "%s",
                   rk_last_error());

    /* Layer 0 against the checkpoint, at a few positions. */
    rk_safetensors *st = NULL;
    CHECK(rk_st_open(NANO, &st) == RK_OK);
    const int positions[3] = {0, 5, PROMPT - 1};
    for (int i = 0; st && i < 3; i++) {
        const int p = positions[i];
        double rk[ROW], rv[ROW];
        layer0_reference(st, c, tokens[p], p, rk, rv);
        const double dk = rel_diff(k[0][p], rk, ROW), dv = rel_diff(v[0][p], rv, ROW);
        CHECKF(dk <= tol && dv <= tol, "%s: layer 0 position %d differs from the checkpoint's "
               "by K %.2e V %.2e", ops->name, p, dk, dv);
    }
    rk_st_close(st);

    /* Every layer against a second run of the same tokens, one token at a
     * time (other kernels, other GEMM shapes). */
    rk_seq_reset(&s);
    for (int i = 0; i < PROMPT; i++)
        CHECK(rk_model_forward(m, &s, tokens + i, 1) == RK_OK);
    double worst = 0;
    float k2[ROW], v2[ROW];
    for (int l = 0; l < 4; l++)
        for (int p = 0; p < PROMPT; p++) {
            CHECK(rk_model_kv_row(m, &s, l, p, k2, v2) == RK_OK);
            worst = fmax(worst, fmax(rk_test_rel_diff(k2, k[l][p], ROW), rk_test_rel_diff(v2, v[l][p], ROW)));
        }
    printf("%s: KV rows of a prefill against one-token steps: %.2e\n", ops->name, worst);
    CHECKF(worst <= tol, "%s: rows differ by %.2e", ops->name, worst);
    /* Distinct positions are distinct rows. */
    CHECK(rk_test_rel_diff(k[3][4], k[3][5], ROW) > 1e-2);

    /* Positions not run are refused, before and after a rollback. */
    CHECK(rk_model_kv_row(m, &s, 0, PROMPT, k2, v2) == RK_EINVAL &&
          strstr(rk_last_error(), "has run 12 positions"));
    CHECK(rk_model_kv_row(m, &s, 0, -1, k2, v2) == RK_EINVAL);
    CHECK(rk_model_kv_row(m, &s, 4, 0, k2, v2) == RK_EINVAL &&
          strstr(rk_last_error(), "layers 0..3"));
    CHECK(rk_seq_truncate(m, &s, 6) == RK_OK);
    CHECK(rk_model_kv_row(m, &s, 2, 6, k2, v2) == RK_EINVAL);
    CHECK(rk_model_kv_row(m, &s, 2, 5, k2, v2) == RK_OK && rk_test_rel_diff(k2, k[2][5], ROW) <= tol);
    rk_model_free(m);

    /* Quantized caches read back through their format: near the fp32 rows
     * (layer 0 differs by the rounding of its own rows alone; the others
     * also by the attention above), not codes taken for floats. */
    const struct {
        rk_kv_format f;
        double tol0, tol;
    } quant[] = {{RK_KV_INT8, 1e-2, 3e-2}, {RK_KV_INT4, 0.1, 0.3}};
    for (int q = 0; ops->kv_format == RK_KV_FP32 && q < 2; q++) {
        rk_limits ql = lim;
        ql.kv_format = quant[q].f;
        CHECKF(rk_model_load(NANO, ops, &ql, &m) == RK_OK, "%s", rk_last_error());
        if (!m)
            continue;
        rk_seq_reset(&s);
        CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK);
        double d0 = 0, d = 0;
        for (int l = 0; l < 4; l++)
            for (int p = 0; p < PROMPT; p++) {
                CHECK(rk_model_kv_row(m, &s, l, p, k2, v2) == RK_OK);
                const double e = fmax(rk_test_rel_diff(k2, k[l][p], ROW), rk_test_rel_diff(v2, v[l][p], ROW));
                d0 = l == 0 ? fmax(d0, e) : d0;
                d = fmax(d, e);
            }
        printf("%s: %s rows against fp32: layer 0 %.2e, all %.2e\n", ops->name,
               rk_kv_format_name(quant[q].f), d0, d);
        CHECKF(d0 <= quant[q].tol0 && d <= quant[q].tol, "%s rows: %.2e, %.2e",
               rk_kv_format_name(quant[q].f), d0, d);
        rk_model_free(m);
    }

    /* A compressing policy's rows are not positions. */
    rk_kv_options opt = {.method = "snapkv", .average = 34};
    CHECK(rk_kv_policy_make(&opt, 4, &lim.kv) == RK_OK);
    CHECKF(rk_model_load(NANO, ops, &lim, &m) == RK_OK, "%s", rk_last_error());
    if (m) {
        int32_t prompt[40];
        for (int i = 0; i < 40; i++)
            prompt[i] = (int32_t)((i * 31 + 7) % m->cfg.vocab);
        rk_seq_reset(&s);
        CHECK(rk_model_prefill(m, &s, prompt, 40) == RK_OK);
        CHECK(rk_model_kv_row(m, &s, 0, 0, k2, v2) == RK_EINVAL &&
              strstr(rk_last_error(), "snapkv") && strstr(rk_last_error(), "not a position"));
        rk_model_free(m);
    }
}

int main(int argc, char **argv)
{
    const char *target = argc > 1 ? argv[1] : "cpu";
    const rk_ops *ops = rk_test_require_target(target);
    layer_map();
    compare_shapes();
    probs_ranks_bins();
    accumulate();
    report();
    kv_row(ops);
    return rk_test_finish("test_rekv");
}
