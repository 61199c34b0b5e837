#include "rank_budget.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_budget.h"

#define MAX_LAYERS 256

static const char *const names[RK_RANK_N_STRATEGIES] = {
    "proportional", "softmax", "adaptive", "power", "random", "inverse"};

rk_status rk_rank_strategy_parse(const char *name, rk_rank_strategy *out)
{
    for (int i = 0; i < RK_RANK_N_STRATEGIES; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (rk_rank_strategy)i;
            return RK_OK;
        }
    return rk_fail(RK_EINVAL, "unknown rank strategy '%s' (have: " RK_RANK_STRATEGIES ")", name);
}

const char *rk_rank_strategy_name(rk_rank_strategy s)
{
    return s >= 0 && s < RK_RANK_N_STRATEGIES ? names[s] : "?";
}

int rk_rank_allocation_is_default(const rk_rank_allocation *a)
{
    return a->temperature == 0 && (a->power == 0 || a->power == RK_RANK_POWER_DEFAULT) &&
           (a->tiers == 0 || a->tiers == RK_RANK_TIERS_DEFAULT) &&
           (a->seed == 0 || a->seed == RK_RANK_SEED_DEFAULT);
}

/* Layer indices ordered by rank, ascending; equal ranks by index. */
static void order_by_rank(const double *rank, int layers, int *order)
{
    for (int i = 0; i < layers; i++) {
        int j = i;
        while (j > 0 && rank[order[j - 1]] > rank[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

static int descending(const void *a, const void *b)
{
    const int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* splitmix64: a seed gives the same shuffle on every machine. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Each layer's weight under A's strategy (the ablations weigh as
 * proportional; their shuffles follow), checked finite and > 0. */
static rk_status rank_weights(const rk_rank_allocation *a, const double *rank, int layers,
                              double *w)
{
    if (layers < 1 || layers > MAX_LAYERS)
        return rk_fail(RK_EINVAL, "budgets for %d layers (1..%d)", layers, MAX_LAYERS);
    /* 0 picks the default; a NaN or a negative value is an error, not a
     * silent default. */
    if (!isfinite(a->temperature) || a->temperature < 0)
        return rk_fail(RK_EINVAL,
                       "softmax temperature %g must be finite and > 0 (0: the mean rank)",
                       a->temperature);
    if (!isfinite(a->power) || a->power < 0)
        return rk_fail(RK_EINVAL, "rank power %g must be finite and > 0 (0: %g)", a->power,
                       RK_RANK_POWER_DEFAULT);
    if (a->tiers < 0)
        return rk_fail(RK_EINVAL, "rank tiers %d must be > 0 (0: %d)", a->tiers,
                       RK_RANK_TIERS_DEFAULT);
    double mean = 0, mx = rank[0];
    for (int l = 0; l < layers; l++) {
        if (!(rank[l] > 0 && rank[l] <= RK_RANK_MAX))
            return rk_fail(RK_EINVAL,
                           "effective rank of layer %d is %g; ranks must be > 0 and at most %d",
                           l, rank[l], RK_RANK_MAX);
        mean += rank[l] / layers;
        mx = rank[l] > mx ? rank[l] : mx;
    }
    int order[MAX_LAYERS];
    switch (a->strategy) {
    case RK_RANK_PROPORTIONAL:
    case RK_RANK_RANDOM:
    case RK_RANK_INVERSE: memcpy(w, rank, (size_t)layers * sizeof(double)); break;
    case RK_RANK_SOFTMAX: {
        const double t = a->temperature > 0 ? a->temperature : mean;
        /* Shifted by the largest rank: the same softmax, without overflow. */
        for (int l = 0; l < layers; l++)
            w[l] = exp((rank[l] - mx) / t);
        break;
    }
    case RK_RANK_POWER: {
        const double p = a->power > 0 ? a->power : RK_RANK_POWER_DEFAULT;
        for (int l = 0; l < layers; l++)
            w[l] = pow(rank[l], p);
        break;
    }
    case RK_RANK_ADAPTIVE: {
        const int tiers = a->tiers > 0 ? (a->tiers < layers ? a->tiers : layers)
                                       : (RK_RANK_TIERS_DEFAULT < layers ? RK_RANK_TIERS_DEFAULT
                                                                         : layers);
        order_by_rank(rank, layers, order);
        for (int t = 0; t < tiers; t++) {
            const int lo = t * layers / tiers, hi = (t + 1) * layers / tiers;
            double tier_mean = 0;
            for (int i = lo; i < hi; i++)
                tier_mean += rank[order[i]] / (hi - lo);
            for (int i = lo; i < hi; i++)
                w[order[i]] = tier_mean;
        }
        break;
    }
    default: return rk_fail(RK_EINVAL, "unknown rank strategy %d", (int)a->strategy);
    }
    for (int l = 0; l < layers; l++) {
        if (!(w[l] > 0))
            return rk_fail(RK_EINVAL, "%s budgets: layer %d's weight underflows (rank %g; %s)",
                           rk_rank_strategy_name(a->strategy), l, rank[l],
                           a->strategy == RK_RANK_SOFTMAX ? "raise the temperature"
                                                          : "lower the power");
        if (!isfinite(w[l]))
            return rk_fail(RK_EINVAL,
                           "%s budgets: layer %d's weight overflows (rank %g; lower the power)",
                           rk_rank_strategy_name(a->strategy), l, rank[l]);
    }
    return RK_OK;
}

/* The random ablation's permutation: layer i takes the value of layer
 * idx[i]. A seed gives the same shuffle on every machine. */
static void shuffle(unsigned seed, int layers, int *idx)
{
    uint64_t state = seed ? seed : RK_RANK_SEED_DEFAULT;
    for (int i = 0; i < layers; i++)
        idx[i] = i;
    for (int i = layers - 1; i > 0; i--) {
        const int j = (int)(next_random(&state) % (uint64_t)(i + 1));
        const int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

rk_status rk_budget_from_ranks(const rk_rank_allocation *a, const double *rank, int layers,
                               int average, int min_budget, int *budget)
{
    double w[MAX_LAYERS];
    rk_status st = rank_weights(a, rank, layers, w);
    if (st != RK_OK)
        return st;
    st = rk_budget_from_weights(w, layers, average, min_budget, budget);
    if (st != RK_OK)
        return st;
    if (a->strategy == RK_RANK_RANDOM) {
        int idx[MAX_LAYERS], was[MAX_LAYERS];
        memcpy(was, budget, (size_t)layers * sizeof(int));
        shuffle(a->seed, layers, idx);
        for (int i = 0; i < layers; i++)
            budget[i] = was[idx[i]];
    } else if (a->strategy == RK_RANK_INVERSE) {
        /* The k-th lowest rank gets the k-th largest budget. */
        int sorted[MAX_LAYERS], order[MAX_LAYERS];
        memcpy(sorted, budget, (size_t)layers * sizeof(int));
        qsort(sorted, (size_t)layers, sizeof(int), descending);
        order_by_rank(rank, layers, order);
        for (int i = 0; i < layers; i++)
            budget[order[i]] = sorted[i];
    }
    return RK_OK;
}

rk_status rk_budget_pyramid_ranks(const rk_rank_allocation *a, const double *rank, int layers,
                                  int average, int window, double beta, int *budget)
{
    double pyramid[MAX_LAYERS], w[MAX_LAYERS], moved[MAX_LAYERS];
    rk_status st = rk_budget_pyramid_weights(layers, average, window, beta, pyramid);
    if (st != RK_OK || (st = rank_weights(a, rank, layers, w)) != RK_OK)
        return st;
    /* The ablations move the rank shares, not the pyramid: the schedule
     * stays, the layers' ranks are shuffled or reversed under it. */
    if (a->strategy == RK_RANK_RANDOM) {
        int idx[MAX_LAYERS];
        shuffle(a->seed, layers, idx);
        for (int i = 0; i < layers; i++)
            moved[i] = w[idx[i]];
    } else if (a->strategy == RK_RANK_INVERSE) {
        int order[MAX_LAYERS];
        order_by_rank(rank, layers, order);
        for (int i = 0; i < layers; i++)
            moved[order[i]] = w[order[layers - 1 - i]];
    } else {
        memcpy(moved, w, (size_t)layers * sizeof(double));
    }
    for (int l = 0; l < layers; l++)
        w[l] = pyramid[l] * moved[l];
    return rk_budget_above_window(w, layers, average, window, budget);
}
