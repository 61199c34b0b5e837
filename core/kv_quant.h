/* How one head's row of HEAD_DIM K or V values is stored in each
 * rk_kv_format and read back: the plain reference of the quantized KV
 * cache, target-agnostic. The CPU target quantizes every row it appends and
 * reads every row it attends to through it; a device kernel is checked
 * against it code for code.
 *
 * int8, int4 and int2 rows are quantized per token, in groups of GROUP channels,
 * asymmetrically (KIVI's min/max): a group keeps its minimum m and its scale
 * s = max(max - m, 0) / (2^bits - 1), m rounded to fp16 first and s after,
 * and each element the code q = clamp(round((x - m) / s), 0, 2^bits - 1),
 * rounded half to even (0 where s = 0); it reads back as q * s + m.
 * Asymmetric rather than absmax-symmetric because on pythia-mini's real K/V
 * it leaves less error at the same bytes per row: int4 with groups of 16
 * (scale + min) has relative Frobenius error 0.067 (K) / 0.065 (V) where a
 * symmetric int4 of the same bytes (groups of 8, a scale each) has 0.075 /
 * 0.071 and a symmetric one in groups of 16 0.091 / 0.084; int8 0.0039 /
 * 0.0038 against 0.0050 / 0.0047 (README, "Quantized KV cache").
 *
 * A row: the codes (int8 one byte each; int4 two per byte, element 2i in
 * the low nibble; int2 four per byte, element 4i in the lowest bits),
 * then each group's scale and minimum as fp16, in that order:
 * rk_kv_row_bytes(f, head_dim, group) bytes, self-contained, so rows move
 * as bytes. fp16 rows are IEEE half rounded to nearest even, as the
 * CUDA target's cache holds them; fp32 rows are the floats.
 *
 * The same group rule, at 2 bits too, quantizes the KIVI formats' values
 * per token (rk_kv_quantize_tokens) and their keys per channel over a group
 * of positions (rk_kv_quantize_group with a stride): kv_kivi.h. */
#ifndef RK_KV_QUANT_H
#define RK_KV_QUANT_H

#include "kv_cache.h"

/* N values X as one group of BITS-bit codes (2, 4 or 8): the group's fp16
 * scale and minimum to META (4 bytes), value I's code to element
 * FIRST + I x STRIDE of CODES, packed as kv_quant.c's rows are (8 / BITS a
 * byte, the lowest element in the low bits); the other codes of a byte are
 * kept. */
void rk_kv_quantize_group(int bits, const float *x, int n, unsigned char *codes, size_t first,
                          size_t stride, unsigned char *meta);

/* Element I's code in CODES of BITS bits. */
static inline unsigned rk_kv_code(const unsigned char *codes, int bits, size_t i)
{
    const size_t per = (size_t)(8 / bits);
    return (codes[i / per] >> ((size_t)bits * (i % per))) & ((1u << bits) - 1u);
}

/* A group's scale and minimum, as rk_kv_quantize_group wrote them. */
void rk_kv_group_meta(const unsigned char *meta, float *scale, float *min);

/* Bytes of a per-token row of BITS-bit codes in groups of GROUP channels:
 * HEAD_DIM x BITS / 8 of codes, then 4 per group. */
size_t rk_kv_tokens_bytes(int bits, int head_dim, int group);

/* X (HEAD_DIM floats) as such a row into ROW, and back. int8, int4 and
 * int2 rows are these at 8, 4 and 2 bits. */
void rk_kv_quantize_tokens(int bits, int head_dim, int group, const float *x, void *row);
void rk_kv_dequantize_tokens(int bits, int head_dim, int group, const void *row, float *x);

/* X (HEAD_DIM floats) as a row of format F, GROUP channels per scale, into
 * ROW (rk_kv_row_bytes bytes). F is a row format (fp32, fp16, int8, int4,
 * int2), not a KIVI one. */
void rk_kv_quantize_row(rk_kv_format f, int head_dim, int group, const float *x, void *row);

/* ROW of format F read back into X (HEAD_DIM floats). */
void rk_kv_dequantize_row(rk_kv_format f, int head_dim, int group, const void *row, float *x);

/* Rows [R0, R0 + N) of head H of layer C's K (IS_V 0) or V, in host
 * memory, read back as floats into X (N x head_dim): a row format's rows
 * through rk_kv_dequantize_row (fp32's copied), a KIVI cache's as it
 * stands with ROWS rows written (kv_kivi.h), a smartkv cache's through its
 * slots (kv_smart.h). */
void rk_kv_read_rows(const rk_kv_layer *c, int is_v, int h, int rows, int r0, int n, float *x);

/* What storing rows in each format costs against the floats they came
 * from: per layer, for K and V, the sums of squared errors of the rows read
 * back and of squares of the rows, in each format of FORMATS (fp32's error
 * is 0), in groups of GROUP channels (KIVI: and positions, with a residual
 * of RESIDUAL). Zero-initialise, set LAYERS, HEAD_DIM (at most
 * RK_KV_MAX_HEAD_DIM), GROUP (0: RK_KV_GROUP_DEFAULT), RESIDUAL (0:
 * RK_KV_RESIDUAL_DEFAULT) and FORMATS, then add rows. */
typedef struct {
    int layers, head_dim, group, residual;
    unsigned formats; /* RK_KV_FORMAT_BIT of each format measured; each must
                         pass rk_kv_format_check and rk_kv_residual_check */
    double err2[RK_KV_N_FORMATS][2][RK_MAX_LAYERS]; /* [format][0 K, 1 V][layer] */
    double norm2[2][RK_MAX_LAYERS];
} rk_kv_error;

/* N rows X (N x HEAD_DIM floats) of one head of layer LAYER's K (IS_V 0) or
 * V (1), in position order from position 0, stored and read back in every
 * format: a row format's rows one by one, a KIVI format's as its cache holds
 * them once the N positions have run (kv_kivi.h). RK_ENOMEM when a KIVI
 * format's scratch cache cannot be had. */
rk_status rk_kv_error_add_rows(rk_kv_error *e, int layer, int is_v, const float *x, int n);

/* The relative Frobenius error ||X - X'|| / ||X|| of format F on layer
 * LAYER's K or V rows added so far. */
double rk_kv_error_layer(const rk_kv_error *e, rk_kv_format f, int is_v, int layer);

/* The same over all layers' rows together: the error of the whole cache,
 * sqrt(sum of err2 / sum of norm2), so a layer weighs by its squared norm
 * and the overall lies between the smallest and largest layer's. */
double rk_kv_error_overall(const rk_kv_error *e, rk_kv_format f, int is_v);

#endif
