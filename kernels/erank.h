/* The one kernel of rank measurement: a head's causal softmax attention
 * matrix in double, for the Gram matrix and eigenvalues that follow
 * (targets/cuda/cuda_rank.c). Not part of the static runtime's kernels. */
#ifndef RK_ERANK_H
#define RK_ERANK_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A[i, j] = softmax over j ≤ i of (q_i · k_j) / sqrt(head_dim), 0 for
 * j > i; row-major n × n. Q and K are fp16 rows of HEAD_DIM (≤ 256). */
void rk_k_attention_matrix(cudaStream_t s, double *a, const void *q, const void *k, int n,
                           int head_dim);

#ifdef __cplusplus
}
#endif

#endif
