/* One layer's KV cache as the CUDA kernels see it: K and V rows
 * [heads][cap], each one head's HEAD_DIM values at one position. fp16 rows
 * (bits 16) hold the halves; int8, int4 and int2 rows (bits 8, 4, 2) hold
 * the row formats of core/kv_quant.h: the codes, then an fp16 scale and
 * minimum per GROUP channels. The kernels write those rows code for code as
 * rk_kv_quantize_row does, and read them back into fp16 tiles in shared
 * memory as they attend: no dequantized copy of the cache exists. Codes are
 * read as 32-bit words, which needs rows and the scales after their codes
 * 4-byte aligned: so they are at every head_dim the attention kernels take
 * (multiples of 16) and every group that divides it. */
#ifndef RK_KV_ROWS_H
#define RK_KV_ROWS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The storage bits the kernels are built for, each an instance of them:
 * X(BITS) for each. */
#define RK_KV_BITS(X) X(16) X(8) X(4) X(2)

typedef struct {
    void *k, *v;
    int cap, heads, head_dim;
    int bits;  /* 16, 8, 4 or 2 */
    int group; /* channels per scale where bits < 16 */
} rk_k_kv;

/* Bytes of one row. */
size_t rk_k_kv_row_bytes(const rk_k_kv *c);

#ifdef __cplusplus
}
#endif

#endif
