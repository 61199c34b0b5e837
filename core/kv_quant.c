#include "kv_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_kivi.h"
#include "kv_smart.h"
#include "safetensors.h"

static float to_f16(float x) { return rk_f16_to_f32(rk_f32_to_f16(x)); }

static void put_f16(unsigned char *p, float x)
{
    const uint16_t h = rk_f32_to_f16(x);
    memcpy(p, &h, sizeof h);
}

static float get_f16(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return rk_f16_to_f32(h);
}

/* Element I's code of BITS (2, 4 or 8) bits: codes pack 8 / BITS to a
 * byte, element I in bits BITS x (I mod 8 / BITS) up. Written in place, so
 * that a key group's codes, a column of a block of rows, can be written in
 * any order. */
static void put_code(unsigned char *codes, int bits, size_t i, unsigned q)
{
    const int per = 8 / bits, shift = bits * (int)(i % (size_t)per);
    const unsigned mask = ((1u << bits) - 1u) << shift;
    codes[i / per] = (unsigned char)((codes[i / per] & ~mask) | (q << shift));
}

void rk_kv_group_meta(const unsigned char *meta, float *scale, float *min)
{
    *scale = get_f16(meta);
    *min = get_f16(meta + sizeof(uint16_t));
}

/* The largest finite fp16. */
#define FP16_MAX 65504.0f

void rk_kv_quantize_group(int bits, const float *x, int n, unsigned char *codes, size_t first,
                          size_t stride, unsigned char *meta)
{
    const float qmax = (float)((1u << bits) - 1);
    /* fminf and fmaxf pass over a NaN wherever it sits (it then reads back
     * as the group's minimum), and the range is clamped to what fp16 holds,
     * so one extreme element cannot make its neighbours infinite. */
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (!(lo <= hi))
        lo = hi = 0.0f;
    lo = fminf(fmaxf(lo, -FP16_MAX), FP16_MAX);
    hi = fminf(fmaxf(hi, -FP16_MAX), FP16_MAX);
    /* m rounded up past the maximum (a group of equal values) has no range
     * left to scale. */
    const float m = to_f16(lo), s = to_f16(fminf(fmaxf(hi - m, 0.0f) / qmax, FP16_MAX));
    put_f16(meta, s);
    put_f16(meta + sizeof(uint16_t), m);
    for (int i = 0; i < n; i++) {
        float q = s > 0.0f ? nearbyintf((x[i] - m) / s) : 0.0f;
        /* Rounding m up or s down can put the extremes a code outside. */
        q = !(q >= 0.0f) ? 0.0f : q > qmax ? qmax : q;
        put_code(codes, bits, first + (size_t)i * stride, (unsigned)q);
    }
}

size_t rk_kv_tokens_bytes(int bits, int head_dim, int group)
{
    return (size_t)head_dim * (size_t)bits / 8 + (size_t)(head_dim / group) * 2 * sizeof(uint16_t);
}

void rk_kv_quantize_tokens(int bits, int head_dim, int group, const float *x, void *row)
{
    unsigned char *codes = row, *meta = codes + (size_t)head_dim * (size_t)bits / 8;
    for (int g = 0; g < head_dim / group; g++)
        rk_kv_quantize_group(bits, x + g * group, group, codes, (size_t)(g * group), 1,
                             meta + (size_t)g * 2 * sizeof(uint16_t));
}

/* Elements [FIRST, FIRST + N) of CODES read back with scale S and minimum
 * M; inlined for each constant BITS, as it is the inner loop of every read
 * of a quantized cache. */
static inline void dequantize_codes(int bits, const unsigned char *codes, int first, int n,
                                    float s, float m, float *x)
{
    for (int i = first; i < first + n; i++)
        x[i] = (float)rk_kv_code(codes, bits, (size_t)i) * s + m;
}

void rk_kv_dequantize_tokens(int bits, int head_dim, int group, const void *row, float *x)
{
    const unsigned char *codes = row, *meta = codes + (size_t)head_dim * (size_t)bits / 8;
    for (int g = 0; g < head_dim / group; g++, meta += 2 * sizeof(uint16_t)) {
        float s, m;
        rk_kv_group_meta(meta, &s, &m);
        if (bits == 8)
            dequantize_codes(8, codes, g * group, group, s, m, x);
        else if (bits == 4)
            dequantize_codes(4, codes, g * group, group, s, m, x);
        else
            dequantize_codes(2, codes, g * group, group, s, m, x);
    }
}

void rk_kv_read_rows(const rk_kv_layer *c, int is_v, int h, int rows, int r0, int n, float *x)
{
    if (rk_kv_format_kivi(c->format)) {
        rk_kivi_read_rows(c, is_v, h, rows, r0, n, x);
        return;
    }
    if (c->format == RK_KV_SMART) {
        rk_smart_read_rows(c, is_v, h, r0, n, x);
        return;
    }
    const size_t row = rk_kv_row_bytes(c->format, c->head_dim, c->group);
    const char *src = (const char *)rk_kv_layer_head(c, is_v, h) + (size_t)r0 * row;
    for (int r = 0; r < n; r++)
        rk_kv_dequantize_row(c->format, c->head_dim, c->group, src + (size_t)r * row,
                             x + (size_t)r * c->head_dim);
}

void rk_kv_quantize_row(rk_kv_format f, int head_dim, int group, const float *x, void *row)
{
    unsigned char *out = row;
    switch (f) {
    case RK_KV_FP32:
        memcpy(out, x, (size_t)head_dim * sizeof(float));
        return;
    case RK_KV_FP16:
        for (int i = 0; i < head_dim; i++)
            put_f16(out + (size_t)i * sizeof(uint16_t), x[i]);
        return;
    case RK_KV_INT8:
    case RK_KV_INT4:
    case RK_KV_INT2:
        rk_kv_quantize_tokens(rk_kv_format_bits(f), head_dim, group, x, row);
        return;
    case RK_KV_KIVI:
    case RK_KV_KIVI2:
    case RK_KV_KIVI4:
    case RK_KV_SMART:
    case RK_KV_N_FORMATS:
        break;
    }
}

void rk_kv_dequantize_row(rk_kv_format f, int head_dim, int group, const void *row, float *x)
{
    const unsigned char *in = row;
    switch (f) {
    case RK_KV_FP32:
        memcpy(x, in, (size_t)head_dim * sizeof(float));
        return;
    case RK_KV_FP16:
        for (int i = 0; i < head_dim; i++)
            x[i] = get_f16(in + (size_t)i * sizeof(uint16_t));
        return;
    case RK_KV_INT8:
    case RK_KV_INT4:
    case RK_KV_INT2:
        rk_kv_dequantize_tokens(rk_kv_format_bits(f), head_dim, group, row, x);
        return;
    case RK_KV_KIVI:
    case RK_KV_KIVI2:
    case RK_KV_KIVI4:
    case RK_KV_SMART:
    case RK_KV_N_FORMATS:
        break;
    }
}

/* Squared error of X' against X, N floats. */
static double squared_error(const float *back, const float *x, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += ((double)back[i] - x[i]) * ((double)back[i] - x[i]);
    return sum;
}

/* The N rows through a one-head cache of format F and N rows, as a KIVI
 * layer cache holds them after N appends: its squared error. */
static rk_status kivi_error(const rk_kv_error *e, rk_kv_format f, int is_v, const float *x,
                            int n, double *err2)
{
    const int hd = e->head_dim;
    rk_kv_layer c = {.cap = n, .heads = 1, .head_dim = hd, .format = f,
                     .group = rk_kv_group_of(e->group),
                     .residual = rk_kv_residual_of(e->residual)};
    void *head = malloc(rk_kv_head_bytes(f, is_v, hd, c.group, c.residual, 0, n));
    if (!head)
        return rk_fail(RK_ENOMEM, "out of memory for a %s cache of %d rows", rk_kv_format_name(f),
                       n);
    *(is_v ? &c.v : &c.k) = head;
    float back[RK_KV_MAX_HEAD_DIM];
    for (int r = 0; r < n; r++)
        rk_kivi_append(&c, is_v, 0, r, x + (size_t)r * hd);
    for (int r = 0; r < n; r++) {
        rk_kivi_read(&c, is_v, 0, n, r, back);
        *err2 += squared_error(back, x + (size_t)r * hd, hd);
    }
    free(head);
    return RK_OK;
}

rk_status rk_kv_error_add_rows(rk_kv_error *e, int layer, int is_v, const float *x, int n)
{
    const int hd = e->head_dim, group = rk_kv_group_of(e->group);
    unsigned char row[RK_KV_MAX_ROW_BYTES];
    float back[RK_KV_MAX_HEAD_DIM];
    for (size_t i = 0; i < (size_t)n * hd; i++)
        e->norm2[is_v][layer] += (double)x[i] * x[i];
    for (int f = 0; f < RK_KV_N_FORMATS; f++) {
        if (!(e->formats & RK_KV_FORMAT_BIT(f)))
            continue;
        double *err2 = &e->err2[f][is_v][layer];
        if (rk_kv_format_kivi((rk_kv_format)f)) {
            rk_status st = kivi_error(e, (rk_kv_format)f, is_v, x, n, err2);
            if (st != RK_OK)
                return st;
            continue;
        }
        for (int r = 0; r < n; r++) {
            const float *xr = x + (size_t)r * hd;
            rk_kv_quantize_row((rk_kv_format)f, hd, group, xr, row);
            rk_kv_dequantize_row((rk_kv_format)f, hd, group, row, back);
            *err2 += squared_error(back, xr, hd);
        }
    }
    return RK_OK;
}

double rk_kv_error_layer(const rk_kv_error *e, rk_kv_format f, int is_v, int layer)
{
    return sqrt(e->err2[f][is_v][layer] / e->norm2[is_v][layer]);
}

double rk_kv_error_overall(const rk_kv_error *e, rk_kv_format f, int is_v)
{
    double err2 = 0, norm2 = 0;
    for (int l = 0; l < e->layers; l++) {
        err2 += e->err2[f][is_v][l];
        norm2 += e->norm2[is_v][l];
    }
    return sqrt(err2 / norm2);
}
