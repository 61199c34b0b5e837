/* Matrix-vector products for the one-token decode step, where a GEMM is a
 * pass over the weights: y[o] = W[o, :] · x + bias[o] (then exact GELU when
 * asked), fp16 weights and input, fp32 accumulation, fp16 or fp32 output.
 * W is row-major [out, in]; in must be a multiple of 8. */
#ifndef RK_GEMV_H
#define RK_GEMV_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes the launches for the current device; call once before rk_k_gemv,
 * outside any stream capture. */
void rk_k_gemv_init(void);
void rk_k_gemv(cudaStream_t s, void *y, const void *w, const void *x, const void *bias, int in,
               int out, int gelu, int f32out);

#ifdef __cplusplus
}
#endif

#endif
