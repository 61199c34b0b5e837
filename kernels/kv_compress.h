/* The CUDA target's KV-compression kernels: the ops of core/ops.h that
 * score, select, gather and evict cache rows (see there for the exact
 * contracts). fp16 caches [heads, cap, head_dim], fp32 scores. Row counts
 * and positions that change from step to step are read from device int32s
 * (ROW, POS), so the decode-step kernels replay inside a CUDA graph. */
#ifndef RK_KV_COMPRESS_H
#define RK_KV_COMPRESS_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Device scratch attention_mass needs: it scores as many queries at a time
 * as this holds. */
size_t rk_k_mass_scratch_bytes(void);
void rk_k_attention_mass(cudaStream_t s, float *score, const void *q, const void *k_cache,
                         const int *row, int n, int from, int heads, int head_dim, int cap,
                         int stride, int add, void *scratch);
/* N up to RK_K_KEEP_MAX rows (their keys sit in shared memory). */
#define RK_K_KEEP_MAX 8192
void rk_k_kv_keep(cudaStream_t s, int *idx, const float *score, int n, int heads, int stride,
                  int pool, int budget, int tail);
void rk_k_kv_gather(cudaStream_t s, void *dk, void *dv, int *pos, float *dscore, const void *sk,
                    const void *sv, const float *sscore, const int *idx, int keep, int heads,
                    int head_dim, int dcap, int scap, int sstride);
void rk_k_kv_evict(cudaStream_t s, void *k_cache, void *v_cache, int *pos_rows, float *score,
                   const int *pos, const int *row, int heads, int head_dim, int cap, int budget,
                   int sinks, int recent);

#ifdef __cplusplus
}
#endif

#endif
