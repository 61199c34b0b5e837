/* The floating-point work of a generation, counted from the shapes and the
 * rows each layer keeps, not measured: the GFLOPs column of rankkv-compare.
 * A multiply-add is 2 FLOPs; a comparison (pooling, selection, eviction) is
 * 1. Layer norms, GELU, rotary embedding and residual adds are left out:
 * they are O(tokens · hidden), against the matmuls' O(tokens · hidden²).
 *
 * With d = hidden, f = intermediate, V = vocabulary, H heads, L layers, a
 * prompt of n tokens and K(w, n) = w·n − w(w − 1)/2, the key rows the last
 * w of n causal queries see:
 *
 *   prefill    L·n·(8d² + 4df) + L·4d·K(n, n) + 2dV·min(logits_rows, n)
 *   compress   per layer, SnapKV (window w = min(window, n), H2O: w = n):
 *              (2d + 2H)·K(w, n) scores, H·n·(pool − 1) pooling,
 *              H·n·⌈log2 k⌉ selection of k = min(B_l, n) when n > B_l;
 *              rankkv-dynamic, r = min(n, rank_len) tokens per head:
 *              d·r(r + 1) for the attention, H·(10/3)·r³ for A·Aᵀ (2r³) and
 *              its eigenvalues (4r³/3)
 *   decode     each of new − 1 steps: L·(8d² + 4df) + 2dV + Σ_l 4d·r_l,
 *              r_l the rows layer l attends (its cache and the new row),
 *              plus H2O's rescoring (2d + 2H)·r_l and eviction H·r_l
 *
 * The first new token comes from the prefill's logits. */
#ifndef RK_FLOPS_H
#define RK_FLOPS_H

#include "config.h"
#include "model.h"

typedef struct {
    double prefill, compress, decode;
} rk_flops;

/* A generation under LIM of NEW_TOKENS after a PROMPT-token prompt; LIM's
 * policy gives each layer's kept rows (a dynamic policy's budgets are those
 * of the last prompt it ran). */
rk_flops rk_flops_count(const rk_config *cfg, const rk_limits *lim, int prompt, int new_tokens);

double rk_flops_total(const rk_flops *f);

/* The bytes of KV cache a decode step of that generation reads, the mean
 * over its new − 1 steps: each layer's K and V rows it attends under policy
 * P (r_l above), every head, at the bytes a row takes in that layer's
 * storage format in cache C, whose shape, group and formats are used (KIVI: a
 * quantized row's, rk_kv_row_bytes; the fewer than R newest rows read as
 * fp16 are counted as quantized). What else a policy reads per row (H2O's
 * scores and positions) is left out. With the
 * weights a step reads (rk_model_step_weight_bytes), the decode's demand on
 * memory bandwidth. */
double rk_kv_step_bytes(const rk_kv_cache *c, const rk_kv_policy *p, int prompt, int new_tokens);

#endif
