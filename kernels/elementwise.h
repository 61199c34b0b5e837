/* The CUDA target's small kernels: everything in the forward pass that is
 * not a GEMM or attention. fp16 storage, fp32 arithmetic. Launchers are
 * asynchronous on the given stream. */
#ifndef RK_ELEMENTWISE_H
#define RK_ELEMENTWISE_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void rk_k_embed(cudaStream_t s, void *x, const void *table, const int *tokens, int n, int dim);
void rk_k_layernorm(cudaStream_t s, void *y, const void *x, const void *w, const void *b, int n,
                    int dim, float eps);
void rk_k_qkv_rotary(cudaStream_t s, void *q, void *k_cache, void *v_cache, const void *qkv,
                     const float *rope, const int *pos, int n, int heads, int head_dim,
                     int rot_dims, int cap);
/* x += a (+ b). */
void rk_k_residual(cudaStream_t s, void *x, const void *a, const void *b, size_t count);
/* x = GELU(x), exact (erf). */
void rk_k_gelu(cudaStream_t s, void *x, size_t count);

#ifdef __cplusplus
}
#endif

#endif
