#include "kv_budget.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>

/* Layer counts are bounded by the config (RK_MAX_LAYERS); remainders of up to
 * this many layers are ranked on the stack. */
#define MAX_LAYERS 256

/* The LEFT positions that flooring the shares left over, one each to the
 * largest remainders REM[0..n) (the earlier on ties); entry i is layer
 * LAYER[i], or i when LAYER is NULL. */
static void give_leftovers(int *budget, const int *layer, double *rem, int n, long long left)
{
    for (; left > 0; left--) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (rem[i] > rem[best])
                best = i;
        budget[layer ? layer[best] : best]++;
        rem[best] = -1.0;
    }
}

rk_status rk_budget_from_weights(const double *weight, int layers, int average, int min_budget,
                                 int *budget)
{
    if (layers < 1 || layers > MAX_LAYERS)
        return rk_fail(RK_EINVAL, "budgets for %d layers (1..%d)", layers, MAX_LAYERS);
    if (average < 1 || min_budget < 0 || min_budget > average)
        return rk_fail(RK_EINVAL,
                       "average budget %d must be at least 1 and at least the minimum %d",
                       average, min_budget);
    /* Every budget, and callers' sums of them, must fit an int. */
    const long long total = (long long)layers * average;
    if (total > INT_MAX)
        return rk_fail(RK_EINVAL, "%d layers x average budget %d is more than %d positions",
                       layers, average, INT_MAX);
    double sum = 0;
    for (int l = 0; l < layers; l++) {
        if (!(weight[l] > 0) || !isfinite(weight[l]))
            return rk_fail(RK_EINVAL,
                           "budget weight of layer %d is %g; weights must be finite and > 0", l,
                           weight[l]);
        sum += weight[l];
    }
    /* Each layer first gets min_budget; the rest is shared by weight. A
     * share is spare × weight / sum: with spare × sum finite, so is every
     * spare × weight (weight <= sum), each share lies in [0, spare] and the
     * int casts below cannot overflow. */
    const long long spare = total - (long long)layers * min_budget;
    if (!isfinite(sum * (double)spare))
        return rk_fail(RK_EINVAL,
                       "budget weights of %d layers sum to %g; sharing %lld positions needs a "
                       "sum below %g",
                       layers, sum, spare, DBL_MAX / (double)(spare > 1 ? spare : 1));
    double rem[MAX_LAYERS];
    long long given = 0;
    for (int l = 0; l < layers; l++) {
        const double share = (double)spare * weight[l] / sum;
        const double fl = floor(share);
        budget[l] = min_budget + (int)fl;
        rem[l] = share - fl;
        given += budget[l];
    }
    give_leftovers(budget, NULL, rem, layers, total - given);
    return RK_OK;
}

rk_status rk_budget_uniform(int layers, int average, int min_budget, int *budget)
{
    double w[MAX_LAYERS];
    for (int l = 0; l < layers && l < MAX_LAYERS; l++)
        w[l] = 1.0;
    return rk_budget_from_weights(w, layers, average, min_budget, budget);
}

rk_status rk_budget_pyramid_weights(int layers, int average, int window, double beta,
                                   double *weight)
{
    if (window < 0 || window >= average)
        return rk_fail(RK_EINVAL, "average budget %d must exceed the observation window %d",
                       average, window);
    if (!(beta >= 1.0) || !isfinite(beta))
        return rk_fail(RK_EINVAL, "pyramid beta %g must be finite and >= 1", beta);
    if (layers < 1 || layers > MAX_LAYERS)
        return rk_fail(RK_EINVAL, "budgets for %d layers (1..%d)", layers, MAX_LAYERS);
    const double s = average - window, top = s / beta, bottom = 2.0 * s - top;
    for (int l = 0; l < layers; l++)
        weight[l] = layers == 1 ? s : bottom + (top - bottom) * l / (layers - 1);
    return RK_OK;
}

rk_status rk_budget_above_window(const double *weight, int layers, int average, int window,
                                 int *budget)
{
    if (window < 0 || window >= average)
        return rk_fail(RK_EINVAL, "average budget %d must exceed the observation window %d",
                       average, window);
    /* The shares above the window are checked by rk_budget_from_weights; the
     * window added back must not take a budget past an int. */
    if ((long long)layers * average > INT_MAX)
        return rk_fail(RK_EINVAL, "%d layers x average budget %d is more than %d positions",
                       layers, average, INT_MAX);
    rk_status st = rk_budget_from_weights(weight, layers, average - window, 0, budget);
    for (int l = 0; st == RK_OK && l < layers; l++)
        budget[l] += window;
    return st;
}

rk_status rk_budget_pyramid(int layers, int average, int window, double beta, int *budget)
{
    double w[MAX_LAYERS];
    rk_status st = rk_budget_pyramid_weights(layers, average, window, beta, w);
    return st == RK_OK ? rk_budget_above_window(w, layers, average, window, budget) : st;
}

/* The positions of a capped allocation's other layers, TOTAL in all, shared
 * in proportion to what each had above the minimum (evenly when none had
 * any). */
static void share_again(int *budget, const int *free_layer, int n, long long total, int min_budget)
{
    long long above = 0;
    for (int i = 0; i < n; i++)
        above += budget[free_layer[i]] - min_budget;
    const long long spare = total - (long long)n * min_budget;
    double rem[MAX_LAYERS];
    long long given = 0;
    for (int i = 0; i < n; i++) {
        const int l = free_layer[i];
        const double w = above > 0 ? (double)(budget[l] - min_budget) / (double)above : 1.0 / n;
        const double fl = floor((double)spare * w);
        budget[l] = min_budget + (int)fl;
        rem[i] = (double)spare * w - fl;
        given += budget[l];
    }
    give_leftovers(budget, free_layer, rem, n, total - given);
}

rk_status rk_budget_cap(int *budget, int layers, int min_budget, int max_budget)
{
    if (layers < 1 || layers > MAX_LAYERS)
        return rk_fail(RK_EINVAL, "budgets for %d layers (1..%d)", layers, MAX_LAYERS);
    long long total = 0;
    for (int l = 0; l < layers; l++)
        total += budget[l];
    if (total > (long long)layers * max_budget)
        return rk_fail(RK_ELIMIT,
                       "%lld positions over %d layers is more than %d per layer, the most a "
                       "layer can keep",
                       total, layers, max_budget);
    /* Water filling: a layer over the cap keeps the cap and the others share
     * the rest again, until none is over; each pass caps at least one more
     * layer, so it ends within LAYERS passes. */
    int capped[MAX_LAYERS] = {0}, free_layer[MAX_LAYERS];
    for (;;) {
        int over = 0, n_free = 0;
        for (int l = 0; l < layers; l++)
            if (!capped[l] && budget[l] > max_budget)
                capped[l] = over = 1;
        if (!over)
            return RK_OK;
        long long rest = total;
        for (int l = 0; l < layers; l++) {
            if (capped[l]) {
                budget[l] = max_budget;
                rest -= max_budget;
            } else {
                free_layer[n_free++] = l;
            }
        }
        if (n_free > 0)
            share_again(budget, free_layer, n_free, rest, min_budget);
    }
}

rk_status rk_budget_check(const int *budget, int n, int layers, int average, int min_budget,
                          int max_budget)
{
    if (n != layers)
        return rk_fail(RK_EINVAL, "budget array has %d entries; the model has %d layers", n,
                       layers);
    long long sum = 0;
    for (int l = 0; l < n; l++) {
        if (budget[l] < min_budget)
            return rk_fail(RK_EINVAL, "layer %d budget %d is below the minimum %d (the window)", l,
                           budget[l], min_budget);
        if (budget[l] > max_budget)
            return rk_fail(RK_ELIMIT, "layer %d budget %d is more than the plan allows (%d)", l,
                           budget[l], max_budget);
        sum += budget[l];
    }
    if (sum != (long long)layers * average)
        return rk_fail(RK_EINVAL, "budgets sum to %lld; %d layers x average %d is %lld", sum,
                       layers, average, (long long)layers * average);
    return RK_OK;
}
