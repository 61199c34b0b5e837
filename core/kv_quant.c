#include "kv_quant.h"

#include <math.h>
#include <string.h>

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

/* Element I's code; an int4 row is written in element order, so the even
 * element of a byte clears it first. */
static void put_code(unsigned char *codes, int bits, int i, unsigned q)
{
    if (bits == 8)
        codes[i] = (unsigned char)q;
    else if (i % 2 == 0)
        codes[i / 2] = (unsigned char)q;
    else
        codes[i / 2] |= (unsigned char)(q << 4);
}

/* The largest finite fp16. */
#define FP16_MAX 65504.0f

/* One group of N values: its minimum and scale to META, the codes of
 * elements FIRST.. to CODES. */
static void quantize_group(int bits, const float *x, int first, int n, unsigned char *codes,
                           unsigned char *meta)
{
    const float qmax = (float)((1u << bits) - 1);
    /* fminf and fmaxf pass over a NaN wherever it sits (it then reads back
     * as the group's minimum), and the range is clamped to what fp16 holds,
     * so one extreme element cannot make its neighbours infinite. */
    float lo = INFINITY, hi = -INFINITY;
    for (int i = first; i < first + n; i++) {
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
    for (int i = first; i < first + n; i++) {
        float q = s > 0.0f ? nearbyintf((x[i] - m) / s) : 0.0f;
        /* Rounding m up or s down can put the extremes a code outside. */
        q = !(q >= 0.0f) ? 0.0f : q > qmax ? qmax : q;
        put_code(codes, bits, i, (unsigned)q);
    }
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
    case RK_KV_INT4: {
        const int bits = rk_kv_format_bits(f);
        unsigned char *meta = out + rk_kv_row_payload_bytes(f, head_dim);
        for (int g = 0; g < head_dim / group; g++)
            quantize_group(bits, x, g * group, group, out,
                           meta + (size_t)g * 2 * sizeof(uint16_t));
        return;
    }
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
    case RK_KV_INT4: {
        const unsigned char *meta = in + rk_kv_row_payload_bytes(f, head_dim);
        for (int g = 0; g < head_dim / group; g++, meta += 2 * sizeof(uint16_t)) {
            const float s = get_f16(meta), m = get_f16(meta + sizeof(uint16_t));
            const int first = g * group;
            if (f == RK_KV_INT8)
                for (int i = first; i < first + group; i++)
                    x[i] = (float)in[i] * s + m;
            else
                for (int i = first; i < first + group; i++)
                    x[i] = (float)((in[i / 2] >> (4 * (i % 2))) & 0x0f) * s + m;
        }
        return;
    }
    case RK_KV_N_FORMATS:
        break;
    }
}

void rk_kv_error_add(rk_kv_error *e, int layer, int is_v, const float *x)
{
    const int hd = e->head_dim, group = e->group ? e->group : RK_KV_GROUP_DEFAULT;
    unsigned char row[RK_KV_MAX_ROW_BYTES];
    float back[RK_KV_MAX_HEAD_DIM];
    for (int i = 0; i < hd; i++)
        e->norm2[is_v][layer] += (double)x[i] * x[i];
    for (int f = 0; f < RK_KV_N_FORMATS; f++) {
        if (!(e->formats & RK_KV_FORMAT_BIT(f)))
            continue;
        rk_kv_quantize_row((rk_kv_format)f, hd, group, x, row);
        rk_kv_dequantize_row((rk_kv_format)f, hd, group, row, back);
        double sum = 0;
        for (int i = 0; i < hd; i++)
            sum += ((double)back[i] - x[i]) * ((double)back[i] - x[i]);
        e->err2[f][is_v][layer] += sum;
    }
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
