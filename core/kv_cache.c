#include "kv_cache.h"

const char *rk_kv_format_name(rk_kv_format f)
{
    switch (f) {
    case RK_KV_FP32: return "fp32";
    case RK_KV_FP16: return "fp16";
    }
    return "?";
}

size_t rk_kv_row_bytes(rk_kv_format f, int head_dim)
{
    return (size_t)head_dim * (f == RK_KV_FP32 ? 4 : 2);
}

size_t rk_kv_cache_bytes(const rk_kv_cache *c)
{
    return 2 * c->rows * (size_t)c->heads * rk_kv_row_bytes(c->format, c->head_dim);
}

rk_kv_layer rk_kv_cache_layer(const rk_kv_cache *c, void *base, int l)
{
    char *b = base;
    const size_t row = rk_kv_row_bytes(c->format, c->head_dim);
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
    };
}
