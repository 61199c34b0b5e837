/* --kv-precision rank (core/kv_precision.c): the rule against its
 * definition, written out here a second way; its guarantees (higher rank
 * never fewer bits, bytes within the uniform cache's); the plan's bytes and
 * formats; the refusals. */
#include <string.h>
#include <unistd.h>

#include "kv_precision.h"
#include "model.h"
#include "profile.h"
#include "rk_test.h"
#include "targets.h"

static uint64_t rng = 88172645463325252ull;

static double next_unit(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static size_t bytes_of(const rk_kv_cache *c, const rk_kv_format *f)
{
    rk_kv_cache x = *c;
    memcpy(x.format, f, sizeof x.format);
    rk_kv_cache_lay_out(&x);
    return rk_kv_cache_bytes(&x);
}

/* The rule's guarantees for C: within the uniform cache's bytes, higher
 * rank never fewer bits, and no group of layers of one rank could step up
 * once more without breaking one of the two (the rule is maximal). */
static void check_rule(rk_kv_cache *c, const double *rank, const char *what)
{
    rk_kv_format steps[3];
    CHECK(rk_kv_precision_steps(c->dtype, steps) == RK_OK);
    CHECKF(rk_kv_precision_assign(RK_KV_RANK, rank, c) == RK_OK, "%s: %s", what, rk_last_error());
    rk_kv_cache uniform = *c;
    CHECK(rk_kv_precision_assign(RK_KV_UNIFORM, NULL, &uniform) == RK_OK);
    const size_t limit = rk_kv_cache_bytes(&uniform);
    for (int a = 0; a < c->layers; a++) {
        if (c->format[a] == steps[2])
            continue;
        /* Layer a and every layer of its rank one step up. */
        rk_kv_format f[RK_MAX_LAYERS];
        memcpy(f, c->format, sizeof f);
        int monotone = 1;
        for (int b = 0; b < c->layers; b++)
            if (rank[b] == rank[a]) {
                if (f[b] != c->format[a])
                    monotone = 0;
                f[b] = (rk_kv_format)(c->format[a] - 1);
            }
        for (int b = 0; b < c->layers; b++)
            if (rank[b] > rank[a] && rk_kv_format_bits(f[b]) < rk_kv_format_bits(f[a]))
                monotone = 0;
        CHECKF(!monotone || bytes_of(c, f) > limit,
               "%s: layer %d (rank %g) could step up to %s within the bytes", what, a, rank[a],
               rk_kv_format_name((rk_kv_format)(c->format[a] - 1)));
    }
    CHECKF(rk_kv_cache_bytes(c) <= limit, "%s: %zu bytes over the uniform %zu", what,
           rk_kv_cache_bytes(c), limit);
    for (int a = 0; a < c->layers; a++)
        for (int b = 0; b < c->layers; b++)
            if (rank[a] > rank[b])
                CHECKF(rk_kv_format_bits(c->format[a]) >= rk_kv_format_bits(c->format[b]),
                       "%s: layer %d (rank %g) has %s, layer %d (rank %g) %s", what, a, rank[a],
                       rk_kv_format_name(c->format[a]), b, rank[b],
                       rk_kv_format_name(c->format[b]));
    size_t sum = 0;
    for (int l = 0; l < c->layers; l++) {
        CHECK(c->format[l] == steps[0] || c->format[l] == steps[1] || c->format[l] == steps[2]);
        sum += rk_kv_cache_layer_bytes(c, l);
    }
    CHECK(sum == rk_kv_cache_bytes(c));
}

static void test_names_and_steps(void)
{
    rk_kv_precision p;
    CHECK(rk_kv_precision_parse("rank", &p) == RK_OK && p == RK_KV_RANK);
    CHECK(rk_kv_precision_parse("uniform", &p) == RK_OK && p == RK_KV_UNIFORM);
    CHECK(rk_kv_precision_parse("ranked", &p) == RK_EINVAL);
    CHECK(strstr(rk_last_error(), "unknown KV precision 'ranked' (have: uniform, rank)"));
    CHECK(strcmp(rk_kv_precision_name(RK_KV_RANK), "rank") == 0);
    rk_kv_format s[3];
    CHECK(rk_kv_precision_steps(RK_KV_INT4, s) == RK_OK && s[0] == RK_KV_INT2 &&
          s[1] == RK_KV_INT4 && s[2] == RK_KV_INT8);
    CHECK(rk_kv_precision_steps(RK_KV_INT8, s) == RK_OK && s[0] == RK_KV_INT4 &&
          s[2] == RK_KV_FP16);
    CHECK(rk_kv_precision_steps(RK_KV_FP16, s) == RK_OK && s[0] == RK_KV_INT8 &&
          s[2] == RK_KV_FP32);
    CHECK(rk_kv_precision_steps(RK_KV_FP32, s) == RK_EINVAL);
    CHECK(strstr(rk_last_error(), "fp32 has none above it"));
    CHECK(rk_kv_precision_steps(RK_KV_INT2, s) == RK_EINVAL);
    CHECK(strstr(rk_last_error(), "int2 has none below it"));
    CHECK(rk_kv_precision_steps(RK_KV_KIVI, s) == RK_EINVAL);
}

static void test_rule(void)
{
    const rk_kv_format dtypes[] = {RK_KV_FP16, RK_KV_INT8, RK_KV_INT4};
    for (int trial = 0; trial < 300; trial++) {
        rk_kv_cache c = {.dtype = dtypes[trial % 3], .group = 16, .residual = 64,
                         .layers = 1 + (int)(next_unit() * 32), .heads = 1 + trial % 4,
                         .head_dim = trial % 2 ? 64 : 80};
        double rank[RK_MAX_LAYERS];
        const double spread = 1 + 4 * next_unit();
        for (int l = 0; l < c.layers; l++) {
            /* Ties too: a few ranks drawn from a handful of values. */
            rank[l] = trial % 5 == 0 ? 100.0 * (1 + (int)(next_unit() * 3))
                                     : 100 * (1 + (spread - 1) * next_unit());
            c.cap[l] = trial % 3 == 1 ? 64 : 8 + (int)(next_unit() * 200);
        }
        char what[64];
        snprintf(what, sizeof what, "trial %d (%s, %d layers)", trial,
                 rk_kv_format_name(c.dtype), c.layers);
        check_rule(&c, rank, what);
    }
    /* Ranks within a factor of two: every layer reaches the named step
     * before any can step above it, so rank precision is the uniform
     * cache. */
    rk_kv_cache c = {.dtype = RK_KV_INT4, .group = 16, .layers = 4, .heads = 2, .head_dim = 80,
                     .cap = {512, 512, 512, 512}};
    const double narrow[4] = {517, 652, 454, 394};
    CHECK(rk_kv_precision_assign(RK_KV_RANK, narrow, &c) == RK_OK);
    for (int l = 0; l < 4; l++)
        CHECK(c.format[l] == RK_KV_INT4);
    /* One layer at four times another's rank: it takes int8, paid for by
     * the two lowest at int2 (rows of 60, 100 and 40 bytes). */
    const double wide[4] = {100, 400, 110, 300};
    CHECK(rk_kv_precision_assign(RK_KV_RANK, wide, &c) == RK_OK);
    CHECK(c.format[0] == RK_KV_INT2 && c.format[1] == RK_KV_INT8 && c.format[2] == RK_KV_INT2 &&
          c.format[3] == RK_KV_INT4);
    CHECK(rk_kv_cache_bytes(&c) == 2 * 512 * 2 * (size_t)(40 + 100 + 40 + 60));
    const double bad[4] = {100, 0, 100, 100};
    CHECK(rk_kv_precision_assign(RK_KV_RANK, bad, &c) == RK_EINVAL);
    CHECK(rk_kv_precision_assign(RK_KV_RANK, NULL, &c) == RK_EINVAL);
}

/* The plan lays the cache out by the rule and refuses what it cannot keep. */
static void test_plan(void)
{
    rk_config cfg;
    CHECK(rk_config_load(RK_MODELS_DIR "/pythia-nano/config.json", &cfg) == RK_OK);
    rk_identity id;
    CHECK(rk_identity_of(RK_MODELS_DIR "/pythia-nano", &id) == RK_OK);
    const rk_profile *nano = rk_profile_find(&id);
    CHECK(nano != NULL);
    static rk_model m;
    rk_limits lim = {.max_prompt = 448, .max_new_tokens = 64, .prefill_chunk = 448,
                     .logits_rows = 1, .kv_format = RK_KV_INT8, .kv_precision = RK_KV_RANK,
                     .kv_profile = nano};
    rk_kv_options o = {.method = "rankkv", .average = 64, .profile = nano};
    CHECK(rk_kv_policy_make(&o, cfg.n_layers, &lim.kv) == RK_OK);
    CHECKF(rk_model_plan(&cfg, rk_cpu_ops(), &lim, &m) == RK_OK, "%s", rk_last_error());
    size_t sum = 0;
    for (int l = 0; l < cfg.n_layers; l++)
        sum += 2 * (size_t)m.cache.cap[l] * cfg.n_heads *
               rk_kv_row_bytes(m.cache.format[l], cfg.head_dim, 16);
    CHECK(m.kv_bytes == sum && rk_plan_find(&m.plan, "kv_cache_k")->size == sum / 2);
    check_rule(&m.cache, nano->rank_mean, "nano plan");
    /* One layer's prompt passes at a time, in its own format: the region
     * holds the widest layer's rows. */
    size_t widest = 0;
    for (int l = 0; l < cfg.n_layers; l++) {
        const size_t row = rk_kv_row_bytes(m.cache.format[l], cfg.head_dim, 16);
        widest = row > widest ? row : widest;
    }
    CHECK(rk_plan_find(&m.plan, "prefill_layer_k")->size == 448 * (size_t)cfg.n_heads * widest);

    /* A target storing fp16 only (the CUDA target now) refuses it, naming
     * the first step it lacks, as it refuses that dtype alone. */
    rk_ops fp16_only = *rk_cpu_ops();
    fp16_only.name = "fp16-only";
    fp16_only.kv_formats = RK_KV_FORMAT_BIT(RK_KV_FP16);
    lim.kv_format = RK_KV_FP16;
    CHECK(rk_model_plan(&cfg, &fp16_only, &lim, &m) == RK_EDTYPE);
    CHECK(strstr(rk_last_error(), "the fp16-only target has no int8 KV cache (it stores: fp16)"));
    lim.kv_format = RK_KV_FP32;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, &m) == RK_EINVAL);
    CHECK(strstr(rk_last_error(), "fp32 has none above it"));
    lim.kv_format = RK_KV_KIVI;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, &m) == RK_EINVAL);
    lim.kv_format = RK_KV_INT4;
    lim.kv_profile = NULL;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, &m) == RK_EINVAL);
    CHECK(strstr(rk_last_error(), "compiled profile"));
}

/* pythia-mini's compiled profile: ranks 208 to 502, so at int4 the two
 * layers under half the top rank pay for the top layer's int8 (README,
 * "Per-layer precision from the profile"). */
static void test_mini_profile(void)
{
    const rk_profile *mini = NULL;
    for (int i = 0; i < rk_n_compiled_profiles; i++)
        if (strcmp(rk_compiled_profiles[i]->name, "pythia-mini") == 0)
            mini = rk_compiled_profiles[i];
    if (!mini) {
        printf("SKIP pythia-mini: no compiled profile\n");
        return;
    }
    rk_kv_cache c = {.dtype = RK_KV_INT4, .group = 16, .layers = 24, .heads = 4, .head_dim = 64};
    for (int l = 0; l < 24; l++)
        c.cap[l] = 1024;
    check_rule(&c, mini->rank_mean, "pythia-mini int4");
    for (int l = 0; l < 24; l++)
        CHECKF(c.format[l] == (l == 7 || l == 11 ? RK_KV_INT2 : l == 16 ? RK_KV_INT8 : RK_KV_INT4),
               "layer %d: %s", l, rk_kv_format_name(c.format[l]));
    c.dtype = RK_KV_INT8;
    check_rule(&c, mini->rank_mean, "pythia-mini int8");
}

int main(void)
{
    test_names_and_steps();
    test_rule();
    test_plan();
    test_mini_profile();
    return rk_test_finish("test_kv_precision");
}
