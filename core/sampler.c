#include "sampler.h"

#include <math.h>
#include <stdlib.h>

rk_status rk_sampler_configure(rk_sampler *s, const rk_sampling *cfg)
{
    if (!(cfg->temperature >= 0.0f) || !isfinite(cfg->temperature))
        return rk_fail(RK_EINVAL, "temperature must be a finite number ≥ 0 (got %g)",
                       (double)cfg->temperature);
    if (cfg->top_k < 0)
        return rk_fail(RK_EINVAL, "top-k must be ≥ 0 (got %d)", cfg->top_k);
    if (!(cfg->top_p > 0.0f && cfg->top_p <= 1.0f))
        return rk_fail(RK_EINVAL, "top-p must be in (0, 1] (got %g)", (double)cfg->top_p);
    s->cfg = *cfg;
    s->rng = cfg->seed ^ 0x9E3779B97F4A7C15ull;
    return RK_OK;
}

rk_status rk_sampler_init(rk_sampler *s, const rk_sampling *cfg, int vocab)
{
    rk_status st = rk_sampler_configure(s, cfg);
    if (st != RK_OK)
        return st;
    s->vocab = vocab;
    s->idx = malloc((size_t)vocab * sizeof *s->idx);
    s->prob = malloc((size_t)vocab * sizeof *s->prob);
    if (!s->idx || !s->prob) {
        rk_sampler_free(s);
        return rk_fail(RK_ENOMEM, "out of memory for the sampler");
    }
    return RK_OK;
}

void rk_sampler_free(rk_sampler *s)
{
    free(s->idx);
    free(s->prob);
    s->idx = NULL;
    s->prob = NULL;
}

int32_t rk_argmax(const float *logits, int vocab)
{
    int32_t best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* splitmix64: small, seedable, and good enough for sampling. */
static double next_uniform(rk_sampler *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* Sorts idx[0..n) by descending prob; heap sort keeps the worst case
 * bounded without recursion or allocation. */
static void sift(const float *p, int32_t *idx, int root, int n)
{
    for (;;) {
        int child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && p[idx[child + 1]] < p[idx[child]])
            child++;
        if (p[idx[root]] <= p[idx[child]])
            return;
        int32_t t = idx[root];
        idx[root] = idx[child];
        idx[child] = t;
        root = child;
    }
}

static void sort_desc(const float *p, int32_t *idx, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        sift(p, idx, i, n);
    for (int end = n - 1; end > 0; end--) {
        int32_t t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        sift(p, idx, 0, end);
    }
}

/* Top-p over idx[0..n) sorted by descending prob, then the seeded draw. */
static int32_t draw(rk_sampler *s, int n)
{
    const float top_p = s->cfg.top_p;
    if (top_p < 1.0f) {
        double total = 0, acc = 0;
        for (int i = 0; i < n; i++)
            total += s->prob[s->idx[i]];
        /* Keep the smallest prefix whose mass reaches top_p (at least one). */
        for (int i = 0; i < n; i++) {
            acc += s->prob[s->idx[i]];
            if (acc >= top_p * total) {
                n = i + 1;
                break;
            }
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++)
        total += s->prob[s->idx[i]];
    double u = next_uniform(s) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->prob[s->idx[i]];
        if (u < acc)
            return s->idx[i];
    }
    return s->idx[n - 1];
}

int32_t rk_sample(rk_sampler *s, const float *logits)
{
    const rk_sampling *c = &s->cfg;
    const int V = s->vocab;
    if (c->temperature == 0.0f)
        return rk_argmax(logits, V);

    float mx = logits[rk_argmax(logits, V)];
    for (int i = 0; i < V; i++) {
        s->prob[i] = expf((logits[i] - mx) / c->temperature);
        s->idx[i] = i;
    }
    int n = V;
    if (c->top_k > 0 || c->top_p < 1.0f) {
        sort_desc(s->prob, s->idx, V);
        if (c->top_k > 0 && c->top_k < n)
            n = c->top_k;
    }
    return draw(s, n);
}

int32_t rk_sample_top_k(rk_sampler *s, const float *vals, const int32_t *ids, int n)
{
    float mx = vals[0];
    for (int i = 1; i < n; i++)
        mx = vals[i] > mx ? vals[i] : mx;
    for (int i = 0; i < n; i++) {
        s->prob[ids[i]] = expf((vals[i] - mx) / s->cfg.temperature);
        s->idx[i] = ids[i];
    }
    sort_desc(s->prob, s->idx, n);
    return draw(s, n);
}
