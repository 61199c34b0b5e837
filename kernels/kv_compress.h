/* The CUDA target's KV-compression kernels: the ops of core/ops.h that
 * select, gather and evict cache rows (see there for the exact contracts;
 * the rows' scores come from attention.h's rk_attention_mass). Caches as
 * kv_rows.h describes them, fp32 scores. Row counts and positions that
 * change from step to step are read from device int32s (ROW, POS), so the
 * decode-step kernels replay inside a CUDA graph. */
#ifndef RK_KV_COMPRESS_H
#define RK_KV_COMPRESS_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "kv_rows.h"

#ifdef __cplusplus
extern "C" {
#endif

/* N up to RK_K_KEEP_MAX rows (their keys sit in shared memory). */
#define RK_K_KEEP_MAX 8192
void rk_k_kv_keep(cudaStream_t s, int *idx, const float *score, int n, int heads, int stride,
                  int pool, int budget, int tail);
/* DST and SRC hold rows of one format, which move as bytes. POS and DSCORE
 * (either may be NULL) are per head PSTRIDE apart: DST's cap, or the
 * layer's whose rows DST stages (a KIVI or smartkv cache's, kv_rows.h). */
void rk_k_kv_gather(cudaStream_t s, const rk_k_kv *dst, int *pos, float *dscore, int pstride,
                    const rk_k_kv *src, const float *sscore, const int *idx, int keep,
                    int sstride);
/* What a decode call of one query to rk_attention_decode left (attention.h):
 * its scores over the cache's rows and its softmax statistics, per head;
 * NULL scores: none. */
typedef struct {
    const float *scores, *stats;
} rk_k_step_mass;
/* With MASS's scores, that query's probability of each row is first added
 * to SCORE, as rk_attention_mass_of_scores would add it, in the same pass. */
void rk_k_kv_evict(cudaStream_t s, const rk_k_kv *cache, int *pos_rows, float *score,
                   const int *pos, const int *row, int budget, int sinks, int recent,
                   rk_k_step_mass mass);

#ifdef __cplusplus
}
#endif

#endif
