#include "model.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_kivi.h"
#include "kv_quant.h"
#include "kv_select.h"
#include "kv_smart.h"
#include "profile.h"
#include "rank_budget.h"
#include "safetensors.h"
#include "sampler.h"
#include "weights.h"

#define AT(m, off) ((void *)((char *)(m)->base + (off)))
#define WT(m, off) ((const void *)((const char *)(m)->wbase + (off)))

/* Layer L's cache: K and V rows and, for compressing policies, each
 * row's position (and, for H2O, its accumulated attention). */
static rk_kv_layer layer_cache(const rk_model *m, int l)
{
    return rk_kv_cache_layer(&m->cache, m->base, l);
}

/* While a compressing prefill runs, the prompt's full K/V of layer L,
 * laid out like a cache whose rows are the positions, in the layer's format
 * (fp16 for KIVI: rk_kv_prompt_format), so kept rows move as bytes. */
static rk_kv_layer prompt_cache(const rk_model *m, int l)
{
    return (rk_kv_layer){.k = AT(m, m->a_prefill_k), .v = AT(m, m->a_prefill_v),
                         .cap = m->lim.max_prompt, .heads = m->cfg.n_heads,
                         .head_dim = m->cfg.head_dim,
                         .format = rk_kv_prompt_format(m->cache.format[l]),
                         .group = m->cache.group};
}

int rk_limits_prompt_passes(const rk_limits *lim)
{
    return rk_kv_compresses(&lim->kv) || lim->kv_format == RK_KV_SMART;
}

/* What only a prompt passing through uses: a compressing prefill's full K/V
 * of one layer, its attention mass and the rows to keep (the kept rows are
 * gathered into the cache, with their positions, before the layer ends),
 * and the rank measurement's scratch (a measured prompt starts its sequence
 * again). Decode reads none of it (test_plan poisons them after the prompt),
 * so these bytes are free for decode-only regions. */
static void plan_prefill_regions(rk_model *m, int max_budget)
{
    rk_plan *p = &m->plan;
    const size_t P = (size_t)m->lim.max_prompt, H = (size_t)m->cfg.n_heads;
    /* One layer at a time passes through: the widest layer's rows. */
    size_t row_bytes = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const size_t b = H * rk_kv_row_bytes(rk_kv_prompt_format(m->cache.format[l]),
                                             m->cfg.head_dim, m->cache.group);
        row_bytes = b > row_bytes ? b : row_bytes;
    }
    if (rk_limits_prompt_passes(&m->lim)) {
        m->a_prefill_k = rk_plan_add_phase(p, "prefill_layer_k", P * row_bytes, RK_PHASE_PREFILL);
        m->a_prefill_v = rk_plan_add_phase(p, "prefill_layer_v", P * row_bytes, RK_PHASE_PREFILL);
        m->a_mass = rk_plan_add_phase(p, "prefill_layer_mass", H * P * sizeof(float),
                                      RK_PHASE_PREFILL);
        m->a_keep = rk_plan_add_phase(p, "kept_rows", H * (size_t)max_budget * sizeof(int32_t),
                                      RK_PHASE_PREFILL);
    }
    if (m->lim.rank) {
        m->rank_scratch_bytes = m->lim.rank->scratch_bytes(&m->cfg, m->lim.rank_len);
        m->a_rank_scratch = rk_plan_add_phase(p, "rank_scratch", m->rank_scratch_bytes,
                                              RK_PHASE_PREFILL);
    }
}

/* The rows a KIVI or smartkv cache takes in one call, against what OPS
 * stages (rk_ops.staged_rows): a chunk's, or where the prompt passes
 * through its own region, a layer's kept rows (MAX_BUDGET; a full
 * smartkv cache keeps the whole prompt). Later calls' rows, a few tokens
 * each, are checked as they come. */
static rk_status check_staged_rows(const rk_config *cfg, const rk_ops *ops, const rk_limits *lim,
                                   int max_budget)
{
    const rk_kv_format f = lim->kv_format;
    if (!ops->staged_rows || rk_kv_format_row(f))
        return RK_OK;
    const int staged = ops->staged_rows(cfg);
    const int passes = rk_limits_prompt_passes(lim), compress = rk_kv_compresses(&lim->kv);
    const int rows = !passes ? lim->prefill_chunk
                             : max_budget < lim->max_prompt ? max_budget : lim->max_prompt;
    if (rows <= staged)
        return RK_OK;
    return rk_fail(RK_ELIMIT,
                   "a %s KV cache on the %s target takes up to %d rows at once, and %s %d rows: "
                   "use %s",
                   rk_kv_format_name(f), ops->name, staged,
                   !passes    ? "a prefill chunk is"
                   : compress ? "a layer keeps up to"
                              : "the full cache places the whole prompt,",
                   rows,
                   !passes    ? "a smaller prefill chunk"
                   : compress ? "smaller budgets"
                              : "a shorter prompt limit");
}

rk_status rk_model_check_kv_format(const rk_config *cfg, const rk_ops *ops, rk_kv_format f,
                                   int group, int residual)
{
    if ((unsigned)f >= RK_KV_N_FORMATS || !(ops->kv_formats & RK_KV_FORMAT_BIT(f))) {
        char have[64] = "";
        for (int i = 0; i < RK_KV_N_FORMATS; i++)
            if (ops->kv_formats & RK_KV_FORMAT_BIT(i))
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s",
                         *have ? ", " : "", rk_kv_format_name((rk_kv_format)i));
        return rk_fail(RK_EDTYPE, "the %s target has no %s KV cache (it stores: %s)", ops->name,
                       rk_kv_format_name(f), have);
    }
    const int g = rk_kv_group_of(group);
    rk_status st = rk_kv_format_check(f, cfg->head_dim, g);
    if (st == RK_OK)
        st = rk_kv_residual_check(f, cfg->head_dim, g, rk_kv_residual_of(residual));
    if (st == RK_OK && ops->supports)
        st = ops->supports(cfg, f);
    return st;
}

rk_status rk_model_check_kv_precision(const rk_config *cfg, const rk_ops *ops,
                                      const rk_limits *lim)
{
    if (lim->kv_precision == RK_KV_UNIFORM)
        return RK_OK;
    rk_kv_format steps[3];
    rk_status st = rk_kv_precision_steps(lim->kv_format, steps);
    if (st != RK_OK)
        return st;
    if (!lim->kv_profile)
        return rk_fail(RK_EINVAL, "rank precision takes its ranks from a compiled profile of the "
                                  "model, and none was given");
    if (lim->kv_profile->layers != cfg->n_layers)
        return rk_fail(RK_EINVAL, "the RankKV profile '%s' has %d layers; the model has %d",
                       lim->kv_profile->name, lim->kv_profile->layers, cfg->n_layers);
    for (int s = 0; s < 3; s++)
        if ((st = rk_model_check_kv_format(cfg, ops, steps[s], lim->kv_group,
                                           lim->kv_residual)) != RK_OK)
            return st;
    return RK_OK;
}

rk_status rk_model_plan(const rk_config *cfg, const rk_ops *ops, const rk_limits *lim,
                        rk_model *m)
{
    if (lim->max_prompt < 1 || lim->max_new_tokens < 0)
        return rk_fail(RK_ELIMIT, "max prompt must be ≥ 1 and max new tokens ≥ 0 (got %d, %d)",
                       lim->max_prompt, lim->max_new_tokens);
    long long cap = (long long)lim->max_prompt + lim->max_new_tokens;
    if (cap > cfg->max_pos)
        return rk_fail(RK_ELIMIT,
                       "context of %lld positions (prompt %d + new %d) exceeds the model's "
                       "max_position_embeddings %d",
                       cap, lim->max_prompt, lim->max_new_tokens, cfg->max_pos);
    if (lim->prefill_chunk < 1 || lim->prefill_chunk > lim->max_prompt)
        return rk_fail(RK_ELIMIT, "prefill chunk %d must be in [1, max prompt %d]",
                       lim->prefill_chunk, lim->max_prompt);
    if (lim->logits_rows < 1 || lim->logits_rows > lim->prefill_chunk)
        return rk_fail(RK_ELIMIT, "logits rows %d must be in [1, prefill chunk %d]",
                       lim->logits_rows, lim->prefill_chunk);
    rk_status st;
    if ((st = rk_model_check_kv_format(cfg, ops, lim->kv_format, lim->kv_group,
                                       lim->kv_residual)) != RK_OK ||
        (st = rk_kv_policy_stores(&lim->kv, lim->kv_format)) != RK_OK)
        return st;
    const int smart = lim->kv_format == RK_KV_SMART;
    const double bits_avg = rk_smart_bits_of(lim->kv_bits_avg);
    if (smart &&
        (st = rk_smart_check(bits_avg, cfg->head_dim, rk_kv_group_of(lim->kv_group))) != RK_OK)
        return st;
    if ((st = rk_model_check_kv_precision(cfg, ops, lim)) != RK_OK)
        return st;
    /* Rank measurement reads the keys as the target's own format. */
    if (lim->rank && lim->kv_format != ops->kv_format)
        return rk_fail(RK_EDTYPE,
                       "rank measurement reads %s keys; it cannot run over a %s KV cache",
                       rk_kv_format_name(ops->kv_format), rk_kv_format_name(lim->kv_format));
    if (lim->rank && (strcmp(lim->rank->name, ops->name) != 0 || lim->rank_len < 1 ||
                      lim->rank_len > lim->prefill_chunk))
        return rk_fail(RK_ELIMIT,
                       "rank measurement on %s for sequences of %d tokens: it must run on the "
                       "model's target (%s), for 1..prefill chunk (%d) tokens",
                       lim->rank->name, lim->rank_len, ops->name, lim->prefill_chunk);
    const rk_kv_policy *kv = &lim->kv;
    const int compress = rk_kv_compresses(kv);
    if (compress) {
        if (!ops->attention_mass || !ops->kv_keep || !ops->kv_gather || !ops->kv_evict)
            return rk_fail(RK_EINVAL, "the %s target has no KV-compression ops", ops->name);
        if ((st = rk_kv_policy_check(kv, cfg->n_layers, (int)cap)) != RK_OK)
            return st;
    }
    if (rk_limits_prompt_passes(lim)) {
        if (kv->dynamic && !lim->rank)
            return rk_fail(RK_EINVAL, "rankkv-dynamic measures the ranks of every prompt, and "
                                      "this build has no rank measurement (configure with "
                                      "-DRANKKV_DYNAMIC=ON)");
        /* Compression (and smartkv's placement) happens layer by layer as
         * the prompt passes, so the prompt must pass in one call. */
        if (lim->prefill_chunk != lim->max_prompt)
            return rk_fail(RK_ELIMIT,
                           "%s prefills the whole prompt at once: the chunk (%d) must equal "
                           "the prompt limit (%d)",
                           compress ? "KV compression" : "a smartkv cache", lim->prefill_chunk,
                           lim->max_prompt);
    }

    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->lim = *lim;
    m->cap = (int)cap;
    m->ops = ops;
    rk_weights_plan(m);

    const size_t a = ops->act_bytes, C = (size_t)lim->prefill_chunk, P = (size_t)lim->max_prompt;
    const size_t D = (size_t)cfg->hidden, F = (size_t)cfg->ffn, H = (size_t)cfg->n_heads;
    const size_t L = (size_t)cfg->n_layers;
    rk_kv_cache *cache = &m->cache;
    cache->dtype = lim->kv_format;
    cache->group = rk_kv_group_of(lim->kv_group);
    cache->residual = rk_kv_residual_of(lim->kv_residual);
    cache->bits_avg = smart ? bits_avg : 0;
    cache->layers = cfg->n_layers;
    cache->heads = cfg->n_heads;
    cache->head_dim = cfg->head_dim;
    const rk_kv_hooks *hooks = rk_kv_hooks_of(kv);
    int max_rows = 0, max_budget = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        const int b = kv->budget[l];
        cache->cap[l] = hooks->layer_cap(kv, b, lim->max_prompt, lim->max_new_tokens);
        max_rows = cache->cap[l] > max_rows ? cache->cap[l] : max_rows;
        max_budget = b > max_budget ? b : max_budget;
    }
    /* smartkv over the full cache gathers every prompt row into its tiers. */
    if (kv->dynamic || (smart && !compress))
        max_budget = lim->max_prompt;
    if ((st = check_staged_rows(cfg, ops, lim, max_budget)) != RK_OK)
        return st;
    if ((st = rk_kv_precision_assign(lim->kv_precision,
                                     lim->kv_profile ? lim->kv_profile->rank_mean : NULL,
                                     cache)) != RK_OK)
        return st;
    m->kv_bytes = rk_kv_cache_bytes(cache);
    /* Attention reads up to the longest layer cache, or the prompt's
     * full-length K/V while compressing. */
    const int attn_ctx = compress && (int)P > max_rows ? (int)P : max_rows;

    rk_plan *p = &m->plan;
    rk_plan_init(p, "arena");
    /* pos0, row0 of every layer, then the chunk's token ids: one copy in
     * per forward. */
    m->a_step = rk_plan_add(p, "step_input", (1 + L + C) * sizeof(int32_t));
    m->a_rope = rk_plan_add(p, "rope_table", (size_t)m->cap * (size_t)cfg->rotary_dims * sizeof(float));
    m->a_x = rk_plan_add(p, "residual", C * D * a);
    m->a_h = rk_plan_add(p, "norm_out", C * D * a);
    m->a_h2 = rk_plan_add(p, "norm2_out", C * D * a);
    m->a_qkv = rk_plan_add(p, "qkv", C * 3 * D * a);
    m->a_q = rk_plan_add(p, "q_rotated", C * D * a);
    m->a_att = rk_plan_add(p, "attn_heads", C * D * a);
    /* A parallel-residual layer sums its attention output into mlp_out
     * (linear_sum): only a sequential one keeps it apart. */
    if (!cfg->parallel_residual)
        m->a_attn_out = rk_plan_add(p, "attn_out", C * D * a);
    m->a_mlp_h = rk_plan_add(p, "mlp_hidden", C * F * a);
    m->a_mlp_out = rk_plan_add(p, "mlp_out", C * D * a);
    m->a_scratch = rk_plan_add(p, "target_scratch", ops->scratch_bytes(cfg, (int)C, attn_ctx));
    m->a_logits = rk_plan_add(p, "logits", (size_t)lim->logits_rows * (size_t)cfg->vocab * sizeof(float));
    const size_t top = (size_t)lim->logits_rows * RK_TOP_K_MAX;
    m->a_top_vals = rk_plan_add(p, "top_k_values", top * sizeof(float));
    m->a_top_ids = rk_plan_add(p, "top_k_ids", top * sizeof(int32_t));
    /* A greedy run's steps, each a step input of one token (pos0, the
     * rows, the token it is fed), and one more for the last step's argmax:
     * recorded once, so that the host copies a run's inputs in and its ids
     * out once, and launches it once (rk_model_decode_greedy). */
    if (ops->replay && ops->top_k && lim->max_new_tokens >= RK_GREEDY_RUN)
        m->a_run = rk_plan_add(p, "greedy_run",
                               (size_t)(RK_GREEDY_RUN + 1) * (2 + L) * sizeof(int32_t));
    cache->k = rk_plan_add(p, "kv_cache_k", cache->side_bytes[0]);
    cache->v = rk_plan_add(p, "kv_cache_v", cache->side_bytes[1]);
    /* Each row's position (and H2O's attention) outlive the prompt: decode
     * attends, evicts and reports kept positions by them. */
    if (compress)
        cache->pos = rk_plan_add(p, "kv_row_positions", H * cache->rows * sizeof(int32_t));
    /* smartkv ranks rows by their accumulated attention, as H2O does. */
    if ((compress && hooks->keeps_scores) || smart)
        cache->score = rk_plan_add(p, "kv_row_attention", H * cache->rows * sizeof(float));
    /* Last: the first phase region closes the plan's always part. */
    plan_prefill_regions(m, max_budget);
    return RK_OK;
}

/* Matches HF's GPT-NeoX rotary embedding, which computes inverse frequencies,
 * angles and cos/sin in fp32; doing it in double would move logits by ~1e-5. */
static void fill_rope(const rk_config *c, int cap, float *t)
{
    const int half = c->rotary_dims / 2;
    for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf((float)c->rope_base, (float)(2 * i) / (float)c->rotary_dims);
        for (int pos = 0; pos < cap; pos++) {
            float ang = (float)pos * inv;
            t[(size_t)pos * c->rotary_dims + 2 * i] = cosf(ang);
            t[(size_t)pos * c->rotary_dims + 2 * i + 1] = sinf(ang);
        }
    }
}

static rk_status bind(rk_model *m, const char *dir)
{
    rk_status st;
    rk_safetensors *sf = NULL;
    if ((st = rk_st_open(dir, &sf)) != RK_OK)
        return st;
    /* All that the headers can refuse is refused before the device is
     * touched: a config.json that disagrees with the checkpoint must not
     * first allocate (and page in) a weights block sized by its numbers. */
    if ((st = rk_weights_check(m, sf)) == RK_OK && (st = m->ops->init(&m->ctx)) == RK_OK) {
        if (m->ops->device_used_bytes)
            m->device_used_before = m->ops->device_used_bytes(m->ctx);
        if ((st = m->ops->alloc(m->ctx, m->wplan.total, &m->wbase)) == RK_OK &&
            (st = m->ops->alloc(m->ctx, m->plan.total, &m->base)) == RK_OK)
            st = rk_weights_load(m, sf);
    }
    rk_st_close(sf);
    if (st != RK_OK)
        return st;
    m->ops->bind_scratch(m->ctx, AT(m, m->a_scratch), rk_plan_find(&m->plan, "target_scratch")->size);
    if (m->ops->prepare && (st = m->ops->prepare(m->ctx, &m->cfg, m->lim.prefill_chunk,
                                                 m->lim.logits_rows)) != RK_OK)
        return st;

    size_t rope_floats = (size_t)m->cap * (size_t)m->cfg.rotary_dims;
    float *rope = malloc(rope_floats * sizeof(float) + 1);
    m->host_logits = malloc((size_t)m->lim.logits_rows * (size_t)m->cfg.vocab * sizeof(float));
    const int L = m->cfg.n_layers, step_ints = 1 + L + m->lim.prefill_chunk,
              run_ints = (RK_GREEDY_RUN + 1) * (2 + L);
    m->host_step = malloc((size_t)(step_ints > run_ints ? step_ints : run_ints) * sizeof(int32_t));
    const rk_region *keep = rk_plan_find(&m->plan, "kept_rows");
    m->host_keep = malloc(keep ? keep->size : 1);
    m->host_ranks = malloc((size_t)m->cfg.n_layers * m->cfg.n_heads * sizeof(double));
    if (!rope || !m->host_logits || !m->host_step || !m->host_keep || !m->host_ranks) {
        free(rope);
        return rk_fail(RK_ENOMEM, "out of host memory for the rotary table and logits");
    }
    if (m->lim.rank &&
        (st = m->lim.rank->init(m->ctx, &m->cfg, m->lim.rank_len, &m->rank_ctx)) != RK_OK) {
        free(rope);
        return st;
    }
    fill_rope(&m->cfg, m->cap, rope);
    st = m->ops->copy_in(m->ctx, AT(m, m->a_rope), rope, rope_floats * sizeof(float));
    free(rope);
    if (st == RK_OK)
        st = m->ops->sync(m->ctx);
    return st;
}

static rk_status record_steps(rk_model *m);

rk_status rk_model_load(const char *dir, const rk_ops *ops, const rk_limits *lim,
                        rk_model **out)
{
    char path[4096];
    rk_config cfg;
    rk_status st;
    *out = NULL;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((st = rk_config_load(path, &cfg)) != RK_OK)
        return st;
    /* A static profile holds ranks of one model: refuse any other. */
    const rk_profile *profiles[2] = {lim->kv.profile, lim->kv_profile};
    if (profiles[0] || profiles[1]) {
        rk_identity id;
        if ((st = rk_identity_of(dir, &id)) != RK_OK)
            return st;
        for (int i = 0; i < 2; i++)
            if (profiles[i] && (st = rk_profile_check(profiles[i], &id)) != RK_OK)
                return st;
    }
    rk_model *m = calloc(1, sizeof *m);
    if (!m)
        return rk_fail(RK_ENOMEM, "out of host memory for the model");
    if ((st = rk_model_plan(&cfg, ops, lim, m)) != RK_OK || (st = bind(m, dir)) != RK_OK ||
        (st = record_steps(m)) != RK_OK) {
        rk_model_free(m);
        return st;
    }
    *out = m;
    return RK_OK;
}

void rk_model_free(rk_model *m)
{
    if (!m)
        return;
    if (m->rank_ctx)
        m->lim.rank->shutdown(m->rank_ctx);
    if (m->ctx) {
        if (m->base)
            m->ops->release(m->ctx, m->base);
        if (m->wbase)
            m->ops->release(m->ctx, m->wbase);
        m->ops->shutdown(m->ctx);
    }
    free(m->host_logits);
    free(m->host_step);
    free(m->host_keep);
    free(m->host_ranks);
    free(m);
}

/* Rank precision: each layer's format, rows and bytes, its profile rank,
 * and the total against the uniform cache of the dtype it stays within. */
static void print_precision_bytes(const rk_model *m, FILE *f)
{
    const rk_kv_cache *kc = &m->cache;
    rk_kv_cache uniform = *kc;
    rk_kv_precision_assign(RK_KV_UNIFORM, NULL, &uniform);
    fprintf(f, "KV cache: %zu bytes (precision rank around %s, profile %s; the uniform %s "
               "cache: %zu bytes)\n",
            m->kv_bytes, rk_kv_format_name(kc->dtype), m->lim.kv_profile->name,
            rk_kv_format_name(kc->dtype), rk_kv_cache_bytes(&uniform));
    for (int l = 0; l < kc->layers; l++)
        fprintf(f, "KV layer %d: %s, rank %.1f, 2 x %d positions x %d heads x %zu B = %zu bytes\n",
                l, rk_kv_format_name(kc->format[l]), m->lim.kv_profile->rank_mean[l], kc->cap[l],
                kc->heads, rk_kv_row_bytes(kc->format[l], kc->head_dim, kc->group),
                rk_kv_cache_layer_bytes(kc, l));
}

/* A KIVI cache's bytes by its layout's formula (kv_kivi.h), and against
 * fp16 rows of the same positions: the payload, the payload and scales of
 * quantized rows, and all of it with the residual. */
static void print_kivi_bytes(const rk_model *m, FILE *f)
{
    const rk_kv_cache *kc = &m->cache;
    const int hd = kc->head_dim, G = kc->group, R = kc->residual;
    const rk_kv_format fmt = kc->dtype;
    size_t quantized = 0, slots = 0;
    for (int l = 0; l < kc->layers; l++) {
        const rk_kivi_side s = rk_kivi_side_of(fmt, 0, hd, G, R, kc->cap[l]);
        quantized += (size_t)s.quantized;
        slots += (size_t)s.slots;
    }
    const int k_bits = rk_kv_kivi_bits(fmt, 0), v_bits = rk_kv_kivi_bits(fmt, 1);
    const size_t scales = 2 * (size_t)(hd / G) * 4;
    const size_t position = (size_t)(hd * k_bits / 8 + hd * v_bits / 8) + scales;
    fprintf(f, "KV cache: %zu bytes (%s: %d heads x (%zu quantized positions x %zu B + %zu fp16 "
               "residual positions x %d B); a quantized position: %d B of %d-bit keys + %d B of "
               "%d-bit values + 2 x %d x 4 B fp16 scale and min, one per %d positions of a key "
               "channel and per %d channels of a value)\n",
            m->kv_bytes, rk_kv_format_name(fmt), kc->heads, quantized, position, slots, 4 * hd,
            hd * k_bits / 8, k_bits, hd * v_bits / 8, v_bits, hd / G, G, G);
    fprintf(f, "KV dtype %s: %.4f of fp16 rows in payload, %.4f with scales, %.4f of this "
               "plan's %zu fp16 positions with the residual (group %d, residual %d)\n",
            rk_kv_format_name(fmt), rk_kv_row_payload_bytes(fmt, hd) / (2.0 * hd),
            rk_kv_row_bytes(fmt, hd, G) / (2.0 * hd),
            m->kv_bytes / (4.0 * (double)kc->rows * kc->heads * hd), kc->rows, G, R);
}

/* A smartkv cache's bytes by its tiers (kv_smart.h): each layer's
 * capacities and bytes, and the whole against fp16 rows of the same
 * positions: the payload, with scales, and with the slot maps too. */
static void print_smart_bytes(const rk_model *m, FILE *f)
{
    const rk_kv_cache *kc = &m->cache;
    const int hd = kc->head_dim, G = kc->group, H = kc->heads;
    size_t payload = 0, scaled = 0;
    fprintf(f, "KV cache: %zu bytes (smartkv, average %g bits per element with scales; tiers "
               "fp16 / int8 / int4 / int2 of %zu / %zu / %zu / %zu B a row, + 8 B of slot maps "
               "a position)\n",
            m->kv_bytes, kc->bits_avg, rk_kv_row_bytes(RK_KV_FP16, hd, G),
            rk_kv_row_bytes(RK_KV_INT8, hd, G), rk_kv_row_bytes(RK_KV_INT4, hd, G),
            rk_kv_row_bytes(RK_KV_INT2, hd, G));
    for (int l = 0; l < kc->layers; l++) {
        const rk_smart_side s = rk_smart_side_of(0, hd, G, kc->bits_avg, kc->cap[l]);
        fprintf(f, "KV layer %d: smartkv tiers %d / %d / %d / %d of %d positions x %d heads, "
                   "%zu bytes\n",
                l, s.cap[0], s.cap[1], s.cap[2], s.cap[3], kc->cap[l], H,
                rk_kv_cache_layer_bytes(kc, l));
        for (int t = 0; t < RK_SMART_TIERS; t++) {
            const rk_kv_format tf = rk_smart_tier_format(t);
            payload += 2 * (size_t)H * s.cap[t] * rk_kv_row_payload_bytes(tf, hd);
            scaled += 2 * (size_t)H * s.cap[t] * rk_kv_row_bytes(tf, hd, G);
        }
    }
    const double fp16 = 4.0 * (double)kc->rows * H * hd;
    fprintf(f, "KV dtype smartkv: %.4f of fp16 rows in payload, %.4f with scales, %.4f with "
               "the slot maps (group %d)\n",
            payload / fp16, scaled / fp16, m->kv_bytes / fp16, G);
}

/* The KV cache's bytes by the row formula, and against fp16 rows: the
 * payload alone (codes) and with the group scales. */
static void print_kv_bytes(const rk_model *m, FILE *f)
{
    const rk_kv_cache *kc = &m->cache;
    const int hd = kc->head_dim;
    if (rk_kv_format_kivi(kc->dtype)) {
        print_kivi_bytes(m, f);
        return;
    }
    if (kc->dtype == RK_KV_SMART) {
        print_smart_bytes(m, f);
        return;
    }
    if (m->lim.kv_precision != RK_KV_UNIFORM) {
        print_precision_bytes(m, f);
        return;
    }
    const size_t payload = rk_kv_row_payload_bytes(kc->dtype, hd), row = rk_kv_row_bytes(kc->dtype, hd, kc->group);
    const double fp16 = (double)rk_kv_row_bytes(RK_KV_FP16, hd, kc->group);
    fprintf(f, "KV cache: %zu bytes (2 x %zu positions x %d heads x %zu B of %d %s dims",
            m->kv_bytes, kc->rows, kc->heads, row, hd, rk_kv_format_name(kc->dtype));
    if (rk_kv_format_grouped(kc->dtype))
        fprintf(f, ": %zu B of codes + %d x 4 B fp16 scale and min, one per %d channels",
                payload, hd / kc->group, kc->group);
    fprintf(f, ")\nKV dtype %s: %.4f of fp16 rows in payload, %.4f with scales\n",
            rk_kv_format_name(kc->dtype), payload / fp16, row / fp16);
}

void rk_model_print_plan(const rk_model *m, FILE *f)
{
    const rk_config *c = &m->cfg;
    fprintf(f, "model: %d layers, hidden %d, %d heads x %d, ffn %d, vocab %d, rotary dims %d\n",
            c->n_layers, c->hidden, c->n_heads, c->head_dim, c->ffn, c->vocab, c->rotary_dims);
    fprintf(f, "limits: prompt %d + new %d = %d cache positions, chunk %d, logits rows %d, "
               "KV %s%s, target %s (%zu-byte elements)\n",
            m->lim.max_prompt, m->lim.max_new_tokens, m->cap, m->lim.prefill_chunk,
            m->lim.logits_rows, rk_kv_format_name(m->lim.kv_format),
            m->lim.kv_precision == RK_KV_UNIFORM ? "" : " precision rank", m->ops->name,
            m->ops->act_bytes);
    rk_plan_print(&m->wplan, f);
    rk_plan_print(&m->plan, f);
    const rk_kv_policy *kv = &m->lim.kv;
    const int budgets = rk_kv_compresses(kv) && !kv->dynamic;
    if (!rk_kv_compresses(kv))
        fprintf(f, "KV policy: full, every position (prompt + new)\n");
    else if (kv->dynamic)
        fprintf(f, "KV policy: %s (%s budgets from each prompt's ranks of its first %d tokens), "
                   "average budget %d; every layer reserves the whole prompt + new\n",
                rk_kv_policy_name(kv), rk_rank_strategy_name(kv->rank.strategy), m->lim.rank_len,
                kv->average);
    else
        fprintf(f, "KV policy: %s, average budget %d, per layer (%s):", rk_kv_policy_name(kv),
                kv->average, rk_kv_hooks_of(kv)->cap_rule);
    for (int l = 0; budgets && l < c->n_layers; l++)
        fprintf(f, " %d", kv->budget[l]);
    if (budgets)
        fputc('\n', f);
    if (kv->profile)
        fprintf(f, "RankKV profile: %s (%s budgets; ranks of %d x %d-token samples)\n",
                kv->profile->name, rk_rank_strategy_name(kv->rank.strategy), kv->profile->samples,
                kv->profile->seq_len);
    print_kv_bytes(m, f);
    fprintf(f, "device total: %zu bytes (weights %zu + arena %zu)\n",
            m->wplan.total + m->plan.total, m->wplan.total, m->plan.total);
}

void rk_seq_reset(rk_seq *s) { memset(s, 0, sizeof *s); }

rk_status rk_seq_truncate(const rk_model *m, rk_seq *s, int n)
{
    const rk_kv_policy *kv = &m->lim.kv;
    if (n < 0 || n > s->n_past)
        return rk_fail(RK_EINVAL, "truncating a sequence of %d positions to %d", s->n_past, n);
    const int drop = s->n_past - n;
    if (drop == 0)
        return RK_OK;
    /* An evicting policy has overwritten rows it cannot bring back, and a
     * compressed prompt's rows are no longer its positions. */
    if (rk_kv_hooks_of(kv)->after_decode_attention)
        return rk_fail(RK_EINVAL, "%s cannot roll a sequence back: it evicts rows as it decodes",
                       rk_kv_policy_name(kv));
    /* A demoted row's higher-precision values are gone. */
    if (m->cache.dtype == RK_KV_SMART)
        return rk_fail(RK_EINVAL, "a smartkv cache cannot roll a sequence back: it demotes rows "
                                  "as it decodes");
    if (n < s->prompt)
        return rk_fail(RK_EINVAL,
                       "%s cannot roll a sequence back to position %d, inside its compressed "
                       "prompt of %d",
                       rk_kv_policy_name(kv), n, s->prompt);
    for (int l = 0; rk_kv_format_kivi(m->cache.dtype) && l < m->cfg.n_layers; l++) {
        const rk_kv_layer c = layer_cache(m, l);
        if (!rk_kivi_can_truncate(&c, s->rows[l], s->rows[l] - drop))
            return rk_fail(RK_EINVAL,
                           "a %s cache cannot roll back %d positions: layer %d's rows past %d "
                           "were quantized and their fp16 residual rows overwritten",
                           rk_kv_format_name(c.format), drop, l,
                           (s->rows[l] - drop) / c.residual * c.residual);
    }
    for (int l = 0; l < m->cfg.n_layers; l++)
        s->rows[l] -= drop;
    s->n_past = n;
    return RK_OK;
}

/* What the policy's hooks need of layer L after its attention. */
static rk_kv_layer_step policy_step(rk_model *m, const int32_t *step, int l, int n,
                                    const void *q, const rk_kv_layer *cache,
                                    const rk_kv_layer *prompt)
{
    return (rk_kv_layer_step){
        .ops = m->ops, .ctx = m->ctx, .cache = cache, .prompt = prompt, .q = q, .n = n,
        .pos = step, .row = step + 1 + l,
        .mass = {AT(m, m->a_mass), m->lim.max_prompt}, .keep = AT(m, m->a_keep),
        .host_keep = m->host_keep, .budget = m->lim.kv.budget[l]};
}

/* Row ROW of the activation at P, WIDTH elements a row. */
static void *act_row(const rk_model *m, const void *p, int row, int width)
{
    return (char *)p + (size_t)row * width * m->ops->act_bytes;
}

/* Rows of logits a forward of N tokens leaves. */
static int logits_rows(const rk_model *m, int n)
{
    return n < m->lim.logits_rows ? n : m->lim.logits_rows;
}

/* What one forward call does after each layer's attention. */
typedef enum {
    FORWARD_APPEND,   /* the rows go to the layer's cache (then the policy's decode hook) */
    FORWARD_COMPRESS, /* a prompt in the prefill region, then the policy keeps its rows */
    FORWARD_MEASURE,  /* a prompt from position 0, its attention's effective ranks measured */
} forward_mode;

typedef struct {
    forward_mode mode;
    const int32_t *step; /* the step input it reads; NULL: the arena's step_input */
    double *ranks; /* FORWARD_MEASURE: L × heads ranks ... */
    int rank_n;    /* ... of the attention of the first rank_n tokens */
    rk_status status; /* the first failure of a host call inside the ops */
} forward_call;

/* A measuring forward: layer L's per-head effective ranks, from the
 * queries and keys its attention just used. */
static void measure_layer(rk_model *m, forward_call *call, int l, int n, const void *q,
                          const rk_kv_layer *cache)
{
    const int H = m->cfg.n_heads;
    if (call->status != RK_OK)
        return;
    call->status = m->lim.rank->attention_erank(
        m->rank_ctx, m->ctx, call->ranks + (size_t)l * H, q, cache->k, call->rank_n, n,
        cache->cap, H, m->cfg.head_dim, AT(m, m->a_rank_scratch), m->rank_scratch_bytes);
}

/* The layer's queries and its rows for CACHE from the QKV product (rotary
 * at positions *POS.., rows *ROW..), then their attention. */
static void qkv_attention(rk_model *m, void *out, void *q, const rk_kv_layer *cache,
                          const void *qkv, const void *pos, const void *row, int n)
{
    const rk_ops *o = m->ops;
    const float *rope = AT(m, m->a_rope);
    if (o->qkv_attention) {
        o->qkv_attention(m->ctx, out, q, cache, qkv, rope, pos, row, n, m->cfg.rotary_dims);
        return;
    }
    o->qkv_rotary(m->ctx, q, cache, qkv, rope, pos, row, n, m->cfg.rotary_dims);
    o->attention(m->ctx, out, q, cache, row, n);
}

/* The forward pass proper: the step input (pos0, rows, token ids) is
 * already in the arena. Reads positions and rows only from there, so that a
 * recording of it replays correctly at any step. */
static void forward_ops(rk_model *m, int n, forward_call *call)
{
    const rk_config *c = &m->cfg;
    const rk_kv_policy *kv = &m->lim.kv;
    const rk_kv_hooks *hooks = rk_kv_hooks_of(kv);
    /* Compressing policies hold a prompt's K/V, all of it, for one layer at
     * a time: attention reads them from the prefill region (rows =
     * positions from 0), then only the kept rows move to the layer's cache.
     * A measured prompt passes there too. */
    const int via_prompt = rk_limits_prompt_passes(&m->lim) && call->mode != FORWARD_APPEND;
    const int smart = m->cache.dtype == RK_KV_SMART;
    const rk_ops *o = m->ops;
    const int D = c->hidden, L = c->n_layers, par = c->parallel_residual;
    void *ctx = m->ctx;
    void *resid = AT(m, m->a_x), *h = AT(m, m->a_h), *h2 = AT(m, m->a_h2), *qkv = AT(m, m->a_qkv);
    void *q = AT(m, m->a_q), *att = AT(m, m->a_att), *attn_out = AT(m, m->a_attn_out);
    void *mlp_h = AT(m, m->a_mlp_h), *mlp_out = AT(m, m->a_mlp_out);
    const int32_t *step = call->step ? call->step : (const int32_t *)AT(m, m->a_step);
    const void *pos = step;
    const rk_norm_out none = {0};
#define NORM(y, w, b) ((rk_norm_out){(y), WT(m, w), WT(m, b)})

    o->embed(ctx, resid, WT(m, m->w_embed), step + 1 + L, n, D);
    /* Pythia: x + attn(ln1(x)) + mlp(ln2(x)), both norms of the same x; the
     * sequential variant normalises x + attn for the MLP instead. */
    const rk_layer_weights *w0 = &m->w_layer[0];
    o->add_layernorm(ctx, resid, NULL, NULL, NORM(h, w0->ln1_w, w0->ln1_b),
                     par ? NORM(h2, w0->ln2_w, w0->ln2_b) : none, n, D, c->ln_eps);
    for (int l = 0; l < L; l++) {
        const rk_layer_weights *w = &m->w_layer[l];
        const rk_kv_layer cache = layer_cache(m, l);
        const void *row = step + 1 + l;

        /* Past its attention, which places every row's K/V, the last layer
         * feeds only the logits, so it runs on the rows they read: 2.3 % of
         * a long prompt's GEMM work at the 2.8B shape. */
        const int tail = l + 1 < L ? n : logits_rows(m, n), skip = n - tail;
        void *const h2_t = act_row(m, h2, skip, D), *const att_t = act_row(m, att, skip, D);
        void *const mlp_h_t = act_row(m, mlp_h, skip, c->ffn);
        void *const mlp_out_t = act_row(m, mlp_out, skip, D);
        void *const attn_out_t = act_row(m, attn_out, skip, D);
        void *const resid_t = act_row(m, resid, skip, D);

        /* A parallel-residual MLP reads ln2(x), not the attention: its first
         * product goes with QKV's, and its last with the attention's output
         * projection, whose sum is all the residual stream takes. */
        const rk_product qkv_p = {.y = qkv, .x = h, .w = WT(m, w->qkv_w), .bias = WT(m, w->qkv_b),
                                  .in = D, .out = 3 * D};
        const rk_product fc1_p = {.y = mlp_h_t, .x = h2_t, .w = WT(m, w->fc1_w),
                                  .bias = WT(m, w->fc1_b), .in = D, .out = c->ffn, .gelu = 1};
        const rk_product dense_p = {.y = par ? mlp_out_t : attn_out_t, .x = att_t,
                                    .w = WT(m, w->dense_w), .bias = WT(m, w->dense_b), .in = D,
                                    .out = D};
        const rk_product fc2_p = {.y = mlp_out_t, .x = mlp_h_t, .w = WT(m, w->fc2_w),
                                  .bias = WT(m, w->fc2_b), .in = c->ffn, .out = D};
        if (par && tail == n) {
            o->linear_pair(ctx, &qkv_p, &fc1_p, n);
        } else {
            o->linear(ctx, &qkv_p, n);
            if (par)
                o->linear(ctx, &fc1_p, tail);
        }
        if (via_prompt) {
            const rk_kv_layer prompt = prompt_cache(m, l);
            qkv_attention(m, att, q, &prompt, qkv, pos, pos, n);
            if (call->mode == FORWARD_MEASURE) {
                measure_layer(m, call, l, n, q, &prompt);
            } else if (call->status == RK_OK) {
                const rk_kv_layer_step s = policy_step(m, step, l, n, q, &cache, &prompt);
                call->status = hooks->after_prefill_layer
                                   ? hooks->after_prefill_layer(kv, &s)
                                   : rk_kv_place_all_after_prefill(kv, &s);
            }
        } else {
            qkv_attention(m, att, q, &cache, qkv, pos, row, n);
            if (call->mode == FORWARD_MEASURE)
                measure_layer(m, call, l, n, q, &cache);
            else if (hooks->after_decode_attention || smart) {
                const rk_kv_layer_step s = policy_step(m, step, l, n, q, &cache, NULL);
                if (hooks->after_decode_attention)
                    hooks->after_decode_attention(kv, &s);
                else
                    rk_kv_accumulate_attention(&s);
            }
        }
        if (par) {
            o->linear_sum(ctx, &dense_p, &fc2_p, tail);
        } else {
            o->linear(ctx, &dense_p, tail);
            o->add_layernorm(ctx, resid_t, attn_out_t, NULL, NORM(h2_t, w->ln2_w, w->ln2_b), none,
                             tail, D, c->ln_eps);
            o->linear(ctx, &fc1_p, tail);
            o->linear(ctx, &fc2_p, tail);
        }

        /* x += mlp (+ attn, in mlp_out already where parallel), normalised
         * for the next layer or, after the last, by the final LayerNorm. */
        const rk_layer_weights *nx = l + 1 < L ? &m->w_layer[l + 1] : NULL;
        o->add_layernorm(ctx, resid_t, mlp_out_t, NULL,
                         nx ? NORM(h, nx->ln1_w, nx->ln1_b)
                            : NORM(act_row(m, h, skip, D), m->w_lnf_w, m->w_lnf_b),
                         nx && par ? NORM(h2, nx->ln2_w, nx->ln2_b) : none, tail, D, c->ln_eps);
    }
#undef NORM

    const int rows = logits_rows(m, n);
    const void *last = act_row(m, h, n - rows, D);
    o->linear_f32out(ctx, AT(m, m->a_logits), last, WT(m, m->w_unembed), rows, D, c->vocab);
}

/* Step I's input in a greedy run (its pos0, rows and token, as the arena's
 * step_input for one token). */
static int32_t *run_step(rk_model *m, int i)
{
    return (int32_t *)AT(m, m->a_run) + (size_t)i * (2 + m->cfg.n_layers);
}

/* Where the target can record, the steps of 1..k rows after the prompt are
 * recorded once at start-up (recording runs nothing) and replayed for every
 * generated token, or every k draft tokens verified at once; launch overhead
 * would otherwise dominate decode. */
static rk_status record_steps(rk_model *m)
{
    if (!m->ops->replay || m->lim.max_new_tokens == 0)
        return RK_OK;
    int k = m->lim.logits_rows < RK_MAX_RECORDED_STEP ? m->lim.logits_rows : RK_MAX_RECORDED_STEP;
    /* Evicting policies step one token at a time. */
    if (rk_kv_hooks_of(&m->lim.kv)->after_decode_attention)
        k = 1;
    for (int rows = 1; rows <= k; rows++) {
        forward_call call = {.mode = FORWARD_APPEND};
        rk_status st = m->ops->capture_begin(m->ctx);
        if (st != RK_OK)
            return st;
        forward_ops(m, rows, &call);
        if ((st = m->ops->capture_end(m->ctx, rows - 1)) != RK_OK)
            return st;
        m->steps_recorded = rows;
    }
    if (!m->a_run)
        return RK_OK;
    /* A greedy run: each step reads its own input and its argmax goes
     * where the next step reads its token. */
    rk_status st = m->ops->capture_begin(m->ctx);
    if (st != RK_OK)
        return st;
    for (int i = 0; i < RK_GREEDY_RUN; i++) {
        forward_call call = {.mode = FORWARD_APPEND, .step = run_step(m, i)};
        forward_ops(m, 1, &call);
        int32_t *const next_token = run_step(m, i + 1) + 1 + m->cfg.n_layers;
        m->ops->top_k(m->ctx, (float *)AT(m, m->a_top_vals), next_token,
                      (const float *)AT(m, m->a_logits), m->cfg.vocab, 1);
    }
    if ((st = m->ops->capture_end(m->ctx, RK_GREEDY_SLOT)) != RK_OK)
        return st;
    m->run_recorded = 1;
    return RK_OK;
}

/* Whether TOKENS[0..n) (none where NULL) are ids of the vocabulary. */
static rk_status check_tokens(const rk_model *m, const int32_t *tokens, int n)
{
    for (int i = 0; tokens && i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab)
            return rk_fail(RK_EINVAL, "token id %d is outside the vocabulary [0, %d)", tokens[i],
                           m->cfg.vocab);
    return RK_OK;
}

/* Checks the chunk's token ids and copies the step input in: pos0, each
 * layer's row0 (ROWS, or 0 for a prompt that is compressed or measured as
 * it passes: ROWS NULL), the ids. TOKENS NULL: the one id is already in
 * place (step_token), put there by the device. */
static rk_status stage_input(rk_model *m, int pos0, const int *rows, const int32_t *tokens, int n)
{
    const int L = m->cfg.n_layers;
    rk_status st = check_tokens(m, tokens, n);
    if (st != RK_OK)
        return st;
    int32_t *step = m->host_step;
    step[0] = pos0;
    for (int l = 0; l < L; l++)
        step[1 + l] = rows ? rows[l] : 0;
    if (tokens)
        memcpy(step + 1 + L, tokens, (size_t)n * sizeof(int32_t));
    return m->ops->copy_in(m->ctx, AT(m, m->a_step), step,
                           (size_t)(1 + L + (tokens ? n : 0)) * sizeof(int32_t));
}

/* Where a one-token step reads its token id in the arena. */
static int32_t *step_token(rk_model *m) { return (int32_t *)AT(m, m->a_step) + 1 + m->cfg.n_layers; }

/* rankkv-dynamic: the prompt's own ranks (of its first rank_len tokens,
 * the calibration length), averaged per layer, make this prompt's budgets
 * by the same strategy a static profile uses. */
static rk_status dynamic_budgets(rk_model *m, const int32_t *tokens, int n)
{
    const int L = m->cfg.n_layers, H = m->cfg.n_heads;
    const int len = n < m->lim.rank_len ? n : m->lim.rank_len;
    rk_status st = rk_model_measure_ranks(m, tokens, len, m->host_ranks);
    if (st != RK_OK)
        return st;
    double mean[RK_MAX_LAYERS];
    rk_erank_layer_means(m->host_ranks, L, H, mean);
    rk_kv_policy *kv = &m->lim.kv;
    return rk_budget_from_ranks(&kv->rank, mean, L, kv->average, rk_kv_min_budget(kv),
                                kv->budget);
}

/* Whether the plan holds a forward call of N tokens of S (TOKENS NULL: the
 * one id is on the device); *COMPRESSING: the call is a prompt the policy
 * compresses or measures. */
static rk_status check_forward(rk_model *m, const rk_seq *s, const int32_t *tokens, int n,
                               int *compressing)
{
    const rk_config *c = &m->cfg;
    if (n < 1 || n > m->lim.prefill_chunk)
        return rk_fail(RK_ELIMIT, "forward of %d tokens; the plan allows 1..%d per call", n,
                       m->lim.prefill_chunk);
    if (s->n_past + n > m->cap)
        return rk_fail(RK_ELIMIT,
                       "context would reach %d positions; the plan holds %d (prompt %d + new %d)",
                       s->n_past + n, m->cap, m->lim.max_prompt, m->lim.max_new_tokens);
    const rk_kv_policy *kv = &m->lim.kv;
    const rk_kv_hooks *hooks = rk_kv_hooks_of(kv);
    *compressing = rk_limits_prompt_passes(&m->lim) && s->n_past == 0;
    if (!tokens && (*compressing || n != 1))
        return rk_fail(RK_EINVAL, "a step whose token is on the device takes one token after "
                                  "the prompt");
    if (hooks->after_decode_attention && !*compressing && n != 1)
        return rk_fail(RK_ELIMIT, "%s evicts one token per step: after the prompt, forward one "
                                  "token at a time (got %d)", rk_kv_policy_name(kv), n);
    for (int l = 0; !*compressing && l < c->n_layers; l++)
        if (s->rows[l] + n > m->cache.cap[l])
            return rk_fail(RK_ELIMIT, "layer %d's cache would reach %d rows; the plan holds %d",
                           l, s->rows[l] + n, m->cache.cap[l]);
    return RK_OK;
}

/* Where S stands after a forward call of N tokens, by the policy's budgets. */
static rk_seq seq_after(const rk_model *m, const rk_seq *s, int n, int compressing)
{
    const rk_kv_policy *kv = &m->lim.kv;
    const rk_kv_hooks *hooks = rk_kv_hooks_of(kv);
    rk_seq next = *s;
    next.n_past += n;
    if (compressing)
        next.prompt = n;
    for (int l = 0; l < m->cfg.n_layers; l++)
        next.rows[l] = hooks->rows_after(s->rows[l], n, kv->budget[l], compressing);
    return next;
}

/* Runs the ops of one forward call of S; the logits stay where the target
 * keeps them. S moves on only once the caller has its results. */
static rk_status run_forward(rk_model *m, const rk_seq *s, const int32_t *tokens, int n,
                             rk_seq *next)
{
    int compressing = 0;
    rk_status st = check_forward(m, s, tokens, n, &compressing);
    if (st == RK_OK && compressing && m->lim.kv.dynamic)
        st = dynamic_budgets(m, tokens, n);
    if (st == RK_OK)
        st = stage_input(m, s->n_past, compressing ? NULL : s->rows, tokens, n);
    if (st != RK_OK)
        return st;
    *next = seq_after(m, s, n, compressing);
    if (!compressing && n <= m->steps_recorded)
        return m->ops->replay(m->ctx, n - 1);
    forward_call call = {.mode = compressing ? FORWARD_COMPRESS : FORWARD_APPEND};
    forward_ops(m, n, &call);
    return call.status;
}

rk_status rk_model_forward(rk_model *m, rk_seq *s, const int32_t *tokens, int n)
{
    const int rows = logits_rows(m, n);
    rk_seq next;
    rk_status st = run_forward(m, s, tokens, n, &next);
    if (st == RK_OK)
        st = m->ops->copy_out(m->ctx, m->host_logits, AT(m, m->a_logits),
                              (size_t)rows * m->cfg.vocab * sizeof(float));
    if (st == RK_OK)
        st = m->ops->sync(m->ctx);
    if (st != RK_OK)
        return st;
    *s = next;
    m->n_logits = rows;
    return RK_OK;
}

rk_status rk_model_forward_top_k(rk_model *m, rk_seq *s, const int32_t *tokens, int n, int k,
                                 float *vals, int32_t *ids)
{
    const rk_ops *o = m->ops;
    if (k < 1 || k > RK_TOP_K_MAX || k > m->cfg.vocab || !o->top_k)
        return rk_fail(RK_EINVAL, "top-k of %d on the %s target (1..%d where it has one)", k,
                       o->name, o->top_k ? RK_TOP_K_MAX : 0);
    const int rows = logits_rows(m, n), V = m->cfg.vocab;
    rk_seq next;
    rk_status st = run_forward(m, s, tokens, n, &next);
    for (int r = 0; r < rows && st == RK_OK; r++)
        o->top_k(m->ctx, (float *)AT(m, m->a_top_vals) + (size_t)r * k,
                 (int32_t *)AT(m, m->a_top_ids) + (size_t)r * k,
                 (const float *)AT(m, m->a_logits) + (size_t)r * V, V, k);
    if (st == RK_OK)
        st = o->copy_out(m->ctx, ids, AT(m, m->a_top_ids), (size_t)rows * k * sizeof(int32_t));
    if (st == RK_OK)
        st = o->copy_out(m->ctx, vals, AT(m, m->a_top_vals), (size_t)rows * k * sizeof(float));
    if (st == RK_OK)
        st = o->sync(m->ctx);
    if (st != RK_OK)
        return st;
    *s = next;
    m->n_logits = 0; /* the logits stayed where the target keeps them */
    return RK_OK;
}

rk_status rk_model_forward_argmax_rows(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                                       int32_t *next)
{
    const int rows = logits_rows(m, n);
    if (m->ops->top_k) {
        float vals[RK_MAX_RECORDED_STEP];
        if (rows > RK_MAX_RECORDED_STEP)
            return rk_fail(RK_ELIMIT, "device argmax of %d rows at once (at most %d)", rows,
                           RK_MAX_RECORDED_STEP);
        return rk_model_forward_top_k(m, s, tokens, n, 1, vals, next);
    }
    rk_status st = rk_model_forward(m, s, tokens, n);
    for (int r = 0; r < rows && st == RK_OK; r++)
        next[r] = rk_argmax(rk_model_logits(m, r), m->cfg.vocab);
    return st;
}

rk_status rk_model_forward_argmax(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                                  int32_t *next)
{
    int32_t ids[RK_MAX_RECORDED_STEP];
    const int rows = logits_rows(m, n);
    if (rows > RK_MAX_RECORDED_STEP) {
        rk_status st = rk_model_forward(m, s, tokens, n);
        if (st == RK_OK)
            *next = rk_argmax(rk_model_logits(m, rows - 1), m->cfg.vocab);
        return st;
    }
    rk_status st = rk_model_forward_argmax_rows(m, s, tokens, n, ids);
    if (st == RK_OK)
        *next = ids[rows - 1];
    return st;
}

/* A recorded greedy run of RK_GREEDY_RUN steps of S after its prompt, the
 * first fed TOKEN: the steps' inputs go in with one copy, the run is one
 * replay, its ids come back with one copy. RK_ELIMIT, nothing run, where
 * the plan does not hold all of its steps. */
static rk_status recorded_run(rk_model *m, rk_seq *s, int32_t token, int32_t *out)
{
    const int L = m->cfg.n_layers, stride = 2 + L;
    int32_t *in = m->host_step;
    rk_status st = check_tokens(m, &token, 1);
    if (st != RK_OK)
        return st;
    rk_seq cur = *s;
    for (int i = 0; i < RK_GREEDY_RUN; i++) {
        int compressing = 0;
        if ((st = check_forward(m, &cur, i ? NULL : &token, 1, &compressing)) != RK_OK)
            return st;
        int32_t *step = in + (size_t)i * stride;
        step[0] = cur.n_past;
        memcpy(step + 1, cur.rows, (size_t)L * sizeof(int32_t));
        step[1 + L] = token; /* read by the first step only */
        cur = seq_after(m, &cur, 1, 0);
    }
    const rk_ops *o = m->ops;
    st = o->copy_in(m->ctx, run_step(m, 0), in, (size_t)RK_GREEDY_RUN * stride * sizeof(int32_t));
    if (st == RK_OK)
        st = o->replay(m->ctx, RK_GREEDY_SLOT);
    if (st == RK_OK)
        st = o->copy_out(m->ctx, in, run_step(m, 1),
                         (size_t)RK_GREEDY_RUN * stride * sizeof(int32_t));
    if (st == RK_OK)
        st = o->sync(m->ctx);
    if (st != RK_OK)
        return st;
    for (int i = 0; i < RK_GREEDY_RUN; i++)
        out[i] = in[(size_t)i * stride + 1 + L];
    *s = cur;
    m->n_logits = 0;
    return RK_OK;
}

rk_status rk_model_decode_greedy(rk_model *m, rk_seq *s, int32_t token, int n, int32_t *out)
{
    const rk_ops *o = m->ops;
    if (!o->top_k) {
        for (int i = 0; i < n; i++) {
            rk_status st = rk_model_forward_argmax(m, s, i ? &out[i - 1] : &token, 1, &out[i]);
            if (st != RK_OK)
                return st;
        }
        return RK_OK;
    }
    int32_t *const slot = step_token(m);
    for (int done = 0; done < n;) {
        const int run = n - done < RK_GREEDY_RUN ? n - done : RK_GREEDY_RUN;
        const int32_t first = done ? out[done - 1] : token;
        if (run == RK_GREEDY_RUN && m->run_recorded && s->n_past > 0) {
            /* A run that does not fit the plan runs step by step below, as
             * far as it fits. */
            const rk_status st = recorded_run(m, s, first, out + done);
            if (st == RK_OK) {
                done += run;
                continue;
            }
            if (st != RK_ELIMIT)
                return st;
        }
        rk_seq cur = *s;
        rk_status st = RK_OK;
        for (int i = 0; i < run; i++) {
            rk_seq next;
            st = run_forward(m, &cur, i ? NULL : &first, 1, &next);
            if (st == RK_OK) {
                /* The argmax goes where the next step reads its token. */
                o->top_k(m->ctx, (float *)AT(m, m->a_top_vals), slot,
                         (const float *)AT(m, m->a_logits), m->cfg.vocab, 1);
                st = o->copy_out(m->ctx, out + done + i, slot, sizeof *out);
                cur = next;
            }
            if (st != RK_OK)
                break;
        }
        /* What was queued runs whether or not a later step could be. */
        const rk_status ran = o->sync(m->ctx);
        if (ran != RK_OK)
            return ran;
        *s = cur;
        m->n_logits = 0;
        if (st != RK_OK)
            return st;
        done += run;
    }
    return RK_OK;
}

rk_status rk_model_prefill(rk_model *m, rk_seq *s, const int32_t *tokens, int n)
{
    if (n > m->lim.max_prompt)
        return rk_fail(RK_ELIMIT, "prompt of %d tokens is longer than the planned %d", n,
                       m->lim.max_prompt);
    for (int i = 0; i < n;) {
        int k = n - i < m->lim.prefill_chunk ? n - i : m->lim.prefill_chunk;
        rk_status st = rk_model_forward(m, s, tokens + i, k);
        if (st != RK_OK)
            return st;
        i += k;
    }
    return RK_OK;
}

rk_status rk_model_prefill_argmax(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                                  int32_t *next)
{
    if (n < 1 || n > m->lim.max_prompt)
        return rk_fail(RK_ELIMIT, "prompt of %d tokens; the plan allows 1..%d", n,
                       m->lim.max_prompt);
    /* The chunks are rk_model_prefill's: the last one starts here. */
    const int last = (n - 1) / m->lim.prefill_chunk * m->lim.prefill_chunk;
    rk_status st = last ? rk_model_prefill(m, s, tokens, last) : RK_OK;
    return st == RK_OK ? rk_model_forward_argmax(m, s, tokens + last, n - last, next) : st;
}

rk_status rk_model_measure_ranks(rk_model *m, const int32_t *tokens, int n, double *ranks)
{
    if (!m->lim.rank)
        return rk_fail(RK_EINVAL, "this model was loaded without rank measurement");
    if (n < 1 || n > m->lim.rank_len)
        return rk_fail(RK_ELIMIT, "rank of a %d-token sequence; the plan measures 1..%d", n,
                       m->lim.rank_len);
    rk_status st = stage_input(m, 0, NULL, tokens, n);
    if (st != RK_OK)
        return st;
    forward_call call = {.mode = FORWARD_MEASURE, .ranks = ranks, .rank_n = n};
    forward_ops(m, n, &call);
    st = m->ops->sync(m->ctx);
    return call.status != RK_OK ? call.status : st;
}

rk_status rk_model_kept_positions(rk_model *m, const rk_seq *s, int layer, int32_t *out)
{
    const int compresses = rk_kv_compresses(&m->lim.kv);
    if (!compresses || layer < 0 || layer >= m->cfg.n_layers)
        return rk_fail(RK_EINVAL, "kept positions of layer %d: the model compresses %s", layer,
                       compresses ? "fewer layers" : "nothing");
    const int H = m->cfg.n_heads, rows = s->rows[layer];
    const rk_kv_layer cache = layer_cache(m, layer);
    const int32_t *pos = cache.pos;
    const int cap = cache.cap;
    rk_status st = RK_OK;
    for (int h = 0; h < H && st == RK_OK; h++)
        st = m->ops->copy_out(m->ctx, out + (size_t)h * rows, pos + (size_t)h * cap,
                              (size_t)rows * sizeof(int32_t));
    return st == RK_OK ? m->ops->sync(m->ctx) : st;
}

rk_status rk_model_score_steps(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                               double *nll)
{
    return rk_model_score_steps_each(m, s, tokens, n, nll, NULL, NULL);
}

rk_status rk_model_score_steps_each(rk_model *m, rk_seq *s, const int32_t *tokens, int n,
                                    double *nll, rk_score_fn fn, void *user)
{
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double t;
        if (fn)
            fn(user, i, rk_model_logits(m, 0), m->cfg.vocab);
        rk_status st = rk_nll(rk_model_logits(m, 0), m->cfg.vocab, tokens[i], &t);
        if (st != RK_OK)
            return rk_fail(st, "scored token %d: %s", i, rk_last_error());
        sum += t;
        if (i + 1 < n && (st = rk_model_forward(m, s, &tokens[i], 1)) != RK_OK)
            return st;
    }
    *nll = sum;
    return RK_OK;
}

const float *rk_model_logits(const rk_model *m, int r)
{
    return m->host_logits + (size_t)r * m->cfg.vocab;
}

rk_status rk_nll(const float *row, int vocab, int target, double *nll)
{
    /* The scored token is never fed to the model, so nothing upstream has
     * checked it against the vocabulary. */
    if (target < 0 || target >= vocab)
        return rk_fail(RK_EINVAL, "scored token id %d is outside the vocabulary [0, %d)", target,
                       vocab);
    double mx = -INFINITY;
    for (int i = 0; i < vocab; i++) {
        if (!isfinite(row[i]))
            return rk_fail(RK_EINVAL, "the logits are not finite (%g at vocabulary index %d)",
                           (double)row[i], i);
        if (row[i] > mx)
            mx = row[i];
    }
    double s = 0;
    for (int i = 0; i < vocab; i++)
        s += exp((double)row[i] - mx);
    *nll = log(s) + mx - (double)row[target];
    return RK_OK;
}

void rk_model_device_name(const rk_model *m, char *buf, size_t len)
{
    m->ops->device_name(m->ctx, buf, len);
}

/* What bind() allocates on the host for the model's life (the rotary table
 * is freed once uploaded). */
static size_t host_staging_bytes(const rk_model *m)
{
    const rk_region *keep = rk_plan_find(&m->plan, "kept_rows");
    const size_t L = (size_t)m->cfg.n_layers;
    return (size_t)m->lim.logits_rows * (size_t)m->cfg.vocab * sizeof(float) +
           (1 + L + (size_t)m->lim.prefill_chunk) * sizeof(int32_t) + (keep ? keep->size : 0) +
           L * (size_t)m->cfg.n_heads * sizeof(double);
}

size_t rk_model_memory_bytes(const rk_model *m)
{
    return m->wplan.total + m->plan.total + host_staging_bytes(m);
}

size_t rk_model_kv_bytes(const rk_model *m) { return m->kv_bytes; }

size_t rk_model_step_weight_bytes(const rk_model *m)
{
    const rk_region *embed = rk_plan_find(&m->wplan, "embed_in");
    return m->wplan.total - (embed ? embed->size : 0) + (size_t)m->cfg.hidden * m->ops->act_bytes;
}

size_t rk_model_kv_bytes_used(const rk_model *m, int prompt)
{
    rk_kv_cache used = m->cache;
    for (int l = 0; l < used.layers; l++)
        used.cap[l] = rk_kv_rows_used(&m->lim.kv, l, prompt, m->lim.max_new_tokens, used.cap[l]);
    rk_kv_cache_lay_out(&used);
    return rk_kv_cache_bytes(&used);
}

int rk_model_device_used(const rk_model *m, size_t *in_use, size_t *since_load)
{
    if (!m->ops->device_used_bytes)
        return 0;
    *in_use = m->ops->device_used_bytes(m->ctx);
    /* Others may free memory meanwhile: no less than nothing. */
    *since_load = *in_use > m->device_used_before ? *in_use - m->device_used_before : 0;
    return 1;
}

rk_status rk_model_kv_row(const rk_model *m, const rk_seq *s, int layer, int pos, float *k,
                          float *v)
{
    const rk_kv_policy *kv = &m->lim.kv;
    if (rk_kv_compresses(kv))
        return rk_fail(RK_EINVAL, "KV rows of position %d: under %s a cache row is not a "
                                  "position (only the full cache's are)",
                       pos, rk_kv_policy_name(kv));
    if (layer < 0 || layer >= m->cfg.n_layers)
        return rk_fail(RK_EINVAL, "KV rows of layer %d: the model has layers 0..%d", layer,
                       m->cfg.n_layers - 1);
    if (pos < 0 || pos >= s->n_past)
        return rk_fail(RK_EINVAL, "KV rows of position %d: the sequence has run %d positions",
                       pos, s->n_past);
    const rk_kv_layer c = layer_cache(m, layer);
    /* KIVI and smartkv caches are read in place, through the reference, on
     * a host target (one that stores fp32); a device's are not copied out. */
    const int own_layout = !rk_kv_format_row(c.format);
    if (own_layout && !(m->ops->kv_formats & RK_KV_FORMAT_BIT(RK_KV_FP32)))
        return rk_fail(RK_EINVAL, "KV rows of a %s cache are read back on the cpu target only "
                                  "(this model runs on %s)",
                       rk_kv_format_name(c.format), m->ops->name);
    if (own_layout) {
        for (int h = 0; h < c.heads; h++) {
            rk_kv_read_rows(&c, 0, h, s->rows[layer], pos, 1, k + (size_t)h * (size_t)c.head_dim);
            rk_kv_read_rows(&c, 1, h, s->rows[layer], pos, 1, v + (size_t)h * (size_t)c.head_dim);
        }
        return RK_OK;
    }
    const size_t row = rk_kv_row_bytes(c.format, c.head_dim, c.group);
    /* One head's row at a time through the format's reader, so every
     * storage format reads back as the floats attention sees; fp32 rows,
     * whose head_dim has no limit, are the floats. */
    unsigned char raw[RK_KV_MAX_ROW_BYTES];
    float *out[2] = {k, v};
    const char *src[2] = {c.k, c.v};
    for (int t = 0; t < 2; t++)
        for (int h = 0; h < c.heads; h++) {
            float *dst = out[t] + (size_t)h * (size_t)c.head_dim;
            void *to = c.format == RK_KV_FP32 ? (void *)dst : (void *)raw;
            rk_status st = m->ops->copy_out(
                m->ctx, to, src[t] + ((size_t)h * (size_t)c.cap + (size_t)pos) * row, row);
            if (st == RK_OK)
                st = m->ops->sync(m->ctx);
            if (st != RK_OK)
                return st;
            if (c.format != RK_KV_FP32)
                rk_kv_dequantize_row(c.format, c.head_dim, c.group, raw, dst);
        }
    return RK_OK;
}
