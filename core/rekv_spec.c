#include "rekv_spec.h"

#include <string.h>

rk_status rk_rekv_observer_init(rk_rekv_observer *o, const rk_config *draft,
                                const rk_config *target)
{
    memset(o, 0, sizeof *o);
    /* The rows' sizes are the two models', whatever the window. */
    rk_rekv *shape;
    rk_status st = rk_rekv_new(draft, target, 1, &shape);
    if (st == RK_OK)
        st = rk_rekv_rows_alloc(shape, &o->rows);
    rk_rekv_free(shape);
    return st;
}

void rk_rekv_observer_release(rk_rekv_observer *o) { rk_rekv_rows_free(&o->rows); }

rk_spec_observer rk_rekv_observer_hooks(rk_rekv_observer *o)
{
    return (rk_spec_observer){.user = o, .needs_logits = 1, .needs_draft_rows = 1,
                              .on_round = rk_rekv_observer_round};
}

/* M's K and V at POS, every layer, layer after layer. */
static rk_status read_rows(const rk_model *m, const rk_seq *s, int pos, float *k, float *v)
{
    const size_t layer = (size_t)m->cfg.n_heads * m->cfg.head_dim;
    rk_status st = RK_OK;
    for (int l = 0; l < m->cfg.n_layers && st == RK_OK; l++)
        st = rk_model_kv_row(m, s, l, pos, k + l * layer, v + l * layer);
    return st;
}

/* The pending event completed by the target's rows at its position, which
 * now hold TOKEN (S has run it there), and added. */
static rk_status resolve(rk_rekv_observer *o, const rk_model *target, const rk_seq *s,
                         int32_t token)
{
    rk_rekv_rows *w = &o->rows;
    o->pending = 0;
    if (token != w->target_token)
        return rk_fail(RK_EINVAL, "the rejection at position %d waits for the target's token %d "
                                  "there, and %d ran",
                       w->position, (int)w->target_token, (int)token);
    rk_status st = read_rows(target, s, w->position, w->truth_k, w->truth_v);
    return st == RK_OK ? rk_rekv_add(o->acc, w) : st;
}

rk_status rk_rekv_observer_round(void *user, const rk_spec_round *r)
{
    rk_rekv_observer *o = user;
    if (!r->draft_logits || !r->target_logits)
        return rk_fail(RK_EINVAL, "the ReKV analysis needs the rounds' logits (needs_logits)");
    rk_status st = RK_OK;
    /* The round after a rejection starts at its position with the target's
     * token there: the truth row this forward wrote. */
    if (o->pending) {
        if (r->pos != o->rows.position)
            return rk_fail(RK_EINVAL, "the rejection at position %d waits for its truth row, and "
                                      "the round starts at %d",
                           o->rows.position, r->pos);
        if ((st = resolve(o, r->target, r->target_seq, r->tokens[0])) != RK_OK)
            return st;
    }
    if (r->first_rejected < 0)
        return RK_OK;
    const int j = r->accepted + 1, vd = r->draft->cfg.vocab, vt = r->target->cfg.vocab;
    rk_rekv_rows *w = &o->rows;
    w->window_pos = j;
    w->position = r->first_rejected;
    w->draft_token = r->tokens[j];
    w->target_token = r->target_next[r->accepted];
    w->draft_prob = rk_rekv_prob(r->draft_logits + (size_t)(j - 1) * vd, vd, w->draft_token);
    w->target_rank = rk_rekv_rank(r->target_logits + (size_t)r->accepted * vt, vt,
                                  w->draft_token);
    if ((st = read_rows(r->target, r->target_seq, w->position, w->rejected_k, w->rejected_v)) !=
            RK_OK ||
        (st = read_rows(r->draft, r->draft_seq, w->position, w->draft_k, w->draft_v)) != RK_OK)
        return st;
    o->rejections++;
    o->pending = 1;
    return RK_OK;
}

rk_status rk_rekv_generate(rk_spec *s, rk_rekv_observer *o, rk_rekv *acc, const int32_t *prompt,
                           int n, const rk_spec_options *opt, int32_t *out, rk_spec_stats *stats)
{
    if (!s->obs.needs_logits || !s->obs.needs_draft_rows || !s->obs.on_round)
        return rk_fail(RK_EINVAL, "the ReKV analysis needs an observer with the rounds' logits "
                                  "and the draft's row of every proposal");
    o->acc = acc;
    o->pending = 0;
    rk_status st = rk_spec_generate(s, prompt, n, opt, out, stats);
    if (st != RK_OK || !o->pending)
        return st;
    /* The last round rejected at p, and the target's own token there is the
     * last one out: unless a round without proposals ran it, it is the one
     * token the target has not run, and one step more writes its row. */
    const int p = o->rows.position;
    if (p < n || p - n >= stats->generated)
        return rk_fail(RK_EINVAL, "a rejection at position %d, outside the %d tokens out", p,
                       stats->generated);
    if (p == s->target_seq.n_past) {
        st = rk_model_forward(s->target, &s->target_seq, &out[p - n], 1);
        o->truth_steps++;
    }
    return st == RK_OK ? resolve(o, s->target, &s->target_seq, out[p - n]) : st;
}
