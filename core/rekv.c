#include "rekv.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rk_rekv_map_layer(int i, int draft_layers, int target_layers)
{
    if (draft_layers <= 1)
        return 0;
    /* round(i (L_t - 1) / (L_d - 1)) in integers, so that a layer exactly
     * between two never depends on how a double rounds. */
    const long num = (long)i * (target_layers - 1), den = draft_layers - 1;
    return (int)((2 * num + den) / (2 * den));
}

/* Cosine of one head's two vectors from their dot product and squared
 * norms, held to [-1, 1] against rounding. */
static double head_cosine(double ab, double aa, double bb)
{
    if (aa == 0 || bb == 0)
        return aa == bb ? 1.0 : 0.0;
    const double c = ab / sqrt(aa * bb);
    return c > 1 ? 1 : c < -1 ? -1 : c;
}

void rk_rekv_compare(const float *a, int a_heads, int a_dim, const float *b, int b_heads,
                     int b_dim, double *cos, double *l2)
{
    const int H = a_heads < b_heads ? a_heads : b_heads, D = a_dim < b_dim ? a_dim : b_dim;
    double cos_sum = 0, sq = 0;
    for (int h = 0; h < H; h++) {
        const float *x = a + (size_t)h * a_dim, *y = b + (size_t)h * b_dim;
        double ab = 0, aa = 0, bb = 0;
        for (int d = 0; d < D; d++) {
            ab += (double)x[d] * y[d];
            aa += (double)x[d] * x[d];
            bb += (double)y[d] * y[d];
            sq += ((double)x[d] - y[d]) * ((double)x[d] - y[d]);
        }
        cos_sum += head_cosine(ab, aa, bb);
    }
    *cos = H > 0 ? cos_sum / H : 0;
    *l2 = sqrt(sq);
}

double rk_rekv_prob(const float *logits, int vocab, int token)
{
    if (token < 0 || token >= vocab)
        return NAN;
    double mx = logits[0], sum = 0;
    for (int i = 1; i < vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < vocab; i++)
        sum += exp((double)logits[i] - mx);
    return exp((double)logits[token] - mx) / sum;
}

int rk_rekv_rank(const float *logits, int vocab, int token)
{
    if (token < 0 || token >= vocab)
        return -1;
    const float x = logits[token];
    int rank = 1;
    for (int i = 0; i < vocab; i++)
        rank += logits[i] > x || (logits[i] == x && i < token);
    return rank;
}

static const double conf_edges[RK_REKV_CONF_BINS - 1] = {0.2, 0.4, 0.6, 0.8};

int rk_rekv_conf_bin(double p)
{
    int b = 0;
    while (b < RK_REKV_CONF_BINS - 1 && p >= conf_edges[b])
        b++;
    return b;
}

const char *rk_rekv_conf_bin_name(int bin)
{
    static const char *const names[RK_REKV_CONF_BINS] = {"[0.0,0.2)", "[0.2,0.4)", "[0.4,0.6)",
                                                         "[0.6,0.8)", "[0.8,1.0]"};
    return bin >= 0 && bin < RK_REKV_CONF_BINS ? names[bin] : "?";
}

/* The largest rank of each bin but the last. */
static const int rank_tops[RK_REKV_RANK_BINS - 1] = {2, 5, 10, 100};

int rk_rekv_rank_bin(int rank)
{
    if (rank < 2)
        return -1;
    int b = 0;
    while (b < RK_REKV_RANK_BINS - 1 && rank > rank_tops[b])
        b++;
    return b;
}

const char *rk_rekv_rank_bin_name(int bin)
{
    static const char *const names[RK_REKV_RANK_BINS] = {"2", "3-5", "6-10", "11-100", ">100"};
    return bin >= 0 && bin < RK_REKV_RANK_BINS ? names[bin] : "?";
}

rk_rekv_verdict rk_rekv_verdict_of(double score)
{
    return score > RK_REKV_GO_ABOVE        ? RK_REKV_GO
           : score >= RK_REKV_CAUTION_FROM ? RK_REKV_CAUTION
                                           : RK_REKV_NO_GO;
}

const char *rk_rekv_verdict_name(rk_rekv_verdict v)
{
    switch (v) {
    case RK_REKV_NO_DATA: return "NO-DATA";
    case RK_REKV_NO_GO: return "NO-GO";
    case RK_REKV_CAUTION: return "CAUTION";
    case RK_REKV_GO: return "GO";
    }
    return "?";
}

rk_status rk_rekv_new(const rk_config *draft, const rk_config *target, int k, rk_rekv **out)
{
    *out = NULL;
    if (k < 1 || k > RK_REKV_MAX_K)
        return rk_fail(RK_EINVAL, "ReKV analysis of a %d-token draft window (1..%d)", k,
                       RK_REKV_MAX_K);
    rk_rekv *r = calloc(1, sizeof *r);
    if (!r)
        return rk_fail(RK_ENOMEM, "out of memory for the ReKV analysis");
    r->k = k;
    r->draft_layers = draft->n_layers;
    r->draft_heads = draft->n_heads;
    r->draft_dim = draft->head_dim;
    r->target_layers = target->n_layers;
    r->target_heads = target->n_heads;
    r->target_dim = target->head_dim;
    r->heads = r->draft_heads < r->target_heads ? r->draft_heads : r->target_heads;
    r->dims = r->draft_dim < r->target_dim ? r->draft_dim : r->target_dim;
    for (int i = 0; i < r->draft_layers; i++)
        r->map[i] = rk_rekv_map_layer(i, r->draft_layers, r->target_layers);
    *out = r;
    return RK_OK;
}

void rk_rekv_free(rk_rekv *r)
{
    if (!r)
        return;
    free(r->events);
    free(r->draft_sims);
    free(r->self_sims);
    free(r);
}

rk_status rk_rekv_rows_alloc(const rk_rekv *r, rk_rekv_rows *rows)
{
    const size_t d = (size_t)r->draft_layers * r->draft_heads * r->draft_dim;
    const size_t t = (size_t)r->target_layers * r->target_heads * r->target_dim;
    *rows = (rk_rekv_rows){
        .draft_k = malloc(d * sizeof(float)), .draft_v = malloc(d * sizeof(float)),
        .rejected_k = malloc(t * sizeof(float)), .rejected_v = malloc(t * sizeof(float)),
        .truth_k = malloc(t * sizeof(float)), .truth_v = malloc(t * sizeof(float))};
    if (!rows->draft_k || !rows->draft_v || !rows->rejected_k || !rows->rejected_v ||
        !rows->truth_k || !rows->truth_v) {
        rk_rekv_rows_free(rows);
        return rk_fail(RK_ENOMEM, "out of memory for one event's KV rows");
    }
    return RK_OK;
}

void rk_rekv_rows_free(rk_rekv_rows *rows)
{
    free(rows->draft_k);
    free(rows->draft_v);
    free(rows->rejected_k);
    free(rows->rejected_v);
    free(rows->truth_k);
    free(rows->truth_v);
    *rows = (rk_rekv_rows){0};
}

/* Room for one more event, doubling. */
static rk_status reserve(rk_rekv *r)
{
    if (r->n < r->cap)
        return RK_OK;
    const int cap = r->cap ? 2 * r->cap : 64;
    rk_rekv_event *e = realloc(r->events, (size_t)cap * sizeof *e);
    if (e)
        r->events = e;
    rk_rekv_sim *d = realloc(r->draft_sims, (size_t)cap * r->draft_layers * sizeof *d);
    if (d)
        r->draft_sims = d;
    rk_rekv_sim *s = realloc(r->self_sims, (size_t)cap * r->target_layers * sizeof *s);
    if (s)
        r->self_sims = s;
    if (!e || !d || !s)
        return rk_fail(RK_ENOMEM, "out of memory for %d ReKV events", cap);
    r->cap = cap;
    return RK_OK;
}

static int sim_finite(const rk_rekv_sim *s)
{
    return isfinite(s->cos_k) && isfinite(s->cos_v) && isfinite(s->l2_k) && isfinite(s->l2_v);
}

static void sim_add(rk_rekv_sim *sum, const rk_rekv_sim *x, double w)
{
    sum->cos_k += w * x->cos_k;
    sum->cos_v += w * x->cos_v;
    sum->l2_k += w * x->l2_k;
    sum->l2_v += w * x->l2_v;
}

rk_status rk_rekv_add(rk_rekv *r, const rk_rekv_rows *rows)
{
    if (rows->window_pos < 1 || rows->window_pos > r->k)
        return rk_fail(RK_EINVAL, "a rejection at window position %d of a %d-token window",
                       rows->window_pos, r->k);
    if (!(rows->draft_prob >= 0 && rows->draft_prob <= 1))
        return rk_fail(RK_EINVAL, "the draft's probability of its token is %g, not in [0, 1]",
                       rows->draft_prob);
    if (rows->target_rank < 2)
        return rk_fail(RK_EINVAL, "a rejected token of target rank %d: greedy verification "
                                  "rejects only tokens that are not the target's argmax (rank "
                                  "2 or more)",
                       rows->target_rank);
    rk_status st = reserve(r);
    if (st != RK_OK)
        return st;
    rk_rekv_event *e = &r->events[r->n];
    *e = (rk_rekv_event){.window_pos = rows->window_pos, .position = rows->position,
                         .draft_token = rows->draft_token, .target_token = rows->target_token,
                         .draft_prob = rows->draft_prob, .target_rank = rows->target_rank};
    rk_rekv_sim *ds = r->draft_sims + (size_t)r->n * r->draft_layers;
    rk_rekv_sim *ss = r->self_sims + (size_t)r->n * r->target_layers;
    const size_t dl = (size_t)r->draft_heads * r->draft_dim;
    const size_t tl = (size_t)r->target_heads * r->target_dim;
    for (int i = 0; i < r->draft_layers; i++) {
        const size_t t = (size_t)r->map[i] * tl;
        rk_rekv_compare(rows->draft_k + i * dl, r->draft_heads, r->draft_dim, rows->truth_k + t,
                        r->target_heads, r->target_dim, &ds[i].cos_k, &ds[i].l2_k);
        rk_rekv_compare(rows->draft_v + i * dl, r->draft_heads, r->draft_dim, rows->truth_v + t,
                        r->target_heads, r->target_dim, &ds[i].cos_v, &ds[i].l2_v);
        if (!sim_finite(&ds[i]))
            return rk_fail(RK_EINVAL, "draft layer %d's rows at position %d are not finite", i,
                           rows->position);
        sim_add(&e->draft, &ds[i], 1.0 / r->draft_layers);
    }
    for (int l = 0; l < r->target_layers; l++) {
        const size_t t = (size_t)l * tl;
        rk_rekv_compare(rows->rejected_k + t, r->target_heads, r->target_dim, rows->truth_k + t,
                        r->target_heads, r->target_dim, &ss[l].cos_k, &ss[l].l2_k);
        rk_rekv_compare(rows->rejected_v + t, r->target_heads, r->target_dim, rows->truth_v + t,
                        r->target_heads, r->target_dim, &ss[l].cos_v, &ss[l].l2_v);
        if (!sim_finite(&ss[l]))
            return rk_fail(RK_EINVAL, "target layer %d's rows at position %d are not finite", l,
                           rows->position);
        sim_add(&e->self, &ss[l], 1.0 / r->target_layers);
    }
    r->n++;
    return RK_OK;
}

const rk_rekv_sim *rk_rekv_draft_sims(const rk_rekv *r, int e)
{
    return r->draft_sims + (size_t)e * r->draft_layers;
}

const rk_rekv_sim *rk_rekv_self_sims(const rk_rekv *r, int e)
{
    return r->self_sims + (size_t)e * r->target_layers;
}

/* Sums in S.mean until finish() divides them. */
static void stat_add(rk_rekv_stat *s, const rk_rekv_sim *x)
{
    s->n++;
    sim_add(&s->mean, x, 1.0);
}

static void pair_add(rk_rekv_pair *p, const rk_rekv_event *e)
{
    stat_add(&p->draft, &e->draft);
    stat_add(&p->self, &e->self);
}

static void finish(rk_rekv_stat *s)
{
    if (s->n) {
        const rk_rekv_sim sum = s->mean;
        s->mean = (rk_rekv_sim){0};
        sim_add(&s->mean, &sum, 1.0 / s->n);
    }
}

static void finish_pair(rk_rekv_pair *p)
{
    finish(&p->draft);
    finish(&p->self);
}

static int hist_bin(double cos)
{
    const int b = (int)floor((cos + 1) * (RK_REKV_HIST_BINS / 2));
    return b < 0 ? 0 : b >= RK_REKV_HIST_BINS ? RK_REKV_HIST_BINS - 1 : b;
}

static int passes(const rk_rekv_stat *s)
{
    return s->n > 0 && (s->mean.cos_k + s->mean.cos_v) / 2 > RK_REKV_GO_ABOVE;
}

void rk_rekv_summarize(const rk_rekv *r, rk_rekv_summary *s)
{
    memset(s, 0, sizeof *s);
    s->k = r->k;
    s->events = r->n;
    s->draft_layers = r->draft_layers;
    s->target_layers = r->target_layers;
    s->heads = r->heads;
    s->dims = r->dims;
    memcpy(s->map, r->map, sizeof s->map);
    for (int e = 0; e < r->n; e++) {
        const rk_rekv_event *ev = &r->events[e];
        pair_add(&s->all, ev);
        pair_add(&s->by_window[ev->window_pos - 1], ev);
        pair_add(&s->by_conf[rk_rekv_conf_bin(ev->draft_prob)], ev);
        pair_add(&s->by_rank[rk_rekv_rank_bin(ev->target_rank)], ev);
        const rk_rekv_sim *ds = rk_rekv_draft_sims(r, e), *ss = rk_rekv_self_sims(r, e);
        for (int i = 0; i < r->draft_layers; i++) {
            stat_add(&s->by_draft_layer[i], &ds[i]);
            s->hist_draft_k[hist_bin(ds[i].cos_k)]++;
            s->hist_draft_v[hist_bin(ds[i].cos_v)]++;
        }
        for (int l = 0; l < r->target_layers; l++) {
            stat_add(&s->by_target_layer[l], &ss[l]);
            s->hist_self_k[hist_bin(ss[l].cos_k)]++;
            s->hist_self_v[hist_bin(ss[l].cos_v)]++;
        }
    }
    finish_pair(&s->all);
    for (int j = 0; j < r->k; j++)
        finish_pair(&s->by_window[j]);
    for (int b = 0; b < RK_REKV_CONF_BINS; b++) {
        finish_pair(&s->by_conf[b]);
        s->conf_passes[b] = (unsigned char)passes(&s->by_conf[b].draft);
    }
    for (int b = 0; b < RK_REKV_RANK_BINS; b++)
        finish_pair(&s->by_rank[b]);
    for (int i = 0; i < r->draft_layers; i++) {
        finish(&s->by_draft_layer[i]);
        s->layer_passes[i] = (unsigned char)passes(&s->by_draft_layer[i]);
    }
    for (int l = 0; l < r->target_layers; l++)
        finish(&s->by_target_layer[l]);
    s->score = (s->all.draft.mean.cos_k + s->all.draft.mean.cos_v) / 2;
    s->verdict = r->n ? rk_rekv_verdict_of(s->score) : RK_REKV_NO_DATA;
}

/* Appends to BUF (LEN bytes, *AT used) what fits. */
static void put(char *buf, size_t len, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *at, const char *fmt, ...)
{
    if (*at >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(buf + *at, len - *at, fmt, ap);
    va_end(ap);
    *at = n < 0 ? len : *at + (size_t)n;
}

void rk_rekv_verdict_text(const rk_rekv_summary *s, char *buf, size_t len)
{
    size_t at = 0;
    if (len == 0)
        return;
    buf[0] = '\0';
    if (s->verdict == RK_REKV_NO_DATA) {
        put(buf, len, &at, "NO-DATA: no rejected draft token with its target row");
        return;
    }
    const rk_rekv_sim *m = &s->all.draft.mean;
    put(buf, len, &at, "%s: mean K/V cosine %.3f (K %.3f, V %.3f) over %d events",
        rk_rekv_verdict_name(s->verdict), s->score, m->cos_k, m->cos_v, s->events);
    if (s->verdict != RK_REKV_CAUTION)
        return;
    int any = 0;
    put(buf, len, &at, "; above %.1f: draft layers", RK_REKV_GO_ABOVE);
    for (int i = 0; i < s->draft_layers; i++)
        if (s->layer_passes[i]) {
            put(buf, len, &at, "%s %d (target %d)", any ? "," : "", i, s->map[i]);
            any = 1;
        }
    if (!any)
        put(buf, len, &at, " none");
    any = 0;
    put(buf, len, &at, "; confidence bins");
    for (int b = 0; b < RK_REKV_CONF_BINS; b++)
        if (s->conf_passes[b]) {
            put(buf, len, &at, "%s %s", any ? "," : "", rk_rekv_conf_bin_name(b));
            any = 1;
        }
    if (!any)
        put(buf, len, &at, " none");
}
