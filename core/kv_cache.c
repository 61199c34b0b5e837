#include "kv_cache.h"

#include <string.h>

#include "kv_kivi.h"
#include "kv_smart.h"

static const char *const names[RK_KV_N_FORMATS] = {
    [RK_KV_FP32] = "fp32", [RK_KV_FP16] = "fp16",   [RK_KV_INT8] = "int8",  [RK_KV_INT4] = "int4",
    [RK_KV_INT2] = "int2", [RK_KV_KIVI] = "kivi",   [RK_KV_KIVI2] = "kivi2", [RK_KV_KIVI4] = "kivi4",
    [RK_KV_SMART] = "smartkv"};

const char *rk_kv_format_name(rk_kv_format f)
{
    return (unsigned)f < RK_KV_N_FORMATS ? names[f] : "?";
}

rk_status rk_kv_format_parse(const char *name, rk_kv_format *f)
{
    for (int i = 0; i < RK_KV_N_FORMATS; i++)
        if (strcmp(name, names[i]) == 0) {
            *f = (rk_kv_format)i;
            return RK_OK;
        }
    return rk_fail(RK_EINVAL, "unknown KV dtype '%s' (have: " RK_KV_FORMATS ")", name);
}

int rk_kv_format_kivi(rk_kv_format f)
{
    return f == RK_KV_KIVI || f == RK_KV_KIVI2 || f == RK_KV_KIVI4;
}

int rk_kv_format_row(rk_kv_format f) { return (unsigned)f <= RK_KV_INT2; }

int rk_kv_kivi_bits(rk_kv_format f, int is_v)
{
    return f == RK_KV_KIVI4 || (f == RK_KV_KIVI && is_v) ? 4 : 2;
}

int rk_kv_format_bits(rk_kv_format f)
{
    static const int bits[RK_KV_N_FORMATS] = {
        [RK_KV_FP32] = 32, [RK_KV_FP16] = 16, [RK_KV_INT8] = 8, [RK_KV_INT4] = 4, [RK_KV_INT2] = 2,
        [RK_KV_SMART] = 8};
    return rk_kv_format_kivi(f) ? (rk_kv_kivi_bits(f, 0) + rk_kv_kivi_bits(f, 1)) / 2 : bits[f];
}

int rk_kv_format_grouped(rk_kv_format f) { return rk_kv_format_bits(f) < 16; }

rk_kv_format rk_kv_prompt_format(rk_kv_format f)
{
    return rk_kv_format_row(f) ? f : RK_KV_FP16;
}

rk_status rk_kv_format_check(rk_kv_format f, int head_dim, int group)
{
    if (f != RK_KV_FP32 && head_dim > RK_KV_MAX_HEAD_DIM)
        return rk_fail(RK_EINVAL, "a %s KV cache takes head_dim up to %d (the model's is %d)",
                       rk_kv_format_name(f), RK_KV_MAX_HEAD_DIM, head_dim);
    if (rk_kv_format_grouped(f) && (group < 1 || head_dim % group != 0))
        return rk_fail(RK_EINVAL,
                       "KV group of %d channels does not divide head_dim %d (%s rows are "
                       "quantized in whole groups)",
                       group, head_dim, rk_kv_format_name(f));
    if ((f == RK_KV_INT2 || f == RK_KV_SMART) && head_dim % 4 != 0)
        return rk_fail(RK_EINVAL, "%s packs four 2-bit codes a byte: head_dim %d is not a "
                                  "multiple of 4", rk_kv_format_name(f), head_dim);
    return RK_OK;
}

rk_status rk_kv_residual_check(rk_kv_format f, int head_dim, int group, int residual)
{
    if (!rk_kv_format_kivi(f))
        return RK_OK;
    if (residual < group || residual % group != 0)
        return rk_fail(RK_EINVAL,
                       "KV residual of %d positions is not a multiple of the KV group of %d (%s "
                       "quantizes keys in groups of that many positions)",
                       residual, group, rk_kv_format_name(f));
    if (head_dim % 4 != 0)
        return rk_fail(RK_EINVAL, "%s packs four 2-bit codes a byte: head_dim %d is not a "
                                  "multiple of 4", rk_kv_format_name(f), head_dim);
    return RK_OK;
}

size_t rk_kv_row_payload_bytes(rk_kv_format f, int head_dim)
{
    return (size_t)head_dim * (size_t)rk_kv_format_bits(f) / 8;
}

size_t rk_kv_row_bytes(rk_kv_format f, int head_dim, int group)
{
    const size_t groups = rk_kv_format_grouped(f) ? (size_t)(head_dim / group) : 0;
    return rk_kv_row_payload_bytes(f, head_dim) + groups * 2 * sizeof(uint16_t);
}

size_t rk_kv_head_bytes(rk_kv_format f, int is_v, int head_dim, int group, int residual,
                        double bits_avg, int cap)
{
    if (f == RK_KV_SMART)
        return rk_smart_side_of(is_v, head_dim, group, bits_avg, cap).bytes;
    if (rk_kv_format_kivi(f))
        return rk_kivi_side_of(f, is_v, head_dim, group, residual, cap).bytes;
    return (size_t)cap * rk_kv_row_bytes(f, head_dim, group);
}

void *rk_kv_layer_head(const rk_kv_layer *c, int is_v, int h)
{
    const size_t bytes =
        rk_kv_head_bytes(c->format, is_v, c->head_dim, c->group, c->residual, c->bits_avg,
                         c->cap);
    return (char *)(is_v ? c->v : c->k) + (size_t)h * bytes;
}

/* Bytes of layer L's K (IS_V 0) or V at format F, all heads. */
static size_t side_bytes(const rk_kv_cache *c, int l, rk_kv_format f, int is_v)
{
    return (size_t)c->heads *
           rk_kv_head_bytes(f, is_v, c->head_dim, c->group, c->residual, c->bits_avg, c->cap[l]);
}

size_t rk_kv_cache_layer_bytes_as(const rk_kv_cache *c, int l, rk_kv_format f)
{
    return side_bytes(c, l, f, 0) + side_bytes(c, l, f, 1);
}

size_t rk_kv_cache_layer_bytes(const rk_kv_cache *c, int l)
{
    return rk_kv_cache_layer_bytes_as(c, l, c->format[l]);
}

void rk_kv_cache_lay_out(rk_kv_cache *c)
{
    c->rows = 0;
    c->side_bytes[0] = c->side_bytes[1] = 0;
    for (int l = 0; l < c->layers; l++) {
        c->row_off[l] = c->rows;
        c->rows += (size_t)c->cap[l];
        for (int is_v = 0; is_v < 2; is_v++) {
            c->side_off[is_v][l] = c->side_bytes[is_v];
            c->side_bytes[is_v] += side_bytes(c, l, c->format[l], is_v);
        }
    }
}

size_t rk_kv_cache_bytes(const rk_kv_cache *c) { return c->side_bytes[0] + c->side_bytes[1]; }

rk_kv_layer rk_kv_cache_layer(const rk_kv_cache *c, void *base, int l)
{
    char *b = base;
    const size_t first = c->row_off[l] * (size_t)c->heads;
    return (rk_kv_layer){
        .k = b + c->k + c->side_off[0][l],
        .v = b + c->v + c->side_off[1][l],
        .pos = c->pos ? (int32_t *)(b + c->pos) + first : NULL,
        .score = c->score ? (float *)(b + c->score) + first : NULL,
        .cap = c->cap[l],
        .heads = c->heads,
        .head_dim = c->head_dim,
        .format = c->format[l],
        .group = c->group,
        .residual = c->residual,
        .bits_avg = c->bits_avg,
    };
}
