/* smartkv: adaptive mixed precision of the KV cache (issue #12). Each row
 * (one head's K and V at one position) is stored in one of four tiers of
 * row slots, fp16, int8, int4, int2 (kv_quant.h's row formats, each slot
 * self-contained), by its importance; the tiers' capacities are fixed per
 * layer, so the plan's bytes are exact before anything runs.
 *
 * Capacities (rk_smart_tiers). A layer of C rows per head has an fp16 tier
 * of F = min(S + W, C) rows: the first S = 4 rows of the cache (attention
 * sinks) and the newest W = 32 (SnapKV's observation window, the rows the
 * next queries attend to most). The other R = C - F rows share what is
 * left of the average X = --kv-bits-avg, counted honestly as bits of a
 * row's bytes per element (payload and fp16 scale and minimum: fp16 16,
 * intB B + 32 / G, at G = 16 int8 10, int4 6, int2 4): a = (X C - 16 F) / R
 * bits per row, split between the two adjacent steps of the ladder
 * fp16 > int8 > int4 > int2 that bracket a, as many rows at the upper step
 * as the bits pay for (rounded down), the rest at the lower; a at or below
 * int2's gives every row int2 (a small cache pays for its fp16 tier, as a
 * KIVI residual does). Two adjacent steps rather than a spread over three
 * because error falls steeply and convexly with bits (pythia-mini's K:
 * int2 0.33, int4 0.067, int8 0.004): at equal bytes a mix of neighbours
 * has less error than one that reaches further down. X defaults to 8, half
 * of fp16's bytes with scales; X is in [int2's bits, 16].
 *
 * Importance is a row's score: SnapKV's at prefill (the attention mass the
 * prompt's last W queries give it), then H2O's accumulated attention,
 * every decode step's added. Placement after a prompt (rk_smart_place):
 * sinks and the newest rows fp16, the others by score, the highest first,
 * into int8, int4, int2 as capacity allows, each quantized once from the
 * fp16 prompt row. While decoding a new row enters the fp16 tier; a full
 * tier sends one row down a step (rk_smart_append): from fp16 the oldest
 * that is not a sink (a window slides), from a quantized tier the least
 * important of its rows and the one arriving (which may be that one).
 * A demoted row is requantized from its dequantized values: a second
 * rounding, which test_kv_smart checks against a plain reference. No row
 * is ever promoted. The tiers' capacities sum to C, so a row always finds
 * a slot.
 *
 * One head's K: the tiers' slots in order fp16, int8, int4, int2, then
 * (aligned to 4 bytes) two int32 maps of C entries: each row's slot, each
 * slot's row (-1: free); its V: the tiers' slots alone. Rows stay in
 * position order, so attention's causal mask holds; it reads a row through
 * its slot. A head's bytes are rounded up to 4. */
#ifndef RK_KV_SMART_H
#define RK_KV_SMART_H

#include "kv_cache.h"
#include "rk_error.h"

#define RK_SMART_SINKS 4
#define RK_SMART_WINDOW 32
#define RK_SMART_BITS_DEFAULT 8.0

/* BITS, or the default where none was given (0). */
static inline double rk_smart_bits_of(double bits)
{
    return bits > 0 ? bits : RK_SMART_BITS_DEFAULT;
}

enum { RK_SMART_TIERS = 4 };

/* The row format of tier T: fp16, int8, int4, int2. */
rk_kv_format rk_smart_tier_format(int t);

/* Bits per element of a tier-T row of HEAD_DIM elements in groups of
 * GROUP, scales counted: 8 x its bytes / HEAD_DIM. */
double rk_smart_tier_bits(int t, int head_dim, int group);

/* Refuses an average BITS outside [int2's bits, 16] at GROUP. */
rk_status rk_smart_check(double bits, int head_dim, int group);

/* One head's K (IS_V 0) or V (1) of a smartkv layer cache. */
typedef struct {
    int cap[RK_SMART_TIERS];    /* slots of each tier */
    int first[RK_SMART_TIERS];  /* the tier's first slot */
    size_t row[RK_SMART_TIERS]; /* bytes of a row of the tier */
    size_t off[RK_SMART_TIERS]; /* where its slots start */
    size_t maps;                /* K: where the row-to-slot map starts (slot-to-row after it) */
    size_t bytes;               /* of the head's K or V */
} rk_smart_side;

rk_smart_side rk_smart_side_of(int is_v, int head_dim, int group, double bits, int cap);

/* Row ROW of head H, after a prompt's rows were placed (rk_smart_place)
 * and every row since appended: K and V into the fp16 tier, demoting as
 * the header says by the rows' scores in C->score. */
void rk_smart_append(const rk_kv_layer *c, int h, int row, const float *k, const float *v);

/* After a prompt: slots for head H's first ROWS rows by their scores (the
 * header's placement), every slot before free; then rk_smart_write stores
 * each. */
void rk_smart_place(const rk_kv_layer *c, int h, int rows);

/* Row R of head H, its slot assigned, stored from K and V. */
void rk_smart_write(const rk_kv_layer *c, int h, int r, const float *k, const float *v);

/* A compressed prompt's KEEP rows of head H into C: rk_smart_place by the
 * scores already in C->score, then row j stored from row KEPT[j] of SRC
 * (any format rk_kv_read_rows reads), the layout worked out once. */
void rk_smart_gather(const rk_kv_layer *c, int h, const rk_kv_layer *src, const int32_t *kept,
                     int keep);

/* Row R of head H's K (IS_V 0) or V read back into X. */
void rk_smart_read(const rk_kv_layer *c, int is_v, int h, int r, float *x);

/* Rows R0..R0+N-1 the same way into X (N x head_dim floats): the layout
 * worked out once for them, not once a row (attention reads tiles). */
void rk_smart_read_rows(const rk_kv_layer *c, int is_v, int h, int r0, int n, float *x);

/* The tier of row R of head H. */
int rk_smart_tier_of(const rk_kv_layer *c, int h, int r);

#endif
