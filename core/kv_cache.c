#include "kv_cache.h"

#include <string.h>

static const char *const names[RK_KV_N_FORMATS] = {
    [RK_KV_FP32] = "fp32", [RK_KV_FP16] = "fp16", [RK_KV_INT8] = "int8", [RK_KV_INT4] = "int4"};

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

int rk_kv_format_bits(rk_kv_format f)
{
    static const int bits[RK_KV_N_FORMATS] = {
        [RK_KV_FP32] = 32, [RK_KV_FP16] = 16, [RK_KV_INT8] = 8, [RK_KV_INT4] = 4};
    return bits[f];
}

int rk_kv_format_grouped(rk_kv_format f) { return rk_kv_format_bits(f) < 16; }

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

size_t rk_kv_cache_row_bytes(const rk_kv_cache *c)
{
    return rk_kv_row_bytes(c->format, c->head_dim, c->group);
}

size_t rk_kv_cache_bytes(const rk_kv_cache *c)
{
    return 2 * c->rows * (size_t)c->heads * rk_kv_cache_row_bytes(c);
}

rk_kv_layer rk_kv_cache_layer(const rk_kv_cache *c, void *base, int l)
{
    char *b = base;
    const size_t row = rk_kv_cache_row_bytes(c);
    const size_t first = c->row_off[l] * (size_t)c->heads;
    return (rk_kv_layer){
        .k = b + c->k + first * row,
        .v = b + c->v + first * row,
        .pos = c->pos ? (int32_t *)(b + c->pos) + first : NULL,
        .score = c->score ? (float *)(b + c->score) + first : NULL,
        .cap = c->cap[l],
        .heads = c->heads,
        .head_dim = c->head_dim,
        .format = c->format,
        .group = c->group,
    };
}
