#include "model.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "sampler.h"
#include "weights.h"

#define AT(m, off) ((void *)((char *)(m)->base + (off)))
#define WT(m, off) ((const void *)((const char *)(m)->wbase + (off)))

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
    if (lim->kv_dtype != ops->kv_dtype)
        return rk_fail(RK_EDTYPE, "the %s target keeps the KV cache in %s (asked for %s)",
                       ops->name, rk_dtype_name(ops->kv_dtype), rk_dtype_name(lim->kv_dtype));

    rk_status st;
    if (ops->supports && (st = ops->supports(cfg)) != RK_OK)
        return st;

    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->lim = *lim;
    m->cap = (int)cap;
    m->ops = ops;
    rk_weights_plan(m);

    const size_t a = ops->act_bytes, C = (size_t)lim->prefill_chunk;
    const size_t D = (size_t)cfg->hidden, F = (size_t)cfg->ffn;
    rk_plan *p = &m->plan;
    rk_plan_init(p, "arena");
    /* pos0 followed by the chunk's token ids: one copy in per forward. */
    m->a_step = rk_plan_add(p, "step_input", (C + 1) * sizeof(int32_t));
    m->a_rope = rk_plan_add(p, "rope_table", (size_t)m->cap * (size_t)cfg->rotary_dims * sizeof(float));
    m->a_x = rk_plan_add(p, "residual", C * D * a);
    m->a_h = rk_plan_add(p, "norm_out", C * D * a);
    m->a_h2 = rk_plan_add(p, "norm2_out", C * D * a);
    m->a_qkv = rk_plan_add(p, "qkv", C * 3 * D * a);
    m->a_q = rk_plan_add(p, "q_rotated", C * D * a);
    m->a_att = rk_plan_add(p, "attn_heads", C * D * a);
    m->a_attn_out = rk_plan_add(p, "attn_out", C * D * a);
    m->a_mlp_h = rk_plan_add(p, "mlp_hidden", C * F * a);
    m->a_mlp_out = rk_plan_add(p, "mlp_out", C * D * a);
    m->a_scratch = rk_plan_add(p, "target_scratch", ops->scratch_bytes(cfg, (int)C, m->cap));
    m->a_logits = rk_plan_add(p, "logits", (size_t)lim->logits_rows * (size_t)cfg->vocab * sizeof(float));
    m->a_top_vals = rk_plan_add(p, "top_k_values", RK_TOP_K_MAX * sizeof(float));
    m->a_top_ids = rk_plan_add(p, "top_k_ids", RK_TOP_K_MAX * sizeof(int32_t));
    m->kv_layer_bytes = (size_t)m->cap * D * rk_dtype_size(lim->kv_dtype);
    m->a_k = rk_plan_add(p, "kv_cache_k", (size_t)cfg->n_layers * m->kv_layer_bytes);
    m->a_v = rk_plan_add(p, "kv_cache_v", (size_t)cfg->n_layers * m->kv_layer_bytes);
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
    if ((st = m->ops->init(&m->ctx)) != RK_OK)
        return st;
    if ((st = rk_st_open(dir, &sf)) != RK_OK)
        return st;
    if (m->ops->device_used_bytes)
        m->device_used_before = m->ops->device_used_bytes(m->ctx);
    if ((st = m->ops->alloc(m->ctx, m->wplan.total, &m->wbase)) == RK_OK &&
        (st = m->ops->alloc(m->ctx, m->plan.total, &m->base)) == RK_OK)
        st = rk_weights_load(m, sf);
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
    m->host_step = malloc((size_t)(m->lim.prefill_chunk + 1) * sizeof(int32_t));
    if (!rope || !m->host_logits || !m->host_step) {
        free(rope);
        return rk_fail(RK_ENOMEM, "out of host memory for the rotary table and logits");
    }
    fill_rope(&m->cfg, m->cap, rope);
    st = m->ops->copy_in(m->ctx, AT(m, m->a_rope), rope, rope_floats * sizeof(float));
    free(rope);
    if (st == RK_OK)
        st = m->ops->sync(m->ctx);
    return st;
}

static rk_status record_decode_step(rk_model *m);

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
    rk_model *m = calloc(1, sizeof *m);
    if (!m)
        return rk_fail(RK_ENOMEM, "out of host memory for the model");
    if ((st = rk_model_plan(&cfg, ops, lim, m)) != RK_OK || (st = bind(m, dir)) != RK_OK ||
        (st = record_decode_step(m)) != RK_OK) {
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
    if (m->ctx) {
        if (m->base)
            m->ops->release(m->ctx, m->base);
        if (m->wbase)
            m->ops->release(m->ctx, m->wbase);
        m->ops->shutdown(m->ctx);
    }
    free(m->host_logits);
    free(m->host_step);
    free(m);
}

void rk_model_print_plan(const rk_model *m, FILE *f)
{
    const rk_config *c = &m->cfg;
    fprintf(f, "model: %d layers, hidden %d, %d heads x %d, ffn %d, vocab %d, rotary dims %d\n",
            c->n_layers, c->hidden, c->n_heads, c->head_dim, c->ffn, c->vocab, c->rotary_dims);
    fprintf(f, "limits: prompt %d + new %d = %d cache positions, chunk %d, logits rows %d, "
               "KV %s, target %s (%zu-byte elements)\n",
            m->lim.max_prompt, m->lim.max_new_tokens, m->cap, m->lim.prefill_chunk,
            m->lim.logits_rows, rk_dtype_name(m->lim.kv_dtype), m->ops->name, m->ops->act_bytes);
    rk_plan_print(&m->wplan, f);
    rk_plan_print(&m->plan, f);
    fprintf(f, "KV cache: %zu bytes (%d layers x 2 x %d positions x %d heads x %d dims x %zu B)\n",
            2 * (size_t)c->n_layers * m->kv_layer_bytes, c->n_layers, m->cap, c->n_heads,
            c->head_dim, rk_dtype_size(m->lim.kv_dtype));
    fprintf(f, "device total: %zu bytes (weights %zu + arena %zu)\n",
            m->wplan.total + m->plan.total, m->wplan.total, m->plan.total);
}

void rk_model_reset(rk_model *m)
{
    m->n_past = 0;
    m->n_logits = 0;
}

/* The forward pass proper: the step input (pos0 and token ids) is already in
 * the arena. Reads positions only from there, so that a recording of it
 * replays correctly at any position. */
static void forward_ops(rk_model *m, int n)
{
    const rk_config *c = &m->cfg;
    const rk_ops *o = m->ops;
    const int D = c->hidden, H = c->n_heads, hd = c->head_dim, L = c->n_layers;
    const int par = c->parallel_residual;
    void *ctx = m->ctx;
    void *resid = AT(m, m->a_x), *h = AT(m, m->a_h), *h2 = AT(m, m->a_h2), *qkv = AT(m, m->a_qkv);
    void *q = AT(m, m->a_q), *att = AT(m, m->a_att), *attn_out = AT(m, m->a_attn_out);
    void *mlp_h = AT(m, m->a_mlp_h), *mlp_out = AT(m, m->a_mlp_out);
    const float *rope = AT(m, m->a_rope);
    const void *pos = AT(m, m->a_step);
    const rk_norm_out none = {0};
#define NORM(y, w, b) ((rk_norm_out){(y), WT(m, w), WT(m, b)})

    o->embed(ctx, resid, WT(m, m->w_embed), (int32_t *)AT(m, m->a_step) + 1, n, D);
    /* Pythia: x + attn(ln1(x)) + mlp(ln2(x)), both norms of the same x; the
     * sequential variant normalises x + attn for the MLP instead. */
    const rk_layer_weights *w0 = &m->w_layer[0];
    o->add_layernorm(ctx, resid, NULL, NULL, NORM(h, w0->ln1_w, w0->ln1_b),
                     par ? NORM(h2, w0->ln2_w, w0->ln2_b) : none, n, D, c->ln_eps);
    for (int l = 0; l < L; l++) {
        const rk_layer_weights *w = &m->w_layer[l];
        void *kc = AT(m, m->a_k + (size_t)l * m->kv_layer_bytes);
        void *vc = AT(m, m->a_v + (size_t)l * m->kv_layer_bytes);

        o->linear(ctx, qkv, h, WT(m, w->qkv_w), WT(m, w->qkv_b), n, D, 3 * D, 0);
        o->qkv_rotary(ctx, q, kc, vc, qkv, rope, pos, n, H, hd, c->rotary_dims, m->cap);
        o->attention(ctx, att, q, kc, vc, pos, n, H, hd, m->cap);
        o->linear(ctx, attn_out, att, WT(m, w->dense_w), WT(m, w->dense_b), n, D, D, 0);
        if (!par)
            o->add_layernorm(ctx, resid, attn_out, NULL, NORM(h2, w->ln2_w, w->ln2_b), none, n,
                             D, c->ln_eps);

        o->linear(ctx, mlp_h, h2, WT(m, w->fc1_w), WT(m, w->fc1_b), n, D, c->ffn, 1);
        o->linear(ctx, mlp_out, mlp_h, WT(m, w->fc2_w), WT(m, w->fc2_b), n, c->ffn, D, 0);

        /* x += mlp (+ attn), normalised for the next layer or, after the
         * last, by the final LayerNorm. */
        const rk_layer_weights *nx = l + 1 < L ? &m->w_layer[l + 1] : NULL;
        o->add_layernorm(ctx, resid, mlp_out, par ? attn_out : NULL,
                         nx ? NORM(h, nx->ln1_w, nx->ln1_b) : NORM(h, m->w_lnf_w, m->w_lnf_b),
                         nx && par ? NORM(h2, nx->ln2_w, nx->ln2_b) : none, n, D, c->ln_eps);
    }
#undef NORM

    const int rows = n < m->lim.logits_rows ? n : m->lim.logits_rows;
    const void *last = (const char *)h + (size_t)(n - rows) * D * o->act_bytes;
    o->linear_f32out(ctx, AT(m, m->a_logits), last, WT(m, m->w_unembed), rows, D, c->vocab);
}

/* Where the target can record, the one-token step is recorded once at
 * start-up (recording runs nothing) and replayed for every generated token;
 * launch overhead would otherwise dominate decode. */
static rk_status record_decode_step(rk_model *m)
{
    rk_status st;
    if (!m->ops->replay || m->lim.max_new_tokens == 0 || m->lim.logits_rows != 1)
        return RK_OK;
    if ((st = m->ops->capture_begin(m->ctx)) != RK_OK)
        return st;
    forward_ops(m, 1);
    if ((st = m->ops->capture_end(m->ctx)) != RK_OK)
        return st;
    m->decode_recorded = 1;
    return RK_OK;
}

static rk_status decode_step(rk_model *m)
{
    if (!m->decode_recorded) {
        forward_ops(m, 1);
        return RK_OK;
    }
    return m->ops->replay(m->ctx);
}

/* Runs the ops of one forward call; the logits stay where the target keeps
 * them. */
static rk_status run_forward(rk_model *m, const int32_t *tokens, int n)
{
    const rk_config *c = &m->cfg;
    const rk_ops *o = m->ops;
    if (n < 1 || n > m->lim.prefill_chunk)
        return rk_fail(RK_ELIMIT, "forward of %d tokens; the plan allows 1..%d per call", n,
                       m->lim.prefill_chunk);
    if (m->n_past + n > m->cap)
        return rk_fail(RK_ELIMIT,
                       "context would reach %d positions; the plan holds %d (prompt %d + new %d)",
                       m->n_past + n, m->cap, m->lim.max_prompt, m->lim.max_new_tokens);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return rk_fail(RK_EINVAL, "token id %d is outside the vocabulary [0, %d)", tokens[i],
                           c->vocab);

    int32_t *step = m->host_step;
    step[0] = m->n_past;
    memcpy(step + 1, tokens, (size_t)n * sizeof(int32_t));
    rk_status st = o->copy_in(m->ctx, AT(m, m->a_step), step, (size_t)(n + 1) * sizeof(int32_t));
    if (st != RK_OK)
        return st;
    if (n == 1 && m->lim.logits_rows == 1)
        return decode_step(m);
    forward_ops(m, n);
    return RK_OK;
}

rk_status rk_model_forward(rk_model *m, const int32_t *tokens, int n)
{
    const int rows = n < m->lim.logits_rows ? n : m->lim.logits_rows;
    rk_status st = run_forward(m, tokens, n);
    if (st == RK_OK)
        st = m->ops->copy_out(m->ctx, m->host_logits, AT(m, m->a_logits),
                              (size_t)rows * m->cfg.vocab * sizeof(float));
    if (st == RK_OK)
        st = m->ops->sync(m->ctx);
    if (st != RK_OK)
        return st;
    m->n_past += n;
    m->n_logits = rows;
    return RK_OK;
}

rk_status rk_model_forward_top_k(rk_model *m, const int32_t *tokens, int n, int k, float *vals,
                                int32_t *ids)
{
    const rk_ops *o = m->ops;
    if (k < 1 || k > RK_TOP_K_MAX || k > m->cfg.vocab || !o->top_k)
        return rk_fail(RK_EINVAL, "top-k of %d on the %s target (1..%d where it has one)", k,
                       o->name, o->top_k ? RK_TOP_K_MAX : 0);
    const int rows = n < m->lim.logits_rows ? n : m->lim.logits_rows;
    rk_status st = run_forward(m, tokens, n);
    if (st == RK_OK) {
        const float *last = (const float *)AT(m, m->a_logits) + (size_t)(rows - 1) * m->cfg.vocab;
        o->top_k(m->ctx, AT(m, m->a_top_vals), AT(m, m->a_top_ids), last, m->cfg.vocab, k);
        st = o->copy_out(m->ctx, ids, AT(m, m->a_top_ids), (size_t)k * sizeof(int32_t));
    }
    if (st == RK_OK)
        st = o->copy_out(m->ctx, vals, AT(m, m->a_top_vals), (size_t)k * sizeof(float));
    if (st == RK_OK)
        st = o->sync(m->ctx);
    if (st != RK_OK)
        return st;
    m->n_past += n;
    m->n_logits = 0; /* the logits stayed where the target keeps them */
    return RK_OK;
}

rk_status rk_model_forward_argmax(rk_model *m, const int32_t *tokens, int n, int32_t *next)
{
    if (m->ops->top_k) {
        float val;
        return rk_model_forward_top_k(m, tokens, n, 1, &val, next);
    }
    rk_status st = rk_model_forward(m, tokens, n);
    if (st == RK_OK)
        *next = rk_argmax(rk_model_logits(m, m->n_logits - 1), m->cfg.vocab);
    return st;
}

rk_status rk_model_prefill(rk_model *m, const int32_t *tokens, int n)
{
    if (n > m->lim.max_prompt)
        return rk_fail(RK_ELIMIT, "prompt of %d tokens is longer than the planned %d", n,
                       m->lim.max_prompt);
    for (int i = 0; i < n;) {
        int k = n - i < m->lim.prefill_chunk ? n - i : m->lim.prefill_chunk;
        rk_status st = rk_model_forward(m, tokens + i, k);
        if (st != RK_OK)
            return st;
        i += k;
    }
    return RK_OK;
}

const float *rk_model_logits(const rk_model *m, int r)
{
    return m->host_logits + (size_t)r * m->cfg.vocab;
}

double rk_nll(const float *row, int vocab, int target)
{
    double mx = row[0];
    for (int i = 1; i < vocab; i++)
        if (row[i] > mx)
            mx = row[i];
    double s = 0;
    for (int i = 0; i < vocab; i++)
        s += exp((double)row[i] - mx);
    return log(s) + mx - (double)row[target];
}
