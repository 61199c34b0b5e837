/* Effective-rank measurement, the one analysis RankKV runs on attention: for
 * each head, the causal softmax attention matrix A (n × n) of a sequence,
 * its singular values σ, p = σ / Σσ and erank = exp(−Σ p log p) (Roy &
 * Vetterli). Only the calibrate tool and the dynamic build link an
 * implementation (LAPACK on the CPU, cuSOLVER on CUDA); the static runtime
 * has none, so it cannot run an SVD at inference. */
#ifndef RK_RANK_OPS_H
#define RK_RANK_OPS_H

#include <stddef.h>

#include "config.h"
#include "rk_error.h"

typedef struct rk_rank_ops {
    const char *name; /* the target it measures on: "cpu", "cuda" */
    /* Arena bytes the measurement of one head's N × N matrix needs. */
    size_t (*scratch_bytes)(const rk_config *cfg, int n);
    /* Start-up, after the target's init: handles and anything else the
     * measurement keeps, so that measuring allocates nothing. */
    rk_status (*init)(void *target_ctx, const rk_config *cfg, int n, void **rank_ctx);
    void (*shutdown)(void *rank_ctx);
    /* Per head h, the effective rank of the causal softmax attention of the
     * first N queries over the first N keys, scaled by 1/sqrt(head_dim):
     * Q is [heads, q_stride, head_dim] and K [heads, k_cap, head_dim] in the
     * target's compute type (the layer's q and cache as the forward pass
     * left them). Writes ranks[0..heads) on the host; synchronous. */
    rk_status (*attention_erank)(void *rank_ctx, void *target_ctx, double *ranks, const void *q,
                                 const void *k, int n, int q_stride, int k_cap, int heads,
                                 int head_dim, void *scratch, size_t scratch_bytes);
} rk_rank_ops;

/* erank = exp(entropy of σ / Σσ) over N singular values (negative values,
 * rounding noise of a square root, count as zero). 0 when all are zero. */
double rk_erank_from_singular(const double *sigma, int n);

/* The same from the eigenvalues of A·Aᵀ (σ = sqrt(λ)). */
double rk_erank_from_gram_eigen(const double *lambda, int n);

/* A layer's rank is the mean of its heads': OUT[l] from RANKS[l × heads + h]. */
void rk_erank_layer_means(const double *ranks, int layers, int heads, double *out);

#endif
