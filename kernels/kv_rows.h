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

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The storage bits the kernels are built for, each an instance of them:
 * X(BITS) for each. */
#define RK_KV_BITS(X) X(16) X(8) X(4) X(2)

/* A KIVI cache (core/kv_kivi.h) is not rows of one format: a head's keys
 * are codes with per-channel scales for each GROUP positions, its values
 * token rows of v_bits, and the newest positions fp16 rows in a residual.
 * Its kernels are instances of their own, named by RK_KIVI_FORMAT (key bits
 * in the high nibble, values' in the low: 0x24 is kivi's 2/4). The offsets
 * are core's layout (rk_kivi_side_of), computed once on the host. */
#define RK_KIVI_FORMAT(k_bits, v_bits) ((k_bits) << 4 | (v_bits))
#define RK_KIVI_FORMATS(X) X(0x24) X(0x22) X(0x44)

typedef struct {
    int residual;          /* fp16 rows before a flush; 0: not a KIVI cache */
    size_t k_head, v_head; /* bytes of one head's K, V */
    size_t k_meta;         /* K: where the groups' per-channel (scale, minimum) pairs start */
    size_t k_fp16, v_fp16; /* where the residual's fp16 rows start */
    int meta16;            /* K's scale pairs 16-byte aligned in every head: read 16 B at once */
} rk_k_kivi;

/* A smartkv cache (core/kv_smart.h) is rows of four formats: a head's
 * slots in tiers of fp16, int8, int4 and int2 rows (the same offsets in K
 * and V), and after K's tiers two int32 maps of cap entries, each row's
 * slot and each slot's row (-1: free). Rows are read through their slots.
 * Its kernels are instances of their own, named by RK_SMART_FORMAT. The
 * offsets are core's layout (rk_smart_side_of), computed once on the
 * host. */
#define RK_SMART_FORMAT 1
#define RK_K_SMART_TIERS 4

typedef struct {
    int first[RK_K_SMART_TIERS]; /* each tier's first slot (an empty tier's: the next's) */
    int bits[RK_K_SMART_TIERS];  /* of its rows: 16, 8, 4, 2 */
    int row[RK_K_SMART_TIERS];   /* bytes of one of its rows */
    size_t off[RK_K_SMART_TIERS]; /* where its slots start in a head */
    size_t maps;                 /* K: the row-to-slot map; the slot-to-row map follows */
    size_t k_head, v_head;       /* bytes of one head's K, V */
    int sinks;                   /* the first rows, which the fp16 tier never lets go */
} rk_k_smart;

typedef struct {
    void *k, *v;
    int cap, heads, head_dim;
    int bits;  /* 16, 8, 4 or 2; a KIVI cache's RK_KIVI_FORMAT; RK_SMART_FORMAT */
    int group; /* channels per scale where bits < 16; KIVI's key positions too */
    rk_k_kivi kivi;
    rk_k_smart smart;
} rk_k_kv;

/* A KIVI cache of CACHE's shape takes its appended rows through fp16
 * STAGE (rows [heads][stage->cap], stage->bits 16): rotary (or a gather)
 * writes them at STAGE's rows 0..n-1, then this flushes every block of
 * residual rows that they complete into codes and leaves the newest rows in
 * the residual, as rk_kivi_append does a row at a time. *ROW is the cache
 * row of the first, in device memory (a recorded step replays it). */
void rk_k_kivi_append(cudaStream_t s, const rk_k_kv *cache, const rk_k_kv *stage, const int *row,
                      int n);
/* Once at start-up, before any append (and before a step is recorded). */
cudaError_t rk_k_kivi_init(void);

/* A smartkv cache of CACHE's shape takes its appended rows through fp16
 * STAGE as a KIVI cache does: rotary writes them at STAGE's rows 0..n-1,
 * then each enters the fp16 tier, demoting as rk_smart_append does by the
 * rows' scores SCORE ([heads][cap], the cache's accumulated attention).
 * *ROW is the cache row of the first, in device memory. */
void rk_k_smart_append(cudaStream_t s, const rk_k_kv *cache, const float *score,
                       const rk_k_kv *stage, const int *row, int n);
/* After a prompt: the N rows of STAGE (the kept ones, in row order) placed
 * into CACHE's slots by their scores SCORE and stored there, as
 * rk_smart_place and rk_smart_write do. */
void rk_k_smart_place(cudaStream_t s, const rk_k_kv *cache, const float *score,
                      const rk_k_kv *stage, int n);

/* Bytes of one row. */
size_t rk_k_kv_row_bytes(const rk_k_kv *c);

#ifdef __cplusplus
}
#endif

#endif
