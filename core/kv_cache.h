/* The KV cache as core plans it and the ops see it. One layer's cache is a
 * descriptor: where its K and V rows are, how many rows each head has, the
 * element format, and the per-row metadata compressing policies keep. The
 * cache ops take descriptors instead of runs of pointers and sizes, so that
 * a storage format with codes and group scales changes the descriptor and
 * the ops, not every call site. */
#ifndef RK_KV_CACHE_H
#define RK_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* How cached K and V elements are stored: its own type, not a file dtype. */
typedef enum { RK_KV_FP32, RK_KV_FP16 } rk_kv_format;

const char *rk_kv_format_name(rk_kv_format f);

/* Bytes of one head's row of HEAD_DIM elements: the unit a layer's cache
 * is counted in. */
size_t rk_kv_row_bytes(rk_kv_format f, int head_dim);

/* One layer's cache (or a region laid out like one, such as the prompt's
 * full K/V while a compressing prefill runs). Rows are [heads][cap]. */
typedef struct {
    void *k, *v;
    /* Per row, the position it holds, where rows are not positions
     * (compressed caches); NULL otherwise. */
    int32_t *pos;
    /* Per row, the attention it has received (H2O's heavy hitters); NULL
     * for policies that keep none. */
    float *score;
    int cap;
    int heads, head_dim;
    rk_kv_format format;
} rk_kv_layer;

/* Per-head fp32 scores of rows (attention mass, accumulated attention):
 * head h's score of row r is s[h * stride + r]. */
typedef struct {
    float *s;
    int stride;
} rk_kv_scores;

/* The whole cache as the plan lays it out: each layer's rows and where
 * they start, as offsets from the arena base. */
typedef struct {
    rk_kv_format format;
    int layers, heads, head_dim;
    int cap[RK_MAX_LAYERS];        /* rows per head of each layer */
    size_t row_off[RK_MAX_LAYERS]; /* rows per head before layer l's */
    size_t rows;                   /* all layers' rows per head */
    size_t k, v, pos, score;       /* arena offsets; pos and score 0 when absent */
} rk_kv_cache;

/* Bytes of K and V together. */
size_t rk_kv_cache_bytes(const rk_kv_cache *c);

/* Layer L's descriptor, for an arena at BASE. */
rk_kv_layer rk_kv_cache_layer(const rk_kv_cache *c, void *base, int l);

#endif
