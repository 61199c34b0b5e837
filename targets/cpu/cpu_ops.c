/* The fp32 reference target: plain C loops for the elementwise ops and
 * OpenBLAS for every matrix product, attention included. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_kivi.h"
#include "kv_smart.h"
#include "kv_quant.h"
#include "kv_select.h"
#include "plan.h"
#include "pool.h"
#include "targets.h"

typedef struct {
    float *scratch; /* attention scores: one [n, ctx] matrix per head */
} cpu_ctx;

/* Models share the worker pool; it lives while any of them does. */
static int live_models;

/* OpenBLAS's buffer pool (memory.c): a BLAS call takes a work buffer from it
 * and maps a new one when all are in use, so the first time more calls than
 * ever before overlap (which depends on timing) would allocate. The pool is
 * filled here, at start-up, with more buffers than the threads can use at
 * once: on the calling thread for the shared pool, and on every thread for
 * builds that keep one pool per thread. */
extern void *blas_memory_alloc(int procpos);
extern void blas_memory_free(void *buffer);

enum { BLAS_BUFFERS_PER_THREAD = 2 };

static void fill_blas_pool(int threads)
{
    void *held[2 * BLAS_BUFFERS_PER_THREAD * 64];
    int n = 2 * BLAS_BUFFERS_PER_THREAD * (threads < 63 ? threads + 1 : 64);
    for (int i = 0; i < n; i++)
        held[i] = blas_memory_alloc(0);
    for (int i = 0; i < n; i++)
        blas_memory_free(held[i]);
}

static void fill_thread_pool_part(void *arg, int lo, int hi)
{
    for (int t = lo; t < hi; t++)
        fill_blas_pool(0);
}

static rk_status cpu_init(void **ctx)
{
    /* OpenBLAS's threaded GEMM mallocs job descriptors on every call, which
     * would break the no-allocation guarantee: OpenBLAS runs serially and
     * the target splits work across cores itself. */
    openblas_set_num_threads(1);
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("RANKKV_THREADS");
    if (env && atoi(env) > 0)
        threads = atoi(env);
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return rk_fail(RK_ENOMEM, "out of memory for the CPU target");
    rk_status st = pool_start((int)threads);
    if (st != RK_OK) {
        free(c);
        return st;
    }
    fill_blas_pool((int)threads);
    pool_run(fill_thread_pool_part, NULL, (int)threads, 1);
    live_models++;
    *ctx = c;
    return RK_OK;
}

static void cpu_shutdown(void *ctx)
{
    free(ctx);
    if (--live_models == 0)
        pool_stop();
}

static void cpu_device_name(void *ctx, char *buf, size_t len)
{
    snprintf(buf, len, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(buf, len, "%s (%ld cores)", colon + 2, sysconf(_SC_NPROCESSORS_ONLN));
            break;
        }
    }
    fclose(f);
}

static rk_status cpu_alloc(void *ctx, size_t bytes, void **base)
{
    size_t size = (bytes + RK_PLAN_ALIGN - 1) / RK_PLAN_ALIGN * RK_PLAN_ALIGN;
    *base = aligned_alloc(RK_PLAN_ALIGN, size ? size : RK_PLAN_ALIGN);
    if (!*base)
        return rk_fail(RK_ENOMEM, "cannot allocate %zu bytes for the CPU arena", size);
    /* Touch every page now so that first use inside the timed loop does not
     * fault memory in, and so that no byte is ever read uninitialised. */
    memset(*base, 0, size);
    return RK_OK;
}

static void cpu_release(void *ctx, void *base) { free(base); }

static size_t cpu_scratch_bytes(const rk_config *cfg, int chunk, int ctx_len)
{
    return (size_t)cfg->n_heads * (size_t)chunk * (size_t)ctx_len * sizeof(float);
}

static void cpu_bind_scratch(void *ctx, void *scratch, size_t bytes)
{
    ((cpu_ctx *)ctx)->scratch = scratch;
}

static rk_status cpu_upload(void *ctx, void *dst, const void *src, rk_dtype dt, size_t count)
{
    float *d = dst;
    const unsigned char *s = src;
    switch (dt) {
    case RK_F32:
        memcpy(d, s, count * sizeof(float));
        return RK_OK;
    case RK_F16:
    case RK_BF16:
        for (size_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            d[i] = dt == RK_F16 ? rk_f16_to_f32(h) : rk_bf16_to_f32(h);
        }
        return RK_OK;
    default:
        return rk_fail(RK_EDTYPE, "cannot convert dtype %s to F32", rk_dtype_name(dt));
    }
}

static rk_status cpu_copy_in(void *ctx, void *dst, const void *src, size_t bytes)
{
    memcpy(dst, src, bytes);
    return RK_OK;
}

static rk_status cpu_copy_out(void *ctx, void *dst, const void *src, size_t bytes)
{
    memcpy(dst, src, bytes);
    return RK_OK;
}

static rk_status cpu_sync(void *ctx) { return RK_OK; }

static void cpu_embed(void *ctx, void *x, const void *table, const void *tokens, int n, int dim)
{
    const int32_t *tok = tokens;
    for (int i = 0; i < n; i++)
        memcpy((float *)x + (size_t)i * dim, (const float *)table + (size_t)tok[i] * dim,
               (size_t)dim * sizeof(float));
}

static void layernorm(void *y, const void *x, const void *w, const void *b, int n, int dim,
                      float eps)
{
    const float *wf = w, *bf = b;
    for (int i = 0; i < n; i++) {
        const float *xr = (const float *)x + (size_t)i * dim;
        float *yr = (float *)y + (size_t)i * dim;
        double mean = 0, var = 0;
        for (int j = 0; j < dim; j++)
            mean += xr[j];
        mean /= dim;
        for (int j = 0; j < dim; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        var /= dim;
        float rstd = (float)(1.0 / sqrt(var + eps));
        for (int j = 0; j < dim; j++)
            yr[j] = (float)(xr[j] - mean) * rstd * wf[j] + bf[j];
    }
}

static void cpu_add_layernorm(void *ctx, void *x, const void *a, const void *b, rk_norm_out out1,
                              rk_norm_out out2, int n, int dim, float eps)
{
    float *xf = x;
    const float *af = a, *bf = b;
    const size_t count = (size_t)n * dim;
    /* The order of HF's sum, (mlp + attn) + x, for bit-level parity. */
    if (af && bf)
        for (size_t i = 0; i < count; i++)
            xf[i] += af[i] + bf[i];
    else if (af)
        for (size_t i = 0; i < count; i++)
            xf[i] += af[i];
    layernorm(out1.y, x, out1.w, out1.b, n, dim, eps);
    if (out2.y)
        layernorm(out2.y, x, out2.w, out2.b, n, dim, eps);
}

typedef struct {
    float *y;
    const float *x, *w, *bias;
    int n, in, out, gelu;
    int accumulate; /* y += the product rather than y = */
} linear_job;

/* Up to this many rows (a speculative decoder verifying one or two
 * proposals) a product reads each weight row once for all of them:
 * OpenBLAS's GEMM packs its operands first, which made 2 rows cost 1.6
 * one-row steps on pythia-mini; from 4 rows on its blocked kernel is the
 * faster (README, "Speculative decoding"). */
enum { SMALL_ROWS = 3, DOT_LANES = 16 };

/* Columns [lo, hi) of y = x Wᵀ for a few rows, the weight row hot in L1
 * while every input row meets it; DOT_LANES partial sums, so that the
 * compiler keeps them in vector registers. */
static void small_rows_part(const linear_job *j, int lo, int hi)
{
    for (int c = lo; c < hi; c++) {
        const float *wc = j->w + (size_t)c * j->in;
        for (int r = 0; r < j->n; r++) {
            const float *xr = j->x + (size_t)r * j->in;
            float acc[DOT_LANES] = {0};
            int i = 0;
            for (; i + DOT_LANES <= j->in; i += DOT_LANES)
                for (int l = 0; l < DOT_LANES; l++)
                    acc[l] += wc[i + l] * xr[i + l];
            float sum = 0.0f;
            for (int l = 0; l < DOT_LANES; l++)
                sum += acc[l];
            for (; i < j->in; i++)
                sum += wc[i] * xr[i];
            float *yc = j->y + (size_t)r * j->out + c;
            *yc = sum + (j->accumulate ? *yc : 0.0f);
        }
    }
}

/* Output features [lo, hi) of y = x Wᵀ + b: each thread owns whole columns,
 * so the result does not depend on the number of threads. */
static void linear_part(void *arg, int lo, int hi)
{
    const linear_job *j = arg;
    const int cols = hi - lo;
    const float *w = j->w + (size_t)lo * j->in;
    const float beta = j->accumulate ? 1.0f : 0.0f;
    if (j->n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, cols, j->in, 1.0f, w, j->in, j->x, 1, beta,
                    j->y + lo, 1);
    else if (j->n <= SMALL_ROWS)
        small_rows_part(j, lo, hi);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, cols, j->in, 1.0f, j->x, j->in,
                    w, j->in, beta, j->y + lo, j->out);
    for (int i = 0; i < j->n; i++) {
        float *yr = j->y + (size_t)i * j->out;
        for (int c = lo; c < hi; c++) {
            float v = yr[c] + (j->bias ? j->bias[c] : 0.0f);
            yr[c] = j->gelu ? 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)) : v;
        }
    }
}

/* Below this many multiply-adds a split costs more than it saves. */
enum { PARALLEL_MIN_WORK = 1 << 17 };

static void run_linear(const linear_job *j)
{
    if ((long)j->n * j->in * j->out < PARALLEL_MIN_WORK)
        linear_part((void *)j, 0, j->out);
    else
        pool_run(linear_part, (void *)j, j->out, 64);
}

static void cpu_linear(void *ctx, const rk_product *p, int n)
{
    run_linear(&(linear_job){.y = p->y, .x = p->x, .w = p->w, .bias = p->bias, .n = n,
                             .in = p->in, .out = p->out, .gelu = p->gelu});
}

static void cpu_linear_pair(void *ctx, const rk_product *a, const rk_product *b, int n)
{
    cpu_linear(ctx, a, n);
    cpu_linear(ctx, b, n);
}

static void cpu_linear_sum(void *ctx, const rk_product *a, const rk_product *b, int n)
{
    cpu_linear(ctx, a, n);
    run_linear(&(linear_job){.y = a->y, .x = b->x, .w = b->w, .bias = b->bias, .n = n,
                             .in = b->in, .out = b->out, .accumulate = 1});
}

static void cpu_linear_f32out(void *ctx, float *y, const void *x, const void *w, int n, int in,
                              int out)
{
    run_linear(&(linear_job){.y = y, .x = x, .w = w, .n = n, .in = in, .out = out});
}

static void rotate(float *dst, const float *src, const float *rope, int head_dim, int rot_dims)
{
    const int half = rot_dims / 2;
    for (int j = 0; j < half; j++) {
        float c = rope[2 * j], s = rope[2 * j + 1];
        dst[j] = src[j] * c - src[j + half] * s;
        dst[j + half] = src[j + half] * c + src[j] * s;
    }
    memcpy(dst + rot_dims, src + rot_dims, (size_t)(head_dim - rot_dims) * sizeof(float));
}

/* Bytes of one row of C. */
static size_t row_bytes(const rk_kv_layer *c)
{
    return rk_kv_row_bytes(c->format, c->head_dim, c->group);
}

/* The rotated key and the value of head H at row ROW, stored in C: an
 * fp32 cache takes them as they are, any other format quantizes them on
 * append (KIVI: into its residual, flushed as it fills). */
static void append_row(const rk_kv_layer *c, int h, int row, const float *src,
                       const float *rope, int rot_dims)
{
    const int hd = c->head_dim;
    float rotated[RK_KV_MAX_HEAD_DIM];
    if (rk_kv_format_kivi(c->format)) {
        rotate(rotated, src, rope, hd, rot_dims);
        rk_kivi_append(c, 0, h, row, rotated);
        rk_kivi_append(c, 1, h, row, src + hd);
        return;
    }
    if (c->format == RK_KV_SMART) {
        rotate(rotated, src, rope, hd, rot_dims);
        rk_smart_append(c, h, row, rotated, src + hd);
        return;
    }
    const size_t at = ((size_t)h * c->cap + (size_t)row) * row_bytes(c);
    char *k = (char *)c->k + at, *v = (char *)c->v + at;
    if (c->format == RK_KV_FP32) {
        rotate((float *)k, src, rope, hd, rot_dims);
        memcpy(v, src + hd, (size_t)hd * sizeof(float));
        return;
    }
    rotate(rotated, src, rope, hd, rot_dims);
    rk_kv_quantize_row(c->format, hd, c->group, rotated, k);
    rk_kv_quantize_row(c->format, hd, c->group, src + hd, v);
}

static void cpu_qkv_rotary(void *ctx, void *q, const rk_kv_layer *cache, const void *qkv,
                           const float *rope, const void *pos, const void *row, int n,
                           int rot_dims)
{
    const int pos0 = *(const int32_t *)pos, row0 = *(const int32_t *)row;
    const int heads = cache->heads, head_dim = cache->head_dim;
    for (int i = 0; i < n; i++) {
        const float *r = rope + (size_t)(pos0 + i) * rot_dims;
        for (int h = 0; h < heads; h++) {
            const float *src = (const float *)qkv + ((size_t)i * heads + h) * 3 * head_dim;
            rotate((float *)q + ((size_t)h * n + i) * head_dim, src, r, head_dim, rot_dims);
            append_row(cache, h, row0 + i, src + head_dim, r, rot_dims);
        }
    }
}

typedef struct {
    float *out;
    const float *q;
    rk_kv_layer cache;
    float *scratch;
    int n, heads, head_dim, cap, row0;
    float *mass; /* attention_mass: [heads, stride] */
    int from, stride, add;
} attention_job;

/* A job of N queries Q over CACHE's rows 0..row0+n-1 (ROW holds row0). */
static attention_job job_of(void *ctx, const void *q, const rk_kv_layer *cache, const void *row,
                            int n)
{
    return (attention_job){.q = q, .cache = *cache,
                           .scratch = ((cpu_ctx *)ctx)->scratch, .n = n, .heads = cache->heads,
                           .head_dim = cache->head_dim, .cap = cache->cap,
                           .row0 = *(const int32_t *)row};
}

/* Attention reads the rows of a cache in any format but fp32 a tile at a
 * time, each row read back (dequantized) into a buffer of this many floats
 * on the worker's stack: never a widened copy of the cache. */
enum { KV_TILE_FLOATS = 4096 };

/* Rows per tile: an fp32 cache's rows are read in place, all at once. */
static int tile_rows(const attention_job *j, int len)
{
    return j->cache.format == RK_KV_FP32 ? len : KV_TILE_FLOATS / j->head_dim;
}

/* Rows [r0, r0 + n) of head H of K (IS_V 0) or V as floats: the rows
 * themselves in an fp32 cache, otherwise read back into TILE (a KIVI
 * cache's as it stands with the call's rows appended). */
static const float *kv_rows(const attention_job *j, int is_v, int h, int r0, int n, float *tile)
{
    const rk_kv_layer *c = &j->cache;
    if (c->format == RK_KV_FP32)
        return (const float *)(is_v ? c->v : c->k) + ((size_t)h * j->cap + r0) * j->head_dim;
    rk_kv_read_rows(c, is_v, h, j->row0 + j->n, r0, n, tile);
    return tile;
}

/* The causal softmax of queries FROM..n-1 of head H against rows
 * 0..row0+n-1, into S ([n - from, len]); masked entries are 0. */
static void softmax_scores(const attention_job *j, int h, float *s)
{
    const int n = j->n, hd = j->head_dim, len = j->row0 + n, rows = n - j->from;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *qh = j->q + ((size_t)h * n + j->from) * hd;
    const int t = tile_rows(j, len);
    float tile[KV_TILE_FLOATS];
    for (int c0 = 0; c0 < len; c0 += t) {
        const int m = t < len - c0 ? t : len - c0;
        const float *kh = kv_rows(j, 0, h, c0, m, tile);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, m, hd, scale, qh, hd, kh, hd,
                    0.0f, s + c0, len);
    }
    for (int i = 0; i < rows; i++) {
        float *row = s + (size_t)i * len;
        const int visible = j->row0 + j->from + i + 1;
        float mx = row[0];
        for (int c = 1; c < visible; c++)
            mx = row[c] > mx ? row[c] : mx;
        double sum = 0;
        for (int c = 0; c < visible; c++) {
            row[c] = expf(row[c] - mx);
            sum += row[c];
        }
        const float inv = (float)(1.0 / sum);
        for (int c = 0; c < visible; c++)
            row[c] *= inv;
        memset(row + visible, 0, (size_t)(len - visible) * sizeof(float));
    }
}

/* Heads [lo, hi): scores with one GEMM, causal softmax, values with another
 * (per tile of rows in formats but fp32). Each thread uses its own slice of
 * the scratch, one score matrix per head. */
static void attention_part(void *arg, int lo, int hi)
{
    const attention_job *j = arg;
    const int n = j->n, hd = j->head_dim, len = j->row0 + n, t = tile_rows(j, len);
    float tile[KV_TILE_FLOATS];
    for (int h = lo; h < hi; h++) {
        float *s = j->scratch + (size_t)h * n * len;
        softmax_scores(j, h, s);
        for (int c0 = 0; c0 < len; c0 += t) {
            const int m = t < len - c0 ? t : len - c0;
            const float *vh = kv_rows(j, 1, h, c0, m, tile);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, m, 1.0f, s + c0, len,
                        vh, hd, c0 ? 1.0f : 0.0f, j->out + (size_t)h * hd, j->heads * hd);
        }
    }
}

static void cpu_attention(void *ctx, void *out, const void *q, const rk_kv_layer *cache,
                          const void *row, int n)
{
    attention_job j = job_of(ctx, q, cache, row, n);
    j.out = out;
    if ((long)n * (j.row0 + n) * j.head_dim * j.heads < PARALLEL_MIN_WORK)
        attention_part(&j, 0, j.heads);
    else
        pool_run(attention_part, &j, j.heads, 1);
}

/* Heads [lo, hi) of attention_mass: the window's probabilities, summed over
 * its queries in double so that the order of the sum does not matter. */
static void mass_part(void *arg, int lo, int hi)
{
    const attention_job *j = arg;
    const int len = j->row0 + j->n, rows = j->n - j->from;
    for (int h = lo; h < hi; h++) {
        float *s = j->scratch + (size_t)h * rows * len;
        float *dst = j->mass + (size_t)h * j->stride;
        softmax_scores(j, h, s);
        for (int c = 0; c < len; c++) {
            double sum = j->add && c < j->row0 ? dst[c] : 0.0;
            for (int i = 0; i < rows; i++)
                sum += s[(size_t)i * len + c];
            dst[c] = (float)sum;
        }
    }
}

static void cpu_attention_mass(void *ctx, rk_kv_scores scores, const void *q,
                               const rk_kv_layer *cache, const void *row, int n, int from,
                               int add)
{
    attention_job j = job_of(ctx, q, cache, row, n);
    j.mass = scores.s;
    j.stride = scores.stride;
    j.from = from;
    j.add = add;
    if ((long)(n - from) * (j.row0 + n) * j.head_dim * j.heads < PARALLEL_MIN_WORK)
        mass_part(&j, 0, j.heads);
    else
        pool_run(mass_part, &j, j.heads, 1);
}

static void cpu_kv_keep(void *ctx, int32_t *idx, const float *score, int n, int heads, int stride,
                        int pool, int budget, int tail)
{
    /* The attention scores in the scratch are spent by now. */
    float *pooled = ((cpu_ctx *)ctx)->scratch;
    int32_t *heap = (int32_t *)(pooled + n);
    const int keep = budget < n ? budget : n;
    for (int h = 0; h < heads; h++)
        rk_snapkv_select(score + (size_t)h * stride, n, tail, budget, pool,
                         idx + (size_t)h * keep, pooled, heap);
}

/* Rows of the row formats are self-contained (codes and their group
 * scales), and SRC holds the cache's format, so they move as bytes. The
 * KIVI formats and smartkv take the prompt's rows from an fp16 SRC and
 * quantize the kept ones here, once: a KIVI key is grouped with the kept
 * rows beside it, not with the prompt's; a smartkv row goes to the slot
 * its score places it in (kv_smart.h), so positions and scores come
 * first. */
static void cpu_kv_gather(void *ctx, const rk_kv_layer *dst, const rk_kv_layer *src,
                          rk_kv_scores src_scores, const int32_t *idx, int keep)
{
    const int rows = rk_kv_format_row(dst->format);
    const size_t row = rows ? row_bytes(dst) : 0;
    float k[RK_KV_MAX_HEAD_DIM], v[RK_KV_MAX_HEAD_DIM];
    for (int h = 0; h < dst->heads; h++) {
        const int32_t *kept = idx + (size_t)h * keep;
        for (int j = 0; j < keep; j++) {
            const size_t d = (size_t)h * dst->cap + j;
            if (dst->pos)
                dst->pos[d] = kept[j];
            if (dst->score)
                dst->score[d] = src_scores.s[(size_t)h * src_scores.stride + kept[j]];
        }
        if (dst->format == RK_KV_SMART) {
            rk_smart_gather(dst, h, src, kept, keep);
            continue;
        }
        for (int j = 0; j < keep; j++) {
            const size_t d = (size_t)h * dst->cap + j, s = (size_t)h * src->cap + kept[j];
            if (rows) {
                memcpy((char *)dst->k + d * row, (const char *)src->k + s * row, row);
                memcpy((char *)dst->v + d * row, (const char *)src->v + s * row, row);
                continue;
            }
            rk_kv_read_rows(src, 0, h, 0, kept[j], 1, k);
            rk_kv_read_rows(src, 1, h, 0, kept[j], 1, v);
            rk_kivi_append(dst, 0, h, j, k);
            rk_kivi_append(dst, 1, h, j, v);
        }
    }
}

static void cpu_kv_evict(void *ctx, const rk_kv_layer *cache, const void *q, const void *pos,
                         const void *row, int budget, int sinks, int recent)
{
    if (q && cache->score)
        cpu_attention_mass(ctx, (rk_kv_scores){cache->score, cache->cap}, q, cache, row, 1, 0, 1);
    const int pos0 = *(const int32_t *)pos, row0 = *(const int32_t *)row;
    const int cap = cache->cap;
    char *k_cache = cache->k, *v_cache = cache->v;
    const size_t bytes = row_bytes(cache);
    for (int h = 0; h < cache->heads; h++) {
        int32_t *p = cache->pos + (size_t)h * cap;
        float *sc = cache->score ? cache->score + (size_t)h * cap : NULL;
        p[row0] = pos0;
        if (row0 < budget)
            continue;
        int victim = -1;
        for (int r = 0; r < row0; r++) {
            if (p[r] < sinks || p[r] > pos0 - recent)
                continue;
            if (victim < 0 || (sc ? sc[r] < sc[victim] : p[r] < p[victim]))
                victim = r;
        }
        if (victim < 0)
            continue; /* nothing old enough: the new row is overwritten next step */
        const size_t from = (size_t)h * cap + row0, to = (size_t)h * cap + victim;
        memcpy(k_cache + to * bytes, k_cache + from * bytes, bytes);
        memcpy(v_cache + to * bytes, v_cache + from * bytes, bytes);
        p[victim] = p[row0];
        if (sc)
            sc[victim] = sc[row0];
    }
}

static const rk_ops cpu_ops = {
    .name = "cpu",
    .act_bytes = sizeof(float),
    .kv_format = RK_KV_FP32,
    .kv_formats = RK_KV_FORMAT_BIT(RK_KV_FP32) | RK_KV_FORMAT_BIT(RK_KV_FP16) |
                  RK_KV_FORMAT_BIT(RK_KV_INT8) | RK_KV_FORMAT_BIT(RK_KV_INT4) |
                  RK_KV_FORMAT_BIT(RK_KV_INT2) |
                  RK_KV_FORMAT_BIT(RK_KV_KIVI) | RK_KV_FORMAT_BIT(RK_KV_KIVI2) |
                  RK_KV_FORMAT_BIT(RK_KV_KIVI4) | RK_KV_FORMAT_BIT(RK_KV_SMART),
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .device_name = cpu_device_name,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .scratch_bytes = cpu_scratch_bytes,
    .bind_scratch = cpu_bind_scratch,
    .upload = cpu_upload,
    .copy_in = cpu_copy_in,
    .copy_out = cpu_copy_out,
    .sync = cpu_sync,
    .embed = cpu_embed,
    .add_layernorm = cpu_add_layernorm,
    .linear = cpu_linear,
    .linear_pair = cpu_linear_pair,
    .linear_sum = cpu_linear_sum,
    .linear_f32out = cpu_linear_f32out,
    .qkv_rotary = cpu_qkv_rotary,
    .attention = cpu_attention,
    .attention_mass = cpu_attention_mass,
    .kv_keep = cpu_kv_keep,
    .kv_gather = cpu_kv_gather,
    .kv_evict = cpu_kv_evict,
};

const rk_ops *rk_cpu_ops(void) { return &cpu_ops; }
