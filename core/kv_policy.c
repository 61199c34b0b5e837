#include "kv_policy.h"

#include <string.h>

#include "kv_budget.h"

const char *rk_kv_method_name(rk_kv_method m)
{
    switch (m) {
    case RK_KV_FULL: return "full";
    case RK_KV_SNAPKV: return "snapkv";
    case RK_KV_H2O: return "h2o";
    case RK_KV_STREAMING: return "streamingllm";
    }
    return "?";
}

int rk_kv_recent(const rk_kv_policy *p, int budget)
{
    /* H2O's experiments split the budget evenly between heavy hitters and
     * recent tokens. */
    return p->recent > 0 ? p->recent : budget / 2;
}

int rk_kv_min_budget(const rk_kv_policy *p)
{
    switch (p->method) {
    case RK_KV_SNAPKV: return p->window;
    case RK_KV_STREAMING: return p->sinks + 1;
    case RK_KV_H2O: return p->recent > 0 ? p->recent + 1 : 2;
    case RK_KV_FULL: return 0;
    }
    return 0;
}

rk_status rk_kv_policy_make(const rk_kv_options *opt, int layers, rk_kv_policy *out)
{
    memset(out, 0, sizeof *out);
    const char *name = opt->method ? opt->method : "full";
    int pyramid = 0, rankkv = 0;
    if (strcmp(name, "full") == 0)
        out->method = RK_KV_FULL;
    else if (strcmp(name, "snapkv") == 0)
        out->method = RK_KV_SNAPKV;
    else if (strcmp(name, "pyramidkv") == 0)
        out->method = RK_KV_SNAPKV, pyramid = 1;
    else if (strcmp(name, "h2o") == 0)
        out->method = RK_KV_H2O;
    else if (strcmp(name, "streamingllm") == 0)
        out->method = RK_KV_STREAMING;
    else if (strcmp(name, "rankkv") == 0)
        out->method = RK_KV_SNAPKV, rankkv = 1;
    else if (strcmp(name, "rankkv-dynamic") == 0)
        out->method = RK_KV_SNAPKV, out->dynamic = 1;
    else
        return rk_fail(RK_EINVAL, "unknown KV method '%s' (have: " RK_KV_METHODS ")", name);
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
            return rk_fail(RK_EINVAL, "rankkv takes its budgets from a compiled profile of the "
                                      "model, and none was given");
        if (opt->profile->layers != layers)
            return rk_fail(RK_EINVAL, "the RankKV profile '%s' has %d layers; the model has %d",
                           opt->profile->name, opt->profile->layers, layers);
        out->profile = opt->profile;
        return rk_profile_budgets(opt->profile, &out->rank, opt->average, min_budget,
                                  out->budget);
    }
    if (pyramid)
        return rk_budget_pyramid(layers, opt->average, out->window,
                                 opt->beta > 0 ? opt->beta : RK_KV_BETA, out->budget);
    return rk_budget_uniform(layers, opt->average, min_budget, out->budget);
}

const char *rk_kv_policy_name(const rk_kv_policy *p)
{
    if (p->dynamic)
        return "rankkv-dynamic";
    if (p->profile)
        return "rankkv";
    return rk_kv_method_name(p->method);
}

rk_status rk_kv_policy_check(const rk_kv_policy *p, int layers, int max_context)
{
    if (p->method == RK_KV_FULL)
        return RK_OK;
    return rk_budget_check(p->budget, layers, layers, p->average, rk_kv_min_budget(p),
                           max_context);
}
