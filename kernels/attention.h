/* Causal multi-head attention of the CUDA target over a layer's KV cache.
 *
 * Layouts: q is [heads, n, head_dim] fp16 (already rotated; a decode call
 * over an fp16 cache may instead rotate the step's rows itself, below); the
 * cache is a kv_rows.h descriptor, fp16 or quantized rows [heads, cap] with
 * rows 0..pos0+n-1 valid; out (fp16) is
 * [n, heads * head_dim], head h at columns h*head_dim... Query i sits at
 * position pos0+i and attends to cache rows 0..pos0+i, scaled by
 * 1/sqrt(head_dim), with softmax statistics and sums in fp32.
 *
 * pos0 is the int32 at POS in device memory, read by the kernels: grids and
 * arguments depend only on n, heads, head_dim and cap, so a captured call
 * (a CUDA graph) replays correctly at any position with pos0+n <= cap.
 *
 * STATS, when not NULL, receives each query's softmax statistics: [heads, n]
 * pairs of floats, the largest scaled score in log2 units (score / sqrt(
 * head_dim) × log2 e) and the sum of 2^(that - max) over the row, from which
 * rk_attention_mass and rk_attention_mass_of_scores (below) find the
 * probabilities without a pass of their own.
 *
 * Launchers return nothing; the caller reads cudaGetLastError. They launch
 * nothing for a head_dim and storage that rk_attention_supports rejects, so
 * check it once when the model is loaded. */
#ifndef RK_ATTENTION_H
#define RK_ATTENTION_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "kv_rows.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The head sizes the attention and KV-scoring kernels are built for, each
 * a multiple of the MMA tile's 16: GPT-NeoX checkpoints use 32, 64, 80
 * (Pythia), 96 (GPT-NeoX-20B), 128 and 256. X(D) for each, ascending. */
#define RK_ATTENTION_HEAD_DIMS(X) X(32) X(64) X(80) X(96) X(128) X(256)

/* The built size that runs a cache of head_dim rows in storage BITS
 * (kv_rows.h), 0 for none. fp16 rows of any even head_dim up to 256 run on
 * the next size up, the dims past head_dim zeros in shared memory (they add
 * nothing to a score and make output dims no one reads); quantized, KIVI
 * and smartkv rows only at a built size, whose groups their layouts are
 * made of. */
int rk_attention_instance_dim(int head_dim, int bits);

/* Nonzero when rk_attention_instance_dim has a size for the pair. */
int rk_attention_supports(int head_dim, int bits);

/* Causal prefill attention for a chunk of n queries (n >= 1). */
void rk_attention_prefill(cudaStream_t s, void *out, float *stats, const void *q,
                          const rk_k_kv *cache, const int *pos, int n);

/* Attention for a few queries (decode: n = 1; any n works, meant for n <= 16)
 * over a long context: the context is split across thread blocks whose
 * partial results go to SCRATCH, then combined. SCRATCH is a device buffer of
 * rk_attention_decode_scratch_bytes(n, ...) bytes (or more), 16-byte aligned,
 * that needs no initialisation and may be reused by the next call.
 * SCORES, when not NULL, receives each query's unscaled scores q·k of rows
 * 0..pos0+n-1, [heads, n, cap] floats (-inf past a query's own row), for
 * rk_attention_mass_of_scores. */
size_t rk_attention_decode_scratch_bytes(int n, int heads, int head_dim, int cap);

/* The step's own rows still in the QKV product's output ([n, heads, 3,
 * head_dim] fp16), for a decode call that rotates and appends them itself:
 * as rk_k_qkv_rotary at positions *POS.. into rows pos0.. and then the call,
 * with one launch less between the product and the attention. The rotated
 * queries go to Q ([heads, n, head_dim]) for what reads them after. fp16
 * caches only. */
typedef struct {
    const void *qkv;
    const float *rope;
    const int *pos;
    void *q;
    int rot_dims;
} rk_attention_rotary;

/* ROT NULL: Q holds the rotated queries and the cache the step's rows. */
void rk_attention_decode(cudaStream_t s, void *out, float *stats, float *scores, const void *q,
                         const rk_k_kv *cache, void *scratch, const int *pos, int n,
                         const rk_attention_rotary *rot);

/* The attention mass of CACHE's rows from queries FROM..n-1 of the call
 * to attention just made (core/ops.h's attention_mass): row c's score, per
 * head STRIDE floats apart, becomes the sum of those queries' softmax
 * probabilities of it (rows 0..pos0+n-1, pos0 = *ROW), added to its old
 * score for rows before pos0 when ADD is set. STATS is what that call
 * wrote. Row formats and smartkv. */
void rk_attention_mass(cudaStream_t s, float *score, const float *stats, const void *q,
                       const rk_k_kv *cache, const int *row, int n, int from, int stride, int add);

/* The same mass from the scores and statistics a call to rk_attention_decode
 * left (SCORES, STATS), with no key read again: a pass over pos0+n floats a
 * head, cheap enough for every decode step of smartkv (H2O's eviction adds
 * it in its own pass, kv_compress.h). Launched plainly, not as a
 * programmatic dependent, so that it may run on a stream of its own. */
void rk_attention_mass_of_scores(cudaStream_t s, float *score, const float *stats,
                                 const float *scores, const rk_k_kv *cache, const int *row, int n,
                                 int from, int stride, int add);

#ifdef __cplusplus
}
#endif

#endif
