#include "kv_kivi.h"

#include <string.h>

#include "kv_quant.h"
#include "safetensors.h"

rk_kivi_side rk_kivi_side_of(rk_kv_format f, int is_v, int head_dim, int group, int residual,
                             int cap)
{
    rk_kivi_side s = {.bits = rk_kv_kivi_bits(f, is_v)};
    s.quantized = cap / residual * residual;
    s.slots = cap < residual ? cap : residual;
    const size_t codes = (size_t)head_dim * (size_t)s.bits / 8;
    s.row = is_v ? rk_kv_tokens_bytes(s.bits, head_dim, group) : codes;
    s.meta = (size_t)s.quantized * s.row;
    const size_t meta = is_v ? 0 : (size_t)(s.quantized / group) * (size_t)head_dim * 4;
    s.residual = s.meta + meta;
    s.bytes = s.residual + (size_t)s.slots * (size_t)head_dim * sizeof(uint16_t);
    return s;
}

static rk_kivi_side side(const rk_kv_layer *c, int is_v)
{
    return rk_kivi_side_of(c->format, is_v, c->head_dim, c->group, c->residual, c->cap);
}

/* Head H's block of K or V under its layout S (rk_kv_layer_head without
 * working S out again). */
static unsigned char *head_at(const rk_kv_layer *c, int is_v, int h, const rk_kivi_side *s)
{
    return (unsigned char *)(is_v ? c->v : c->k) + (size_t)h * s->bytes;
}

static const uint16_t *residual_row(const unsigned char *head, const rk_kivi_side *s, int hd,
                                    int slot)
{
    return (const uint16_t *)(head + s->residual) + (size_t)slot * hd;
}

/* Rows [first, first + residual) of one head, all in its residual, into
 * codes: keys a group of G positions at a time, each channel's G values
 * one group; values row by row. */
static void flush(const rk_kv_layer *c, int is_v, unsigned char *head, const rk_kivi_side *s,
                  int first)
{
    const int hd = c->head_dim, G = c->group;
    float x[RK_KV_MAX_HEAD_DIM];
    if (is_v) {
        for (int i = 0; i < c->residual; i++) {
            const uint16_t *src = residual_row(head, s, hd, i);
            for (int d = 0; d < hd; d++)
                x[d] = rk_f16_to_f32(src[d]);
            rk_kv_quantize_tokens(s->bits, hd, G, x, head + (size_t)(first + i) * s->row);
        }
        return;
    }
    for (int g0 = 0; g0 < c->residual; g0 += G) {
        const int group = (first + g0) / G;
        unsigned char *codes = head + (size_t)(first + g0) * s->row;
        unsigned char *meta = head + s->meta + (size_t)group * (size_t)hd * 4;
        for (int d = 0; d < hd; d++) {
            for (int i = 0; i < G; i++)
                x[i] = rk_f16_to_f32(residual_row(head, s, hd, g0 + i)[d]);
            rk_kv_quantize_group(s->bits, x, G, codes, (size_t)d, (size_t)hd, meta + 4 * d);
        }
    }
}

void rk_kivi_append(const rk_kv_layer *c, int is_v, int h, int row, const float *x)
{
    const rk_kivi_side s = side(c, is_v);
    unsigned char *head = head_at(c, is_v, h, &s);
    const int R = c->residual, slot = row % R;
    uint16_t *dst = (uint16_t *)(head + s.residual) + (size_t)slot * c->head_dim;
    for (int d = 0; d < c->head_dim; d++)
        dst[d] = rk_f32_to_f16(x[d]);
    if (slot == R - 1)
        flush(c, is_v, head, &s, row - slot);
}

/* A key row of HD codes of BITS bits read back with per-channel scales and
 * minima; inlined for each constant BITS, as kv_quant.c's token rows are:
 * the inner loop of every read of a KIVI cache's keys. */
static inline void key_row(int bits, const unsigned char *codes, int hd, const float *scale,
                           const float *min, float *out)
{
    for (int d = 0; d < hd; d++)
        out[d] = (float)rk_kv_code(codes, bits, (size_t)d) * scale[d] + min[d];
}

void rk_kivi_read_rows(const rk_kv_layer *c, int is_v, int h, int rows, int r0, int n, float *x)
{
    const rk_kivi_side s = side(c, is_v);
    const unsigned char *head = head_at(c, is_v, h, &s);
    const int hd = c->head_dim, R = c->residual, quantized = rows / R * R;
    /* A key group's per-channel scales and minima, widened once for the
     * rows of the group rather than once an element. */
    float scale[RK_KV_MAX_HEAD_DIM], min[RK_KV_MAX_HEAD_DIM];
    int widened = -1;
    for (int i = 0; i < n; i++) {
        const int r = r0 + i;
        float *out = x + (size_t)i * hd;
        if (r >= quantized) {
            const uint16_t *src = residual_row(head, &s, hd, r % R);
            for (int d = 0; d < hd; d++)
                out[d] = rk_f16_to_f32(src[d]);
            continue;
        }
        if (is_v) {
            rk_kv_dequantize_tokens(s.bits, hd, c->group, head + (size_t)r * s.row, out);
            continue;
        }
        if (r / c->group != widened) {
            widened = r / c->group;
            const unsigned char *meta = head + s.meta + (size_t)widened * (size_t)hd * 4;
            for (int d = 0; d < hd; d++)
                rk_kv_group_meta(meta + 4 * d, &scale[d], &min[d]);
        }
        const unsigned char *codes = head + (size_t)r * s.row;
        if (s.bits == 2)
            key_row(2, codes, hd, scale, min, out);
        else
            key_row(4, codes, hd, scale, min, out);
    }
}

void rk_kivi_read(const rk_kv_layer *c, int is_v, int h, int rows, int r, float *x)
{
    rk_kivi_read_rows(c, is_v, h, rows, r, 1, x);
}

int rk_kivi_can_truncate(const rk_kv_layer *c, int rows, int n)
{
    return rows <= n / c->residual * c->residual + c->residual;
}
