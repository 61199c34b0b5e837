/* The KIVI formats of the KV cache (Liu et al., "KIVI: A Tuning-Free
 * Asymmetric 2bit Quantization for KV Cache", arXiv 2402.02750): the plain
 * reference of how one head's K and V are laid out, appended, flushed and
 * read back, target-agnostic. The CPU target appends and reads through it.
 *
 * Keys are quantized per channel: channel c of a group of G consecutive
 * positions shares one fp16 scale and minimum (kv_quant.h's asymmetric
 * min/max rule), because a few key channels carry outliers that per-token
 * groups spread over every element of a row. Values are quantized per token
 * in groups of G channels, as int8/int4 rows are. Key bits and value bits
 * are the format's: kivi 2/4, kivi2 2/2, kivi4 4/4.
 *
 * The newest positions stay fp16 in a residual of R rows. When the residual
 * holds R rows (row r with r mod R = R - 1 appended) the block is flushed:
 * its keys quantized in R / G groups of positions, its values row by row,
 * both from the fp16 rows, so a row is quantized once and the same way
 * whatever the calls' sizes. A cache of n rows holds rows [0, n - n mod R)
 * quantized and the n mod R newest in the residual. KIVI flushes keys this
 * way and lets one value at a time leave its residual; here values leave
 * with their keys, so one boundary serves both (and rollback, model.c).
 * Quantizing keys one position at a time would be a group of one per
 * channel, each value its own minimum: no quantization at all.
 *
 * G = 16 and R = 64 by default (--kv-group, --kv-residual). KIVI's own
 * G = 32 does not divide Pythia-2.8B's head_dim of 80, and G is also the
 * values' channel group; 16 divides 80 and 64. R = 4G is KIVI's ratio
 * (R = 128, G = 32): with fewer positions per flush the newest tokens,
 * which attention weighs most, lose their fp16 sooner; with more, the
 * residual's fp16 bytes grow (at context 2048, R = 64 adds 3 % of the
 * rows at 2.7 to 4 times their quantized bytes).
 *
 * One head's K, of a layer cache of CAP rows: Q = CAP rounded down to R
 * rows of codes (HEAD_DIM x bits / 8 bytes each), then Q / G groups of
 * HEAD_DIM (scale, minimum) pairs, then min(R, CAP) fp16 rows. Its V: Q
 * per-token rows (rk_kv_tokens_bytes: codes, then HEAD_DIM / G pairs), then
 * min(R, CAP) fp16 rows. The residual keeps a flushed block's fp16 rows
 * until the next row overwrites the first of them. */
#ifndef RK_KV_KIVI_H
#define RK_KV_KIVI_H

#include "kv_cache.h"

/* One head's K or V of a KIVI layer cache. */
typedef struct {
    int bits;         /* of the codes */
    int quantized;    /* rows the codes hold: the cap rounded down to the residual */
    int slots;        /* fp16 residual rows: min(residual, cap) */
    size_t row;       /* bytes of a quantized row (keys: codes; values: codes and scales) */
    size_t meta;      /* keys: where the groups' per-channel scales start */
    size_t residual;  /* where the fp16 rows start */
    size_t bytes;     /* of the head's K or V */
} rk_kivi_side;

rk_kivi_side rk_kivi_side_of(rk_kv_format f, int is_v, int head_dim, int group, int residual,
                             int cap);

/* Row ROW (every row before it appended) of head H's K (IS_V 0) or V (1)
 * in layer C: X (head_dim floats) into the residual as fp16, and a flush
 * when it fills the residual. */
void rk_kivi_append(const rk_kv_layer *c, int is_v, int h, int row, const float *x);

/* Row R of head H's K or V in layer C, which holds ROWS rows, read back
 * into X (head_dim floats). */
void rk_kivi_read(const rk_kv_layer *c, int is_v, int h, int rows, int r, float *x);

/* Rows R0..R0+N-1 the same way into X (N x head_dim floats): a key group's
 * scales are widened once for its rows (attention reads tiles). */
void rk_kivi_read_rows(const rk_kv_layer *c, int is_v, int h, int rows, int r0, int n, float *x);

/* Whether a cache of C's format and residual that has held ROWS rows still
 * has the fp16 rows to go back to N rows: no row at or past the next flush
 * boundary above N has overwritten the residual. */
int rk_kivi_can_truncate(const rk_kv_layer *c, int rows, int n);

#endif
