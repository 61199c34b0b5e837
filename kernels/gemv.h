/* Matrix-vector products for the one-token decode step, where a GEMM is a
 * pass over the weights: y[o] = W[o, :] · x + bias[o] (then exact GELU when
 * asked), fp16 weights and input, fp32 accumulation, fp16 or fp32 output.
 * W is row-major [out, in]; in must be a multiple of 8.
 *
 * A step reads every weight once, so its time is the bytes over the memory
 * bandwidth plus what each launch loses ramping up and draining. Two
 * products that need not wait for each other therefore run as one launch:
 * a pair (both outputs) or a sum (one output, the two products added).
 * A launch keeps x, both products' inputs, in shared memory. */
#ifndef RK_GEMV_H
#define RK_GEMV_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One product; Y is fp16 [out], or fp32 where the call says so. */
typedef struct {
    void *y;
    const void *w, *x, *bias; /* bias may be NULL */
    int in, out, gelu;
} rk_gemv_part;

/* Sizes the launches for the current device; call once before the
 * products, outside any stream capture. */
void rk_k_gemv_init(void);
/* The most inputs, both products' together, that one launch takes on the
 * current device (its shared memory), or with none on an sm_90. */
int rk_k_gemv_max_inputs(void);
void rk_k_gemv(cudaStream_t s, const rk_gemv_part *p, int f32out);
/* A and B, fp16 outputs. */
void rk_k_gemv_pair(cudaStream_t s, const rk_gemv_part *a, const rk_gemv_part *b);
/* a.y = A + B (both biases); a.out == b.out, no GELU, b.y unused. Reads
 * b.x before it waits for the previous kernel in S: b.x must be final
 * before that kernel starts, and a kernel between b.x's writer and this
 * launch must wait for its own previous one before it lets the next launch
 * (the decode attention's split does, so the merge after it may let this
 * launch before it waits; launch.cuh). */
void rk_k_gemv_sum(cudaStream_t s, const rk_gemv_part *a, const rk_gemv_part *b);

#ifdef __cplusplus
}
#endif

#endif
