/* The ReKV analysis (core/rekv.h) fed by the greedy speculative decoder
 * (core/speculative.h): an observer that follows rekv.h's protocol round by
 * round, and the end of a generation, where the last rejection still waits
 * for its truth row.
 *
 * At a round that rejected proposal j (window position 1..K, position p),
 * before either sequence rolls back: the draft's confidence is the softmax
 * probability of its token under the draft logits row that proposed it; the
 * target rank is the token's rank under the target's row after TOKENS[j - 1]
 * (the row that predicted p); the target's K/V at p (computed for the
 * rejected token while verifying) and the draft's K/V at p are copied out,
 * every layer. The event then waits: the target's K/V of its own token at p
 * exist only once the next round's forward has run that token (its first),
 * and on_round of that round reads them and adds the event. The draft has a
 * row at p for every rejected proposal because the observer asks for
 * needs_draft_rows; without it, a rejected last proposal (j = K) was never
 * run through the draft, and the row the draft writes at p in the next
 * round is for the target's token, not the rejected one.
 *
 * A rejection in the last round has no next round: rk_rekv_generate runs the
 * target one step more on its own token at p (the plan holds that position:
 * greedy decoding of max_new tokens leaves the last one unrun), unless a
 * round without proposals ran it already. No event is dropped.
 *
 * Only the full cache: rk_model_kv_row refuses a compressing policy's rows,
 * which are not positions. Allocates the rows at init and as events grow the
 * accumulator (an offline analysis: rekv.h says why). */
#ifndef RK_REKV_SPEC_H
#define RK_REKV_SPEC_H

#include "rekv.h"
#include "speculative.h"

typedef struct {
    rk_rekv *acc;       /* where events go: rk_rekv_generate sets it */
    rk_rekv_rows rows;  /* the pending event's, overwritten by the next */
    int pending;        /* ROWS hold a rejection whose truth row is not read yet */
    long rejections;    /* rejected proposals seen, each an event once its truth is read */
    long truth_steps;   /* target steps run only for a last rejection's truth row */
} rk_rekv_observer;

/* O for a draft of config DRAFT and a target of config TARGET: the rows of
 * one event allocated. */
rk_status rk_rekv_observer_init(rk_rekv_observer *o, const rk_config *draft,
                                const rk_config *target);
void rk_rekv_observer_release(rk_rekv_observer *o);

/* The observer for rk_spec_init: O as user, needs_logits and
 * needs_draft_rows set, rk_rekv_observer_round as on_round. */
rk_spec_observer rk_rekv_observer_hooks(rk_rekv_observer *o);

/* on_round (USER: the rk_rekv_observer). RK_EINVAL when a round does not
 * continue where the pending event left off (its position and token), or
 * carries no logits; rk_model_kv_row's and rk_rekv_add's errors as they
 * come. */
rk_status rk_rekv_observer_round(void *user, const rk_spec_round *r);

/* rk_spec_generate on S, whose observer feeds O (rk_rekv_observer_hooks, or
 * one that passes each round to rk_rekv_observer_round with O), with the
 * events into ACC (made for S's two models); then the pending event of the
 * last round resolved, running S's target one step more where needed (S's
 * target sequence then holds that step). */
rk_status rk_rekv_generate(rk_spec *s, rk_rekv_observer *o, rk_rekv *acc, const int32_t *prompt,
                           int n, const rk_spec_options *opt, int32_t *out,
                           rk_spec_stats *stats);

#endif
