#include "kv_precision.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[RK_KV_N_PRECISIONS] = {[RK_KV_UNIFORM] = "uniform",
                                                      [RK_KV_RANK] = "rank"};

const char *rk_kv_precision_name(rk_kv_precision p)
{
    return (unsigned)p < RK_KV_N_PRECISIONS ? names[p] : "?";
}

rk_status rk_kv_precision_parse(const char *name, rk_kv_precision *p)
{
    for (int i = 0; i < RK_KV_N_PRECISIONS; i++)
        if (strcmp(name, names[i]) == 0) {
            *p = (rk_kv_precision)i;
            return RK_OK;
        }
    return rk_fail(RK_EINVAL, "unknown KV precision '%s' (have: " RK_KV_PRECISIONS ")", name);
}

rk_status rk_kv_precision_steps(rk_kv_format f, rk_kv_format steps[3])
{
    /* The row formats run from most bits to fewest, each half the last. */
    if (!rk_kv_format_row(f) || f == RK_KV_FP32 || f == RK_KV_INT2)
        return rk_fail(RK_EINVAL,
                       "rank precision varies a row format one step either side (int2 < int4 "
                       "< int8 < fp16 < fp32); %s has %s: use fp16, int8 or int4",
                       rk_kv_format_name(f),
                       f == RK_KV_FP32   ? "none above it"
                       : f == RK_KV_INT2 ? "none below it"
                                         : "no row format's steps");
    steps[0] = (rk_kv_format)(f + 1);
    steps[1] = f;
    steps[2] = (rk_kv_format)(f - 1);
    return RK_OK;
}

/* Layer LAYER stepping up to step STEP once c reaches KEY = its bits /
 * the layer's rank. */
typedef struct {
    double key, rank;
    int layer, step;
} step_up;

/* By key; at one key, higher ranks first (a step of theirs may be what
 * lets a lower rank's take the same bits). */
static int by_key(const void *a, const void *b)
{
    const step_up *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->rank != y->rank)
        return x->rank > y->rank ? -1 : 1;
    return x->layer != y->layer ? x->layer - y->layer : x->step - y->step;
}

rk_status rk_kv_precision_assign(rk_kv_precision p, const double *rank, rk_kv_cache *c)
{
    const int L = c->layers;
    for (int l = 0; l < L; l++)
        c->format[l] = c->dtype;
    if (p == RK_KV_UNIFORM) {
        rk_kv_cache_lay_out(c);
        return RK_OK;
    }
    if (p != RK_KV_RANK)
        return rk_fail(RK_EINVAL, "unknown KV precision %d", (int)p);
    rk_kv_format steps[3];
    rk_status st = rk_kv_precision_steps(c->dtype, steps);
    if (st != RK_OK)
        return st;
    if (!rank)
        return rk_fail(RK_EINVAL, "rank precision needs the ranks of the model's profile");
    size_t limit = 0, bytes = 0;
    int at[RK_MAX_LAYERS];
    step_up ups[2 * RK_MAX_LAYERS];
    for (int l = 0; l < L; l++) {
        if (!(rank[l] > 0) || !isfinite(rank[l]))
            return rk_fail(RK_EINVAL, "rank precision: layer %d's rank %g is not a positive "
                                      "number", l, rank[l]);
        limit += rk_kv_cache_layer_bytes_as(c, l, c->dtype);
        bytes += rk_kv_cache_layer_bytes_as(c, l, steps[0]);
        at[l] = 0;
        for (int s = 1; s < 3; s++)
            ups[2 * l + s - 1] =
                (step_up){(double)rk_kv_format_bits(steps[s]) / rank[l], rank[l], l, s};
    }
    qsort(ups, (size_t)(2 * L), sizeof ups[0], by_key);
    /* c rises through the keys; the layers of one key and one rank step
     * together, or none of them does. A step that does not fit is passed over, not the
     * end: a layer keeping more rows pays more for its step, and a later,
     * cheaper one may still fit, if it leaves no layer of higher rank with
     * fewer bits. */
    for (int i = 0; i < 2 * L;) {
        int j = i, ok = 1;
        size_t next = bytes;
        for (; j < 2 * L && ups[j].key == ups[i].key && ups[j].rank == ups[i].rank; j++) {
            const int l = ups[j].layer, s = ups[j].step;
            ok &= at[l] == s - 1;
            for (int m = 0; m < L; m++)
                ok &= !(rank[m] > rank[l] && at[m] < s);
            next += rk_kv_cache_layer_bytes_as(c, l, steps[s]) -
                    rk_kv_cache_layer_bytes_as(c, l, steps[at[l]]);
        }
        if (ok && next <= limit) {
            for (int k = i; k < j; k++)
                at[ups[k].layer] = ups[k].step;
            bytes = next;
        }
        i = j;
    }
    for (int l = 0; l < L; l++)
        c->format[l] = steps[at[l]];
    rk_kv_cache_lay_out(c);
    return RK_OK;
}
