#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kv_budget.h"
#include "safetensors.h"
#include "textio.h"

static const int averages[RK_PROFILE_N_AVERAGES] = RK_PROFILE_AVERAGES;

/* FNV-1a, 64 bit. */
static void mix(uint64_t *h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        *h ^= p[i];
        *h *= 0x100000001b3ull;
    }
}

static void mix_str(uint64_t *h, const char *s) { mix(h, s, strlen(s) + 1); }

static void mix_i64(uint64_t *h, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    mix_str(h, buf);
}

static void mix_f(uint64_t *h, double v)
{
    char buf[48];
    snprintf(buf, sizeof buf, "%.9g", v);
    mix_str(h, buf);
}

/* Elements hashed at the start, the middle and the end of each tensor:
 * enough to tell two trainings of one shape apart (or a copy with a damaged
 * weight, where it falls in a sample), while reading a few KiB per tensor of
 * a multi-GB checkpoint. */
#define RK_ID_SAMPLE 2048

static void mix_values(uint64_t *h, const rk_tensor *t, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        float f = rk_tensor_value(t, i);
        uint32_t bits;
        unsigned char le[4];
        memcpy(&bits, &f, sizeof bits);
        for (int b = 0; b < 4; b++)
            le[b] = (unsigned char)(bits >> (8 * b));
        mix(h, le, sizeof le);
    }
}

/* A fingerprint of T's values, hashed as exact float32 so that a lossless
 * F32 copy of an F16 or BF16 checkpoint is the same model; buffers of other
 * dtypes are known by name and shape alone. Only the sampled pages of the
 * mapping are read. */
static void mix_content(uint64_t *h, const rk_tensor *t)
{
    if (t->dtype == RK_DTYPE_OTHER)
        return;
    const size_t n = t->nbytes / rk_dtype_size(t->dtype), s = RK_ID_SAMPLE;
    if (n <= 3 * s) {
        mix_values(h, t, 0, n);
        return;
    }
    mix_values(h, t, 0, s);
    mix_values(h, t, n / 2 - s / 2, n / 2 + s / 2);
    mix_values(h, t, n - s, n);
}

static int by_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const rk_tensor *const *)a)->name, (*(const rk_tensor *const *)b)->name);
}

rk_status rk_identity_of(const char *dir, rk_identity *out)
{
    char path[4096];
    rk_config cfg;
    memset(out, 0, sizeof *out);
    snprintf(path, sizeof path, "%s/config.json", dir);
    rk_status st = rk_config_load(path, &cfg);
    if (st != RK_OK)
        return st;
    uint64_t h = 0xcbf29ce484222325ull;
    mix_str(&h, "gpt_neox");
    mix_i64(&h, cfg.n_layers);
    mix_i64(&h, cfg.hidden);
    mix_i64(&h, cfg.n_heads);
    mix_i64(&h, cfg.ffn);
    mix_i64(&h, cfg.vocab);
    mix_i64(&h, cfg.max_pos);
    mix_i64(&h, cfg.rotary_dims);
    mix_f(&h, cfg.rope_base);
    mix_f(&h, cfg.ln_eps);
    mix_i64(&h, cfg.parallel_residual);
    mix_str(&h, cfg.random_weights ? "random-weights" : "trained");
    if (cfg.random_weights)
        mix_f(&h, cfg.random_seed);

    rk_safetensors *sf;
    if ((st = rk_st_open(dir, &sf)) != RK_OK)
        return st;
    const int n = rk_st_count(sf);
    const rk_tensor **t = malloc((size_t)(n ? n : 1) * sizeof *t);
    if (!t) {
        rk_st_close(sf);
        return rk_fail(RK_ENOMEM, "out of memory hashing %d tensor shapes", n);
    }
    for (int i = 0; i < n; i++)
        t[i] = rk_st_at(sf, i);
    /* Sorted, so that a resharded copy hashes the same. */
    qsort(t, (size_t)n, sizeof *t, by_tensor_name);
    for (int i = 0; i < n; i++) {
        mix_str(&h, t[i]->name);
        for (int d = 0; d < t[i]->ndim; d++)
            mix_i64(&h, t[i]->shape[d]);
        mix_content(&h, t[i]);
    }
    free(t);
    rk_st_close(sf);

    rk_base_name(dir, out->name, sizeof out->name);
    out->layers = cfg.n_layers;
    out->heads = cfg.n_heads;
    out->hidden = cfg.hidden;
    out->hash = h;
    return RK_OK;
}

rk_status rk_profile_check(const rk_profile *p, const rk_identity *id)
{
    if (p->layers != id->layers || p->heads != id->heads || p->hidden != id->hidden ||
        p->identity != id->hash)
        return rk_fail(RK_EINVAL,
                       "the RankKV profile '%s' (%d layers, %d heads, hidden %d, identity "
                       "%016llx) was calibrated on another model than %s (%d layers, %d heads, "
                       "hidden %d, identity %016llx); calibrate this one with rankkv-calibrate "
                       "and rebuild with -DRANKKV_PROFILES=<its header>",
                       p->name, p->layers, p->heads, p->hidden, (unsigned long long)p->identity,
                       id->name, id->layers, id->heads, id->hidden, (unsigned long long)id->hash);
    return RK_OK;
}

const rk_profile *rk_profile_find(const rk_identity *id)
{
    for (int i = 0; i < rk_n_compiled_profiles; i++)
        if (rk_profile_check(rk_compiled_profiles[i], id) == RK_OK)
            return rk_compiled_profiles[i];
    char have[1024] = "";
    for (int i = 0; i < rk_n_compiled_profiles; i++) {
        size_t used = strlen(have);
        snprintf(have + used, sizeof have - used, "%s%s", i ? ", " : "",
                 rk_compiled_profiles[i]->name);
    }
    rk_fail(RK_EINVAL,
            "no RankKV profile in this build matches the model %s (%d layers, %d heads, hidden "
            "%d, identity %016llx); this build has: %s. Calibrate it with rankkv-calibrate and "
            "rebuild with -DRANKKV_PROFILES=<its header>",
            id->name, id->layers, id->heads, id->hidden, (unsigned long long)id->hash,
            rk_n_compiled_profiles ? have : "none");
    return NULL;
}

rk_status rk_profile_for(const char *dir, const rk_profile **out)
{
    rk_identity id;
    rk_status st = rk_identity_of(dir, &id);
    if (st == RK_OK && !(*out = rk_profile_find(&id)))
        st = RK_EINVAL;
    return st;
}

/* A table row as the strategy code would have made it: every layer at
 * least the minimum and exactly layers × average in all. A header is
 * generated, but it is C that anyone can edit. */
static rk_status table_row(const rk_profile *p, const int *row, int average, int *budget)
{
    if (rk_budget_check(row, p->layers, p->layers, average, p->min_budget, RK_RANK_MAX) != RK_OK)
        return rk_fail(RK_ECONFIG, "profile %s, average %d: %s", p->name, average,
                       rk_last_error());
    memcpy(budget, row, (size_t)p->layers * sizeof(int));
    return RK_OK;
}

rk_status rk_profile_budgets(const rk_profile *p, const rk_rank_allocation *alloc, int average,
                             int min_budget, int *budget)
{
    if (rk_rank_allocation_is_default(alloc) && min_budget == p->min_budget &&
        alloc->strategy >= 0 && alloc->strategy < RK_RANK_N_STRATEGIES)
        for (int a = 0; a < RK_PROFILE_N_AVERAGES; a++)
            if (averages[a] == average) {
                const int *row =
                    p->budgets + ((size_t)alloc->strategy * RK_PROFILE_N_AVERAGES + a) * p->layers;
                return table_row(p, row, average, budget);
            }
    return rk_budget_from_ranks(alloc, p->rank_mean, p->layers, average, min_budget, budget);
}
