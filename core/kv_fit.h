/* --kv-memory: the KV cache's storage format and budget chosen from the
 * bytes a user gives it, instead of a budget. Target-agnostic: the bytes are
 * the plan's (rk_kv_row_bytes times each layer's rows, the policy's
 * layer_cap), so a choice is exactly the cache rk_model_plan then lays out.
 *
 * The rule. Formats are ranked by bits (fp32, fp16, int8, int4), among
 * those allowed (the target's, or the one --kv-dtype names).
 *  1. The most bits at which every layer keeps the whole prompt: the full
 *     cache, or for a compressing policy an average budget of the whole
 *     prompt.
 *  2. Otherwise (compressing policies only; the full cache is refused) the
 *     prompt must be compressed, and the largest average budget that fits
 *     is taken at the fewest bits of at least 8 (int8 where the target
 *     stores it): on pythia-mini int8 costs KL 8e-5 against fp32, where
 *     SnapKV keeping 256 of 896 prompt rows costs 0.023, so rows are worth
 *     more than the bits above 8. int4 (KL 0.028, as much as that SnapKV
 *     cut) only when that format cannot hold even the policy's smallest
 *     budget.
 *  3. Refused when the fewest bits cannot hold the smallest budget either.
 * The bytes are the K and V rows (--print-plan's "KV cache" line), not the
 * prompt's region of a compressing prefill nor the rows' positions. */
#ifndef RK_KV_FIT_H
#define RK_KV_FIT_H

#include <stddef.h>

#include "config.h"
#include "kv_cache.h"
#include "kv_policy.h"

typedef struct {
    rk_kv_format format;
    int average;  /* the policy's average budget; 0 for the full cache */
    int whole;    /* every layer keeps the whole prompt (rule 1) */
    size_t bytes; /* K and V of every layer */
} rk_kv_fit;

/* Bytes of the K and V rows of policy P's cache for a model of CFG, rows
 * of format F in groups of GROUP channels (0: RK_KV_GROUP_DEFAULT), for
 * prompts of MAX_PROMPT tokens and MAX_NEW after them. */
size_t rk_kv_fit_bytes(const rk_config *cfg, const rk_kv_policy *p, rk_kv_format f, int group,
                       int max_prompt, int max_new);

/* The choice of the rule above for MEMORY bytes, formats FORMATS (a set of
 * RK_KV_FORMAT_BIT) and the policy OPT describes (its average and explicit
 * budgets unset: the choice sets them). RK_ELIMIT with the bytes the
 * smallest cache needs when none fits. The search assumes, as every policy's
 * layer_cap gives, that the bytes grow with the average budget. */
rk_status rk_kv_fit_memory(const rk_config *cfg, unsigned formats, int group,
                           const rk_kv_options *opt, int max_prompt, int max_new, size_t memory,
                           rk_kv_fit *out);

/* Bytes written as S: a number (digits, with a fraction or not), then
 * nothing or B (bytes), or kB, MB, GB, TB (powers of 1000) or KiB, MiB,
 * GiB, TiB (powers of 1024), the prefix letter in either case; the bytes
 * are the number times the unit, rounded down, at least 1. RK_EINVAL
 * otherwise. */
rk_status rk_bytes_parse(const char *s, size_t *bytes);

#endif
