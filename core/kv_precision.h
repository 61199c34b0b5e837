/* --kv-precision: how many bits each layer's KV rows get. uniform: every
 * layer stores the --kv-dtype. rank: layers of higher effective rank, by
 * the model's compiled RankKV profile (profile.h), get more bits, at no
 * more bytes than the uniform cache.
 *
 * The rule. Around the named row format D the ladder has three steps, each
 * twice the bits of the one below: int2 < int4 < int8 around int4, int4 <
 * int8 < fp16 around int8, int8 < fp16 < fp32 around fp16. Every layer
 * starts at the bottom step; then each layer's steps up are taken in the
 * order of b / rank_l (b the step's bits), as a scale c with b <= c x rank_l
 * rises, each when the cache's bytes stay within the uniform cache's and
 * no layer of higher rank is below that step; a step that does not fit is
 * passed over, and a later, cheaper one (a layer keeping fewer rows) may
 * still be taken. So a layer of higher rank never has fewer bits than one
 * of lower rank, layers of equal rank step together, and no layer could
 * step up once more within the bytes. It is RankKV's proportional budgets
 * (rank_budget.h) applied to bits: bits in proportion to rank, rounded to
 * the ladder, scaled to the bytes.
 *
 * Why this and not the most upgrades the bytes allow: quantization error
 * grows steeply per step down (on pythia-mini's K/V, int8 0.004, int4
 * 0.067, int2 about five times int4), so a trade of the top third of the
 * layers to int8 for the rest at int2 (the most upgrades int4's bytes pay
 * for) buys little and costs much; proportional bits move only the layers
 * whose rank is far from the others'. Why one step either side: a layer's
 * precision stays within a factor of two of what was named, and a
 * profile's ranks span about that (pythia-mini 208 to 502).
 *
 * A layer's bytes are its K and V rows, 2 x heads x its rows x its step's
 * row bytes, so a layer keeping more rows (a compressing policy's budgets)
 * pays more for a step: precision and budgets are independent choices,
 * and the bound is on their product. D must have a row format on both
 * sides (fp16, int8, int4): fp32 has none above, int2 none below, and the
 * KIVI formats are not row formats. */
#ifndef RK_KV_PRECISION_H
#define RK_KV_PRECISION_H

#include "kv_cache.h"
#include "rk_error.h"

typedef enum {
    RK_KV_UNIFORM, /* every layer the named format */
    RK_KV_RANK,    /* the rule above */
    RK_KV_N_PRECISIONS
} rk_kv_precision;

/* The names users give, for help texts. */
#define RK_KV_PRECISIONS "uniform, rank"

const char *rk_kv_precision_name(rk_kv_precision p);

/* The precision named NAME; RK_EINVAL otherwise. */
rk_status rk_kv_precision_parse(const char *name, rk_kv_precision *p);

/* The three steps around F, fewest bits first; RK_EINVAL, naming F, when F
 * lacks a row format on either side. */
rk_status rk_kv_precision_steps(rk_kv_format f, rk_kv_format steps[3]);

/* Each layer's format under P into C->format, C laid out
 * (rk_kv_cache_lay_out): C's dtype, shape, group, residual and caps set.
 * RANK: P = rank's per-layer ranks (C->layers of them, each > 0 and
 * finite); unused by uniform. */
rk_status rk_kv_precision_assign(rk_kv_precision p, const double *rank, rk_kv_cache *c);

#endif
