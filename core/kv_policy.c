#include "kv_policy.h"

#include <string.h>

#include "kv_budget.h"
#include "kv_select.h"

static int rk_kv_recent(const rk_kv_policy *p, int budget)
{
    /* H2O's experiments split the budget evenly between heavy hitters and
     * recent tokens. */
    return p->recent > 0 ? p->recent : budget / 2;
}

static int min_of(int a, int b) { return a < b ? a : b; }

/* ---- full cache: every position keeps its row ---- */

static int full_min_budget(const rk_kv_policy *p) { return 0; }

static int full_layer_cap(const rk_kv_policy *p, int budget, int max_prompt, int max_new)
{
    return max_prompt + max_new;
}

static int full_rows_after(int rows, int n, int budget, int prompt) { return rows + n; }

/* ---- SnapKV: after the prompt, each head keeps the rows its last
 * queries (the observation window) attend to most, pooled, plus the window
 * itself; generated tokens are appended. ---- */

static int snapkv_min_budget(const rk_kv_policy *p) { return p->window; }

static int snapkv_layer_cap(const rk_kv_policy *p, int budget, int max_prompt, int max_new)
{
    /* Dynamic budgets are known only once a prompt has run: every layer
     * reserves the whole prompt. */
    return (p->dynamic ? max_prompt : min_of(budget, max_prompt)) + max_new;
}

static int snapkv_rows_after(int rows, int n, int budget, int prompt)
{
    return prompt ? min_of(budget, n) : rows + n;
}

static rk_status gather(const rk_kv_layer_step *s, int keep)
{
    s->ops->kv_gather(s->ctx, s->cache, s->prompt, s->mass, s->keep, keep);
    return RK_OK;
}

static rk_status snapkv_after_prefill(const rk_kv_policy *p, const rk_kv_layer_step *s)
{
    const int window = min_of(p->window, s->n);
    s->ops->attention_mass(s->ctx, s->mass, s->q, s->prompt, s->row, s->n, s->n - window, 0);
    s->ops->kv_keep(s->ctx, s->keep, s->mass.s, s->n, s->cache->heads, s->mass.stride, p->pool,
                    s->budget, window);
    return gather(s, min_of(s->budget, s->n));
}

/* The KEEP rows in head 0's host_keep kept by every head. */
static rk_status gather_same_rows(const rk_kv_layer_step *s, int keep)
{
    const int H = s->cache->heads;
    for (int h = 1; h < H; h++)
        memcpy(s->host_keep + (size_t)h * keep, s->host_keep, (size_t)keep * sizeof(int32_t));
    rk_status st =
        s->ops->copy_in(s->ctx, s->keep, s->host_keep, (size_t)H * keep * sizeof(int32_t));
    return st == RK_OK ? gather(s, keep) : st;
}

rk_status rk_kv_place_all_after_prefill(const rk_kv_policy *p, const rk_kv_layer_step *s)
{
    const int window = min_of(p->window, s->n);
    s->ops->attention_mass(s->ctx, s->mass, s->q, s->prompt, s->row, s->n, s->n - window, 0);
    for (int r = 0; r < s->n; r++)
        s->host_keep[r] = r;
    return gather_same_rows(s, s->n);
}

/* ---- the evicting methods: a cache of budget + 1 rows, the new token's
 * row freeing one old row per step ---- */

static int evict_layer_cap(const rk_kv_policy *p, int budget, int max_prompt, int max_new)
{
    return min_of(budget + 1, max_prompt + max_new);
}

static int evict_rows_after(int rows, int n, int budget, int prompt)
{
    return prompt ? min_of(budget, n) : min_of(rows + n, budget);
}

/* H2O: heavy hitters (most attention received, accumulated) and the recent
 * tokens. */
static int h2o_min_budget(const rk_kv_policy *p) { return p->recent > 0 ? p->recent + 1 : 2; }

static rk_status h2o_after_prefill(const rk_kv_policy *p, const rk_kv_layer_step *s)
{
    const int recent = rk_kv_recent(p, s->budget);
    s->ops->attention_mass(s->ctx, s->mass, s->q, s->prompt, s->row, s->n, 0, 0);
    s->ops->kv_keep(s->ctx, s->keep, s->mass.s, s->n, s->cache->heads, s->mass.stride, 1,
                    s->budget, min_of(recent, s->n));
    return gather(s, min_of(s->budget, s->n));
}

void rk_kv_accumulate_attention(const rk_kv_layer_step *s)
{
    const rk_kv_layer *c = s->cache;
    s->ops->attention_mass(s->ctx, (rk_kv_scores){c->score, c->cap}, s->q, c, s->row, s->n, 0,
                           1);
}

/* The step's mass goes to the scores inside the eviction: on the CUDA
 * target one side kernel a layer, as StreamingLLM's step has, where there
 * were two (README, "Decode at the bandwidth limit"). */
static void h2o_after_decode(const rk_kv_policy *p, const rk_kv_layer_step *s)
{
    s->ops->kv_evict(s->ctx, s->cache, s->q, s->pos, s->row, s->budget, 0,
                     rk_kv_recent(p, s->budget));
}

/* StreamingLLM: the first tokens (attention sinks) and the most recent. */
static int streaming_min_budget(const rk_kv_policy *p) { return p->sinks + 1; }

static rk_status streaming_after_prefill(const rk_kv_policy *p, const rk_kv_layer_step *s)
{
    /* Positions only: the same rows for every head, chosen on the host. */
    rk_streaming_select(s->n, s->budget, p->sinks, s->host_keep);
    return gather_same_rows(s, min_of(s->budget, s->n));
}

static void streaming_after_decode(const rk_kv_policy *p, const rk_kv_layer_step *s)
{
    s->ops->kv_evict(s->ctx, s->cache, NULL, s->pos, s->row, s->budget, p->sinks, 0);
}

static const rk_kv_hooks hooks[] = {
    [RK_KV_FULL] = {full_min_budget, full_layer_cap, full_rows_after, NULL, NULL, 0,
                    "prompt + new"},
    [RK_KV_SNAPKV] = {snapkv_min_budget, snapkv_layer_cap, snapkv_rows_after,
                      snapkv_after_prefill, NULL, 0, "min(budget, prompt) + new"},
    [RK_KV_H2O] = {h2o_min_budget, evict_layer_cap, evict_rows_after, h2o_after_prefill,
                   h2o_after_decode, 1, "budget + 1"},
    [RK_KV_STREAMING] = {streaming_min_budget, evict_layer_cap, evict_rows_after,
                         streaming_after_prefill, streaming_after_decode, 0, "budget + 1"},
};

const rk_kv_hooks *rk_kv_hooks_of(const rk_kv_policy *p) { return &hooks[p->method]; }

int rk_kv_compresses(const rk_kv_policy *p) { return rk_kv_hooks_of(p)->after_prefill_layer != NULL; }

int rk_kv_min_budget(const rk_kv_policy *p) { return rk_kv_hooks_of(p)->min_budget(p); }

int rk_kv_rows_used(const rk_kv_policy *p, int l, int prompt, int max_new, int cap)
{
    if (p->method != RK_KV_SNAPKV)
        return cap;
    return min_of(p->budget[l], prompt) + max_new;
}

/* How a policy's per-layer budgets are made. */
typedef enum {
    BUDGETS_NONE,
    BUDGETS_UNIFORM,
    BUDGETS_PYRAMID,
    BUDGETS_PROFILE,
    BUDGETS_PYRAMID_PROFILE, /* PyramidKV's schedule modulated by the profile's ranks */
    BUDGETS_DYNAMIC
} budgets_from;

/* The policies users name: adding one is a row here (and, for a new way of
 * keeping rows, a method's hooks above and its target ops). */
static const struct {
    const char *name;
    rk_kv_method method;
    budgets_from budgets;
} policies[] = {
    {"full", RK_KV_FULL, BUDGETS_NONE},
    {"snapkv", RK_KV_SNAPKV, BUDGETS_UNIFORM},
    {"pyramidkv", RK_KV_SNAPKV, BUDGETS_PYRAMID},
    {"h2o", RK_KV_H2O, BUDGETS_UNIFORM},
    {"streamingllm", RK_KV_STREAMING, BUDGETS_UNIFORM},
    {"rankkv", RK_KV_SNAPKV, BUDGETS_PROFILE},
    {"rankkv-dynamic", RK_KV_SNAPKV, BUDGETS_DYNAMIC},
    {"pyramidkv-rankkv", RK_KV_SNAPKV, BUDGETS_PYRAMID_PROFILE},
};

enum { N_POLICIES = sizeof policies / sizeof policies[0] };

/* The table's row for NAME, or N_POLICIES. */
static int policy_row(const char *name)
{
    int i = 0;
    while (i < N_POLICIES && strcmp(policies[i].name, name) != 0)
        i++;
    return i;
}

int rk_kv_needs_profile(const char *name)
{
    const int i = policy_row(name);
    return i < N_POLICIES &&
           (policies[i].budgets == BUDGETS_PROFILE || policies[i].budgets == BUDGETS_PYRAMID_PROFILE);
}

rk_status rk_kv_options_find_profile(rk_kv_options *opt, const char *dir)
{
    if (!opt->method || !rk_kv_needs_profile(opt->method) || opt->profile)
        return RK_OK;
    return rk_profile_for(dir, &opt->profile);
}

rk_status rk_kv_policy_make(const rk_kv_options *opt, int layers, rk_kv_policy *out)
{
    memset(out, 0, sizeof *out);
    const char *want = opt->method ? opt->method : "full";
    const int i = policy_row(want);
    if (i == N_POLICIES)
        return rk_fail(RK_EINVAL, "unknown KV method '%s' (have: " RK_KV_METHODS ")", want);
    const char *name = out->name = policies[i].name;
    out->method = policies[i].method;
    const budgets_from from = policies[i].budgets;
    const int pyramid = from == BUDGETS_PYRAMID || from == BUDGETS_PYRAMID_PROFILE;
    const int rankkv = from == BUDGETS_PROFILE || from == BUDGETS_PYRAMID_PROFILE;
    /* 0 takes the default; a NaN or a negative beta is an error, not a
     * silent default (rk_budget_pyramid checks the value it is given). */
    if (!(opt->beta >= 0))
        return rk_fail(RK_EINVAL, "pyramid beta %g must be a number >= 1 (0: %g)", opt->beta,
                       RK_KV_BETA);
    const double beta = opt->beta > 0 ? opt->beta : RK_KV_BETA;
    out->dynamic = from == BUDGETS_DYNAMIC;
    if (opt->window < 0 || opt->pool < 0 || opt->sinks < 0 || opt->recent < 0)
        return rk_fail(RK_EINVAL, "KV window, pool, sinks and recent must not be negative");
    out->window = opt->window ? opt->window : RK_KV_WINDOW;
    out->pool = opt->pool ? opt->pool : RK_KV_POOL;
    out->sinks = opt->sinks ? opt->sinks : RK_KV_SINKS;
    out->recent = opt->recent;
    if (out->pool % 2 == 0)
        return rk_fail(RK_EINVAL, "the max-pool kernel must be odd (got %d)", out->pool);
    if (out->method == RK_KV_FULL) {
        if (opt->budgets || opt->average)
            return rk_fail(RK_EINVAL, "the full cache takes no budget");
        return RK_OK;
    }
    if (layers < 1 || layers > RK_MAX_LAYERS)
        return rk_fail(RK_EINVAL, "budgets for %d layers (1..%d)", layers, RK_MAX_LAYERS);
    if (opt->average < 1)
        return rk_fail(RK_EINVAL, "method %s needs an average budget of at least 1", name);
    out->average = opt->average;
    const int min_budget = rk_kv_min_budget(out);
    if (opt->budgets) {
        if (pyramid || rankkv || out->dynamic)
            return rk_fail(RK_EINVAL, "%s makes its own budgets; give explicit budgets with "
                                      "snapkv", name);
        rk_status st = rk_budget_check(opt->budgets, opt->n_budgets, layers, opt->average,
                                       min_budget, 1 << 30);
        if (st == RK_OK)
            memcpy(out->budget, opt->budgets, (size_t)layers * sizeof(int));
        return st;
    }
    if (opt->average < min_budget)
        return rk_fail(RK_EINVAL,
                       "average budget %d is below the %d positions %s always keeps",
                       opt->average, min_budget, name);
    if (rankkv || out->dynamic) {
        out->rank = opt->rank;
        if (out->rank.strategy < 0 || out->rank.strategy >= RK_RANK_N_STRATEGIES)
            return rk_fail(RK_EINVAL, "unknown rank strategy %d", (int)out->rank.strategy);
    }
    if (rankkv) {
        if (!opt->profile)
            return rk_fail(RK_EINVAL, "%s takes its budgets from a compiled profile of the "
                                      "model, and none was given", name);
        if (opt->profile->layers != layers)
            return rk_fail(RK_EINVAL, "the RankKV profile '%s' has %d layers; the model has %d",
                           opt->profile->name, opt->profile->layers, layers);
        out->profile = opt->profile;
    }
    rk_status st;
    if (rankkv && pyramid)
        st = rk_budget_pyramid_ranks(&out->rank, opt->profile->rank_mean, layers, opt->average,
                                     out->window, beta, out->budget);
    else if (rankkv)
        st = rk_profile_budgets(opt->profile, &out->rank, opt->average, min_budget, out->budget);
    else if (pyramid)
        st = rk_budget_pyramid(layers, opt->average, out->window, beta, out->budget);
    else
        st = rk_budget_uniform(layers, opt->average, min_budget, out->budget);
    /* Uniform budgets are the average everywhere, which the plan checks;
     * only a schedule can push one layer past the prompt. */
    if (st != RK_OK || from == BUDGETS_UNIFORM || opt->max_rows < 1)
        return st;
    return rk_budget_cap(out->budget, layers, min_budget, opt->max_rows);
}

const char *rk_kv_policy_name(const rk_kv_policy *p) { return p->name ? p->name : "full"; }

rk_status rk_kv_policy_stores(const rk_kv_policy *p, rk_kv_format f)
{
    if (rk_kv_format_kivi(f) && rk_kv_hooks_of(p)->after_decode_attention)
        return rk_fail(RK_EINVAL,
                       "%s evicts single rows, and a %s cache quantizes keys per channel over "
                       "groups of positions: use it with full, snapkv, pyramidkv or rankkv",
                       rk_kv_policy_name(p), rk_kv_format_name(f));
    if (f == RK_KV_SMART && rk_kv_hooks_of(p)->after_decode_attention)
        return rk_fail(RK_EINVAL,
                       "%s evicts single rows into a victim's place, and a smartkv cache keeps "
                       "rows in tiers of different sizes: use it with full, snapkv, pyramidkv "
                       "or rankkv",
                       rk_kv_policy_name(p));
    return RK_OK;
}

rk_status rk_kv_policy_check(const rk_kv_policy *p, int layers, int max_context)
{
    if (p->method == RK_KV_FULL)
        return RK_OK;
    return rk_budget_check(p->budget, layers, layers, p->average, rk_kv_min_budget(p),
                           max_context);
}
