#include "flops.h"

#include <math.h>

/* Key rows the last W of N causal queries see. */
static double causal_keys(double w, double n) { return w * n - w * (w - 1) / 2; }

/* The rows a layer of budget BUDGET attends over the NEW_TOKENS − 1 decode
 * steps after a PROMPT-token prompt, summed: its cache and the new row. */
static double rows_attended(const rk_kv_policy *p, int budget, int prompt, int new_tokens)
{
    const rk_kv_hooks *hooks = rk_kv_hooks_of(p);
    int rows = hooks->rows_after(0, prompt, budget, rk_kv_compresses(p));
    double sum = 0;
    for (int i = 1; i < new_tokens; i++) {
        sum += rows + 1;
        rows = hooks->rows_after(rows, 1, budget, 0);
    }
    return sum;
}

rk_flops rk_flops_count(const rk_config *cfg, const rk_limits *lim, int prompt, int new_tokens)
{
    const double d = cfg->hidden, f = cfg->ffn, V = cfg->vocab, H = cfg->n_heads, n = prompt;
    const int L = cfg->n_layers;
    const rk_kv_policy *p = &lim->kv;
    const rk_kv_hooks *hooks = rk_kv_hooks_of(p);
    const double qkv = 6 * d * d, after = 2 * d * d + 4 * d * f; /* per token and layer */
    const double dense = qkv + after, logits = 2 * d * V;
    const int logit_rows = lim->logits_rows < prompt ? lim->logits_rows : prompt;
    /* The last layer runs past its attention on the logits' rows only. */
    rk_flops out = {.prefill = L * (n * qkv + 4 * d * causal_keys(n, n)) +
                               (L - 1) * n * after + logit_rows * (after + logits)};
    for (int l = 0; l < L; l++) {
        const int budget = p->budget[l];
        if (p->method == RK_KV_SNAPKV || p->method == RK_KV_H2O) {
            const double w = p->method == RK_KV_H2O ? n : (p->window < prompt ? p->window : n);
            const double k = budget < prompt ? budget : prompt;
            out.compress += (2 * d + 2 * H) * causal_keys(w, n);
            if (p->method == RK_KV_SNAPKV)
                out.compress += H * n * (p->pool - 1);
            if (prompt > budget)
                out.compress += H * n * ceil(log2(k));
        }
        if (p->dynamic) {
            const double r = prompt < lim->rank_len ? prompt : lim->rank_len;
            out.compress += d * r * (r + 1) + H * 10.0 / 3.0 * r * r * r;
        }
        /* Attention, and H2O's rescoring and eviction, are per row. */
        const double per_row = 4 * d + (hooks->keeps_scores ? 2 * d + 3 * H : 0);
        out.decode += per_row * rows_attended(p, budget, prompt, new_tokens);
    }
    if (new_tokens > 1)
        out.decode += (new_tokens - 1) * (L * dense + logits);
    return out;
}

double rk_flops_total(const rk_flops *f) { return f->prefill + f->compress + f->decode; }

double rk_kv_step_bytes(const rk_kv_cache *c, const rk_kv_policy *p, int prompt, int new_tokens)
{
    if (new_tokens < 2)
        return 0;
    double bytes = 0;
    for (int l = 0; l < c->layers; l++)
        bytes += rows_attended(p, p->budget[l], prompt, new_tokens) * 2.0 * c->heads *
                 (double)rk_kv_row_bytes(c->format[l], c->head_dim, c->group);
    return bytes / (new_tokens - 1);
}
