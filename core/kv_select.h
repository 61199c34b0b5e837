/* Which cached positions a head keeps: the selection rules of the KV
 * compression methods, as pure functions of scores that a target computed.
 * Kept positions come out in ascending order, so a compacted cache keeps the
 * sequence order. Nothing allocates: callers pass scratch. The windows,
 * sinks and recent spans must be smaller than the budget (the budget checks
 * in kv_budget.h refuse budgets below them). */
#ifndef RK_KV_SELECT_H
#define RK_KV_SELECT_H

#include <stdint.h>

/* The KEEP highest of SCORE[0..n), ties to the earlier position; writes their
 * positions ascending to OUT and returns how many (min(keep, n)). HEAP: keep
 * int32 of scratch. */
int rk_select_top(const float *score, int n, int keep, int32_t *out, int32_t *heap);

/* out[j] = max of in[j - kernel/2 .. j + kernel/2] within [0, n); kernel odd.
 * SnapKV pools its scores this way so that neighbours of a salient token
 * are kept with it. */
void rk_maxpool1d(const float *in, int n, int kernel, float *out);

/* SnapKV for one head of a prompt of N positions: SCORE[0..n - window) is the
 * attention of the last WINDOW queries to each earlier key, summed over
 * those queries; the BUDGET - window best after max-pooling (KERNEL) are
 * kept, then the window itself. POOLED: n floats, HEAP: budget int32.
 * Returns the count kept: min(budget, n). */
int rk_snapkv_select(const float *score, int n, int window, int budget, int kernel, int32_t *keep,
                     float *pooled, int32_t *heap);

/* StreamingLLM: the first SINKS positions and the most recent rest. */
int rk_streaming_select(int n, int budget, int sinks, int32_t *keep);

/* H2O: the RECENT last positions, and the BUDGET - recent heavy hitters by
 * accumulated attention ACC[0..n - recent) among the older ones. */
int rk_h2o_select(const float *acc, int n, int budget, int recent, int32_t *keep, int32_t *heap);

#endif
