/* The CUDA target's small kernels: everything in the forward pass that is
 * not a GEMM or attention. fp16 storage, fp32 arithmetic. Launchers are
 * asynchronous on the given stream. Row lengths must pass rk_k_supports_dim. */
#ifndef RK_ELEMENTWISE_H
#define RK_ELEMENTWISE_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "kv_rows.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Nonzero when rows of DIM halves can go through these kernels. */
int rk_k_supports_dim(int dim);

void rk_k_embed(cudaStream_t s, void *x, const void *table, const int *tokens, int n, int dim);
/* x += a (+ b) when a is not NULL; y1 = LayerNorm(x)·w1 + b1, and y2 likewise
 * when y2 is not NULL. */
void rk_k_add_layernorm(cudaStream_t s, void *x, const void *a, const void *b, void *y1,
                        const void *w1, const void *b1, void *y2, const void *w2, const void *b2,
                        int n, int dim, float eps);
/* Rotary at positions *pos.., the keys and values appended to CACHE at
 * rows *row.., quantized on the way where its rows are codes. */
void rk_k_qkv_rotary(cudaStream_t s, void *q, const rk_k_kv *cache, const void *qkv,
                     const float *rope, const int *pos, const int *row, int n, int rot_dims);
/* The K largest of VOCAB floats, values and indices, in any order; K = 1 is
 * the argmax with ties to the lowest index. SCRATCH:
 * rk_k_top_k_scratch_bytes() of device memory, zeroed before the first call
 * (the kernels leave it zeroed again). */
size_t rk_k_top_k_scratch_bytes(void);
void rk_k_top_k(cudaStream_t s, float *vals, int *ids, const float *logits, int vocab, int k,
                void *scratch);
/* x = GELU(x), exact (erf); COUNT is a multiple of 8. */
void rk_k_gelu(cudaStream_t s, void *x, size_t count);

#ifdef __cplusplus
}
#endif

#endif
