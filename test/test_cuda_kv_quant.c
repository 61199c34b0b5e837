/* The CUDA target's quantized KV cache (int8, int4 and int2 rows,
 * core/kv_quant.h, the KIVI formats, core/kv_kivi.h, and smartkv's tiers,
 * core/kv_smart.h) against the CPU
 * target's, op for op (core/ops.h) on the same inputs, for head_dim 64, 80
 * and 128, groups of 8, 16 and 32 (where they divide it), of a whole row
 * and (80) of 20 channels (not a multiple of 8), and Pythia's rotary share
 * (a quarter of head_dim) as well as a fully rotated head:
 *
 * - qkv_rotary appends a prefill chunk, then chunks of 7 rows (a chunked
 *   prefill after cached rows: a KIVI cache's start inside a block and
 *   complete it, the block's first rows in the residual), then rows one at
 *   a time: the CUDA
 *   rows must be the CPU's code for code (rk_kv_quantize_row of the same
 *   floats). Groups that no rotated channel falls in (every value's, and
 *   K's past rot_dims) must be identical, scales, minima and codes; a
 *   rotated key may differ by an ulp between the targets, which
 *   can put an element on the other side of a rounding boundary, so over all
 *   codes 99.9 % must be identical (the largest code difference is printed).
 *   The rotated queries must be the CPU's rounded to fp16. A KIVI cache
 *   (residuals of 64 and of 2 groups) flushes a block inside the first
 *   chunk and others in the small chunks or among the single rows: its
 *   values (never rotated) must be the
 *   CPU's byte for byte, residual and codes; its keys' codes and
 *   per-channel scales as above, and its fp16 residual keys identical or an
 *   fp16 ulp apart.
 * - With the CPU's cache bytes copied into the CUDA cache, attention
 *   (decode and prefill kernels), attention_mass, kv_gather and kv_evict on
 *   both: outputs within fp16's error, moved rows byte for byte. A KIVI
 *   cache: attention, and kv_gather of fp16 prompt rows into it (quantized
 *   on the way, so byte for byte too); KIVI goes with no evicting policy
 *   and no scoring of its own rows (kv_policy.c).
 * - A smartkv cache (averages whose tiers are fp16 and int8, int8 and
 *   int4, int4 and int2) takes the first chunk as the model takes a
 *   prompt (fp16 rows, then kv_gather places them by their scores), then
 *   the same appends, its rows' scores redrawn before each (ties among
 *   them), so that rows are demoted down the tiers: its slot maps must be
 *   the CPU's, its values byte for byte, its keys as above (an fp16 key
 *   an ulp apart at most). Then
 *   attention and attention_mass over the CPU's bytes, and kv_gather of
 *   fp16 prompt rows into it (placed by their scores: the same bytes).
 *
 * One summary line per configuration gives the measured identity rates and
 * the largest errors. Skips without a GPU. An argument names the one
 * format to run (`test_cuda_kv_quant smartkv`: a sanitizer's pass over one
 * format's kernels). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_kivi.h"
#include "kv_quant.h"
#include "kv_reference.h"
#include "kv_smart.h"
#include "ops.h"
#include "rk_test.h"
#include "safetensors.h"
#include "target_test.h"

enum {
    HEADS = 4,
    CAP = 160,     /* rows per head of the cache under test */
    PREFILL = 100, /* rows the first qkv_rotary appends, at row 0 */
    SMALL = 7,     /* rows of the SMALL_CHUNKS chunks after it; the others come one at a time */
    SMALL_CHUNKS = 3,
    /* Rows appended after the first chunk hold position row + POS_SHIFT, as in a
     * compressed cache, so that rotary reads POS and the rows go to ROW. */
    POS_SHIFT = 37,
    ROPE_POSITIONS = CAP + POS_SHIFT,
    MAX_HEAD_DIM = 128,
    /* The widest row here: int8 in groups of 8. */
    MAX_ROW_BYTES = MAX_HEAD_DIM + MAX_HEAD_DIM / 8 * 4,
    /* One side of the cache under test, any format: a KIVI head's fp16
     * residual rows and per-channel scales add less than a row format's
     * bytes. */
    KV_BYTES = 2 * HEADS * CAP * MAX_ROW_BYTES,
    /* kv_gather keeps KEEP rows per head into a cache of KEEP + 1 rows, where
     * kv_evict then runs with budget KEEP, as H2O's decode steps do. */
    KEEP = 72,
    EVICT_STEPS = 12,
};

/* One configuration of the cache under test. */
typedef struct {
    rk_kv_format format;
    int head_dim, group, rot_dims;
    int residual;    /* KIVI's; 0 for the others */
    double bits_avg; /* smartkv's; 0 for the others */
} config;

/* One target's half of the comparison: its context, and the arena and
 * buffers of one configuration. */
typedef struct {
    const rk_ops *ops;
    void *ctx;
    char *arena;
    size_t used, size;
    void *qkv, *q, *out; /* activations, in the target's compute type */
    float *rope, *scores, *src_scores;
    int32_t *pos, *row, *idx;
    rk_kv_layer cache, kept;
    rk_kv_layer prompt; /* KIVI, smartkv: the fp16 rows kv_gather reads */
} side;

static unsigned long long rng = 0x9e3779b97f4a7c15ull;

static double uniform01(void) { return 0.5 * ((double)rk_test_frand(&rng) + 1.0); }

static double normal(void)
{
    const double u = uniform01() + 1e-12, v = uniform01();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}


/* A normal value, one in 40 an outlier twelve times larger, rounded to
 * fp16 (the CPU target's fp32 and the CUDA target's fp16 hold it alike). */
static float spread_value(void)
{
    return rk_test_half((float)(normal() * (uniform01() < 0.025 ? 12.0 : 1.0)));
}

static size_t row_bytes(const config *c)
{
    return rk_kv_row_bytes(c->format, c->head_dim, c->group);
}

static int is_kivi(const config *c) { return rk_kv_format_kivi(c->format); }

static int is_smart(const config *c) { return c->format == RK_KV_SMART; }

/* KIVI and smartkv caches take their rows from fp16 ones (kv_cache.h). */
static int from_fp16(const config *c) { return !rk_kv_format_row(c->format); }

/* Bytes of one side (K: IS_V 0, V: 1) of a layer of CAP rows, all heads. */
static size_t side_bytes(const config *c, int is_v, int cap)
{
    return (size_t)HEADS * rk_kv_head_bytes(c->format, is_v, c->head_dim, c->group, c->residual,
                                            c->bits_avg, cap);
}

static void *take(side *s, size_t bytes)
{
    void *p = s->arena + s->used;
    s->used += (bytes + 255) / 256 * 256;
    CHECKF(s->used <= s->size, "%s: the test's arena of %zu bytes is too small", s->ops->name,
           s->size);
    return p;
}

/* A layer descriptor of CAP rows per head in C's format, with its K and V
 * (and, when WITH_POS, per-row positions; with them or in a smartkv
 * cache, which demotes by them, per-row scores) in S's arena. */
static rk_kv_layer take_layer(side *s, const config *c, int cap, int with_pos)
{
    rk_kv_layer l = {.cap = cap, .heads = HEADS, .head_dim = c->head_dim, .format = c->format,
                     .group = c->group, .residual = c->residual, .bits_avg = c->bits_avg};
    l.k = take(s, side_bytes(c, 0, cap));
    l.v = take(s, side_bytes(c, 1, cap));
    if (with_pos)
        l.pos = take(s, (size_t)HEADS * cap * sizeof(int32_t));
    if (with_pos || is_smart(c))
        l.score = take(s, (size_t)HEADS * cap * sizeof(float));
    return l;
}

/* The arena (zeroed by the target's alloc) with the attention scratch at
 * its start and every buffer of configuration C. */
static void side_open(side *s, const config *c)
{
    const rk_config cfg = {.n_heads = HEADS, .head_dim = c->head_dim,
                           .hidden = HEADS * c->head_dim};
    const size_t scratch = s->ops->scratch_bytes(&cfg, PREFILL, CAP);
    const size_t act = s->ops->act_bytes, hd = (size_t)c->head_dim;
    s->size = scratch + ((size_t)4 << 20);
    s->used = scratch;
    if (s->ops->alloc(s->ctx, s->size, (void **)&s->arena) != RK_OK) {
        fprintf(stderr, "%s: %s\n", s->ops->name, rk_last_error());
        exit(1);
    }
    s->ops->bind_scratch(s->ctx, s->arena, scratch);
    s->qkv = take(s, (size_t)PREFILL * HEADS * 3 * hd * act);
    s->q = take(s, (size_t)HEADS * PREFILL * hd * act);
    s->out = take(s, (size_t)PREFILL * HEADS * hd * act);
    s->rope = take(s, (size_t)ROPE_POSITIONS * c->rot_dims * sizeof(float));
    s->scores = take(s, (size_t)HEADS * CAP * sizeof(float));
    s->src_scores = take(s, (size_t)HEADS * CAP * sizeof(float));
    s->pos = take(s, sizeof(int32_t));
    s->row = take(s, sizeof(int32_t));
    s->idx = take(s, (size_t)HEADS * CAP * sizeof(int32_t));
    s->cache = take_layer(s, c, CAP, 0);
    s->kept = take_layer(s, c, KEEP + 1, 1);
    if (from_fp16(c)) {
        const config fp16 = {RK_KV_FP16, c->head_dim, c->group, c->rot_dims, 0, 0};
        s->prompt = take_layer(s, &fp16, CAP, 0);
    }
}

static void side_close(side *s) { s->ops->release(s->ctx, s->arena); }

/* Host to buffer, in S's queue order (copy_in: upload is a load-time copy
 * that the CUDA target does not order with its kernels). */
static void put(side *s, void *dst, const void *src, size_t bytes)
{
    CHECKF(s->ops->copy_in(s->ctx, dst, src, bytes) == RK_OK, "%s", rk_last_error());
}

static void put_i32(side *s, int32_t *dst, int32_t v) { put(s, dst, &v, sizeof v); }

/* COUNT floats X (fp16-representable) as activations of S's compute type. */
static void put_acts(side *s, void *dst, const float *x, size_t count)
{
    static uint16_t halves[CAP * HEADS * 3 * MAX_HEAD_DIM];
    if (s->ops->act_bytes == sizeof(float)) {
        put(s, dst, x, count * sizeof(float));
        return;
    }
    for (size_t i = 0; i < count; i++)
        halves[i] = rk_f32_to_f16(x[i]);
    put(s, dst, halves, count * sizeof(uint16_t));
}

/* Buffer to host once S's queued work is done; a failure of that work is
 * reported here. */
static void fetch(side *s, void *dst, const void *src, size_t bytes)
{
    rk_status st = s->ops->copy_out(s->ctx, dst, src, bytes);
    if (st == RK_OK)
        st = s->ops->sync(s->ctx);
    CHECKF(st == RK_OK, "%s: %s", s->ops->name, rk_last_error());
}

/* COUNT activations as floats: fp16 ones are widened in place, from the
 * last, so that each is read before a float overwrites it. */
static void fetch_acts(side *s, float *dst, const void *src, size_t count)
{
    fetch(s, dst, src, count * s->ops->act_bytes);
    if (s->ops->act_bytes == sizeof(float))
        return;
    for (size_t i = count; i-- > 0;) {
        uint16_t h;
        memcpy(&h, (const char *)dst + i * sizeof h, sizeof h);
        dst[i] = rk_f16_to_f32(h);
    }
}

/* The rotary table as core/model.c builds it: per position, rot_dims / 2
 * (cos, sin) pairs at GPT-NeoX's base 10000. */
static void make_rope(float *t, int rot_dims)
{
    for (int i = 0; i < rot_dims / 2; i++) {
        const float inv = 1.0f / powf(10000.0f, (float)(2 * i) / (float)rot_dims);
        for (int p = 0; p < ROPE_POSITIONS; p++) {
            t[(size_t)p * rot_dims + 2 * i] = cosf((float)p * inv);
            t[(size_t)p * rot_dims + 2 * i + 1] = sinf((float)p * inv);
        }
    }
}

/* CAP rows of fused qkv, [row, head, q|k|v, head_dim]: normal values with
 * one in 40 an outlier twelve times larger (a group's range then spans
 * it), and in every fifth row a group of equal values (scale 0 unless
 * rotated) at K's last channels and V's first. Every value is
 * fp16-representable, so that the CPU target's fp32 activations and the
 * CUDA target's fp16 ones hold the same numbers. */
static void make_qkv(float *qkv, const config *c)
{
    const int hd = c->head_dim;
    for (int r = 0; r < CAP; r++)
        for (int h = 0; h < HEADS; h++) {
            float *x = qkv + ((size_t)r * HEADS + h) * 3 * hd;
            for (int i = 0; i < 3 * hd; i++)
                x[i] = spread_value();
            if (r % 5 != 0)
                continue;
            const float same = rk_test_half((float)normal());
            for (int i = 0; i < c->group; i++)
                x[2 * hd - 1 - i] = x[2 * hd + i] = same;
        }
}

/* qkv_rotary of N rows QKV at positions pos0.. into cache rows row0...;
 * but a smartkv cache's first rows, a prompt's, go in as the model places
 * them: rotary writes them as fp16 rows (the prompt's region), and
 * kv_gather takes every one into the tiers by its score (src_scores). */
static void append(side *s, const config *c, const float *qkv, int n, int pos0, int row0)
{
    put_acts(s, s->qkv, qkv, (size_t)n * HEADS * 3 * c->head_dim);
    put_i32(s, s->pos, pos0);
    put_i32(s, s->row, row0);
    if (!is_smart(c) || row0 > 0) {
        s->ops->qkv_rotary(s->ctx, s->q, &s->cache, s->qkv, s->rope, s->pos, s->row, n,
                           c->rot_dims);
        return;
    }
    static int32_t all[HEADS * CAP];
    for (int h = 0; h < HEADS; h++)
        for (int j = 0; j < n; j++)
            all[h * n + j] = j;
    put(s, s->idx, all, (size_t)HEADS * n * sizeof(int32_t));
    s->ops->qkv_rotary(s->ctx, s->q, &s->prompt, s->qkv, s->rope, s->pos, s->row, n,
                       c->rot_dims);
    s->ops->kv_gather(s->ctx, &s->cache, &s->prompt, (rk_kv_scores){s->src_scores, CAP}, s->idx,
                      n);
}

/* Counts of compared items and of identical ones. */
typedef struct {
    long all, same;
} tally;

static void tally_add(tally *t, int same)
{
    t->all++;
    t->same += same != 0;
}

static double rate(tally t) { return t.all ? (double)t.same / (double)t.all : 1.0; }

/* The cache rows of both targets compared: codes and group metas (fp16
 * scale and minimum) over all groups, and over the fixed groups (V's, and
 * K's that no rotated channel falls in), which must be identical. */
typedef struct {
    tally codes, metas, fixed_codes, fixed_metas;
    unsigned max_diff; /* the largest |code difference| */
    double q_err;      /* the largest |CUDA - CPU| of a rotated query, over the largest |CPU| */
    long q_bad;        /* queries further apart than fp16 rounding allows */
} append_stats;

/* One row of BITS-bit codes, G (got) against W (wanted). */
/* Code I of rows G (the GPU's) and W (the CPU's) of BITS, tallied; FIXED:
 * in a group no rotation touches. */
static void tally_code(append_stats *st, const unsigned char *g, const unsigned char *w, int bits,
                       size_t i, int fixed)
{
    const unsigned a = rk_kv_code(g, bits, i), b = rk_kv_code(w, bits, i);
    const unsigned diff = a > b ? a - b : b - a;
    st->max_diff = diff > st->max_diff ? diff : st->max_diff;
    tally_add(&st->codes, diff == 0);
    if (fixed)
        tally_add(&st->fixed_codes, diff == 0);
}

static void compare_row(append_stats *st, const config *c, int bits, const unsigned char *g,
                        const unsigned char *w, int is_v)
{
    const int hd = c->head_dim, groups = hd / c->group;
    const size_t code_bytes = (size_t)hd * bits / 8;
    for (int k = 0; k < groups; k++) {
        const int fixed = is_v || k * c->group >= c->rot_dims;
        const int meta_same = memcmp(g + code_bytes + 4 * k, w + code_bytes + 4 * k, 4) == 0;
        tally_add(&st->metas, meta_same);
        if (fixed)
            tally_add(&st->fixed_metas, meta_same);
        for (int i = k * c->group; i < (k + 1) * c->group; i++)
            tally_code(st, g, w, bits, (size_t)i, fixed);
    }
}

static void compare_rows(append_stats *st, const config *c, const unsigned char *got,
                         const unsigned char *want, int is_v)
{
    const size_t row = row_bytes(c);
    for (int r = 0; r < HEADS * CAP; r++)
        compare_row(st, c, rk_kv_format_bits(c->format), got + (size_t)r * row,
                    want + (size_t)r * row, is_v);
}

/* Keys' fp16 halves at G and W, HD of them: identical past ROT_DIMS,
 * elsewhere identical or an fp16 ulp apart (a rotation an fp32 ulp apart,
 * rounded across a boundary). The count of others. */
static long fp16_keys_far(const unsigned char *g, const unsigned char *w, int hd, int rot_dims)
{
    long far = 0;
    for (int i = 0; i < hd; i++) {
        uint16_t a, b;
        memcpy(&a, g + 2 * (size_t)i, 2);
        memcpy(&b, w + 2 * (size_t)i, 2);
        far += abs((int)a - (int)b) > (i >= rot_dims ? 0 : 1);
    }
    return far;
}

/* The rotated queries of the last append, [heads, n, head_dim]: the CUDA
 * target's must be the CPU's floats rounded to fp16. A rotation that
 * differs by an fp32 ulp of its terms (at most the largest |q|; a
 * difference of products can cancel to far less) may put a value on the
 * other side of an fp16 rounding boundary: one fp16 ulp (2^-10 relative)
 * plus 2^-20 of the largest |q| allows that, and nothing more. */
static void compare_queries(append_stats *st, side *cpu, side *gpu, const config *c, int n)
{
    static float want[HEADS * PREFILL * MAX_HEAD_DIM], got[HEADS * PREFILL * MAX_HEAD_DIM];
    const size_t count_q = (size_t)HEADS * n * c->head_dim;
    fetch_acts(cpu, want, cpu->q, count_q);
    fetch_acts(gpu, got, gpu->q, count_q);
    double largest = 1e-30, err = 0;
    for (size_t i = 0; i < count_q; i++)
        largest = fmax(largest, fabs((double)want[i]));
    for (size_t i = 0; i < count_q; i++) {
        const double d = isfinite(got[i]) ? fabs((double)got[i] - want[i]) : INFINITY;
        st->q_bad += d > ldexp(fabs(want[i]), -10) + ldexp(largest, -20);
        err = fmax(err, d);
    }
    st->q_err = fmax(st->q_err, err / largest);
}

static unsigned char cpu_k[KV_BYTES], cpu_v[KV_BYTES];
static unsigned char gpu_k[KV_BYTES], gpu_v[KV_BYTES];

/* The KIVI caches of both targets compared, K and V of every head (after
 * CAP rows, so CAP rounded down to the residual are codes): V byte for
 * byte; K's codes and per-channel pairs tallied as compare_rows does, a
 * channel past rot_dims (never rotated, at any position) fixed; its fp16
 * residual rows identical in those channels, and in rotated ones identical
 * or an fp16 ulp apart (a rotation an fp32 ulp apart, rounded across a
 * boundary): RESIDUAL_FAR counts the others. */
static void compare_kivi(append_stats *st, const config *c, long *residual_far)
{
    const int hd = c->head_dim;
    const rk_kivi_side k = rk_kivi_side_of(c->format, 0, hd, c->group, c->residual, CAP);
    const size_t v_bytes = side_bytes(c, 1, CAP);
    CHECKF(memcmp(gpu_v, cpu_v, v_bytes) == 0, "%s: the CUDA target's value codes, scales or "
                                                "residual rows differ from the CPU's",
           rk_kv_format_name(c->format));
    for (int h = 0; h < HEADS; h++) {
        const unsigned char *g = gpu_k + (size_t)h * k.bytes, *w = cpu_k + (size_t)h * k.bytes;
        for (size_t i = 0; i < (size_t)k.quantized * hd; i++)
            tally_code(st, g, w, k.bits, i, (int)(i % (size_t)hd) >= c->rot_dims);
        for (size_t m = k.meta; m < k.residual; m += 4) {
            const int same = memcmp(g + m, w + m, 4) == 0;
            tally_add(&st->metas, same);
            if ((int)((m - k.meta) / 4 % (size_t)hd) >= c->rot_dims)
                tally_add(&st->fixed_metas, same);
        }
        for (int i = 0; i < k.slots; i++) {
            const size_t at = k.residual + (size_t)i * hd * 2;
            *residual_far += fp16_keys_far(g + at, w + at, hd, c->rot_dims);
        }
    }
}

/* The smartkv caches of both targets compared, K and V of every head:
 * the slot maps and V byte for byte (they follow from the scores, the same
 * on both, and from values never rotated); K's rows slot by slot in their
 * tier's format, tallied as compare_rows does, an fp16 tier's keys as
 * compare_kivi's residual: FAR counts those further apart. */
static void compare_smart(append_stats *st, const config *c, long *far)
{
    const int hd = c->head_dim;
    const rk_smart_side k = rk_smart_side_of(0, hd, c->group, c->bits_avg, CAP);
    CHECKF(memcmp(gpu_v, cpu_v, side_bytes(c, 1, CAP)) == 0,
           "smartkv %g bits: the CUDA target's values differ from the CPU's", c->bits_avg);
    for (int h = 0; h < HEADS; h++) {
        const unsigned char *g = gpu_k + (size_t)h * k.bytes, *w = cpu_k + (size_t)h * k.bytes;
        CHECKF(memcmp(g + k.maps, w + k.maps, 2 * CAP * sizeof(int32_t)) == 0,
               "smartkv %g bits: head %d's slot maps differ from the CPU's (a row placed or "
               "demoted elsewhere)",
               c->bits_avg, h);
        for (int t = 0; t < RK_SMART_TIERS; t++) {
            const int bits = rk_kv_format_bits(rk_smart_tier_format(t));
            for (int i = 0; i < k.cap[t]; i++) {
                const size_t at = k.off[t] + (size_t)i * k.row[t];
                if (bits == 16)
                    *far += fp16_keys_far(g + at, w + at, hd, c->rot_dims);
                else
                    compare_row(st, c, bits, g + at, w + at, 0);
            }
        }
    }
}

/* Scores for every row of the smartkv cache under test (and for the
 * prompt's rows that place them), the same on both targets: eighths in
 * [0, 2), so that ties (the earlier row ranks above) are common. */
static void put_row_scores(side *cpu, side *gpu)
{
    static float score[HEADS * CAP];
    for (int i = 0; i < HEADS * CAP; i++)
        score[i] = (float)(int)(16 * uniform01()) / 8.0f;
    side *sides[2] = {cpu, gpu};
    for (int s = 0; s < 2; s++) {
        put(sides[s], sides[s]->cache.score, score, sizeof score);
        put(sides[s], sides[s]->src_scores, score, sizeof score);
    }
}

/* Rows 0..PREFILL-1 as one chunk at position 0, SMALL_CHUNKS chunks of
 * SMALL rows, then one row at a time as decode appends them; the caches
 * compared row for row (cpu_k and cpu_v keep the CPU's bytes). */
static append_stats test_append(side *cpu, side *gpu, const config *c, const float *qkv)
{
    append_stats st = {0};
    const size_t k_bytes = side_bytes(c, 0, CAP), v_bytes = side_bytes(c, 1, CAP);
    /* The chunk, small chunks, then rows one at a time. */
    for (int row0 = 0, n; row0 < CAP; row0 += n) {
        n = row0 == 0 ? PREFILL : row0 < PREFILL + SMALL_CHUNKS * SMALL ? SMALL : 1;
        const int pos0 = row0 ? row0 + POS_SHIFT : 0;
        const float *rows = qkv + (size_t)row0 * HEADS * 3 * c->head_dim;
        if (is_smart(c))
            put_row_scores(cpu, gpu);
        append(cpu, c, rows, n, pos0, row0);
        append(gpu, c, rows, n, pos0, row0);
        compare_queries(&st, cpu, gpu, c, n);
    }
    fetch(cpu, cpu_k, cpu->cache.k, k_bytes);
    fetch(cpu, cpu_v, cpu->cache.v, v_bytes);
    fetch(gpu, gpu_k, gpu->cache.k, k_bytes);
    fetch(gpu, gpu_v, gpu->cache.v, v_bytes);
    const char *f = rk_kv_format_name(c->format);
    if (is_kivi(c)) {
        long far = 0;
        compare_kivi(&st, c, &far);
        CHECKF(far == 0, "%s: %ld residual keys differ from the CPU's (rotated ones by more "
                         "than an fp16 ulp)",
               f, far);
    } else if (is_smart(c)) {
        long far = 0;
        compare_smart(&st, c, &far);
        CHECKF(far == 0, "%s: %ld fp16 keys differ from the CPU's (rotated ones by more than an "
                         "fp16 ulp)",
               f, far);
    } else {
        compare_rows(&st, c, gpu_k, cpu_k, 0);
        compare_rows(&st, c, gpu_v, cpu_v, 1);
    }
    CHECKF(st.q_bad == 0, "%s: %ld rotated queries differ from the CPU's by more than fp16 "
                          "rounding (largest difference %.3g of the largest |q|)",
           f, st.q_bad, st.q_err);
    CHECKF(st.fixed_codes.same == st.fixed_codes.all && st.fixed_metas.same == st.fixed_metas.all,
           "%s: in groups no rotation touches, %ld of %ld codes and %ld of %ld scale/minimum "
           "pairs differ from rk_kv_quantize_row's",
           f, st.fixed_codes.all - st.fixed_codes.same, st.fixed_codes.all,
           st.fixed_metas.all - st.fixed_metas.same, st.fixed_metas.all);
    CHECKF(rate(st.codes) >= 0.999, "%s: only %.4f %% of codes identical to the CPU's", f,
           100 * rate(st.codes));
    /* An ulp moves a group's fp16 minimum or scale only where it sits on an
     * fp16 rounding boundary, about one value in 2^13 (fp32's 13 more
     * mantissa bits): a 1 % allowance is wide, and a systematic difference
     * (every group rounded another way) still fails. */
    CHECKF(rate(st.metas) >= 0.99, "%s: only %.4f %% of scale/minimum pairs identical", f,
           100 * rate(st.metas));
    return st;
}

/* BYTES of 0xff at DST: NaN in fp16 and fp32, so that an output an op
 * leaves unwritten fails its bound. */
static void poison(side *s, void *dst, size_t bytes)
{
    static unsigned char nan_bytes[PREFILL * HEADS * MAX_HEAD_DIM * sizeof(float)];
    memset(nan_bytes, 0xff, bytes);
    put(s, dst, nan_bytes, bytes);
}

/* N queries [heads, n, head_dim], fp16-representable, with the spread of
 * test_cuda_attention (1.5) so that the softmax is peaked enough for a
 * wrong scale, mask or row to show. */
static void put_queries(side *cpu, side *gpu, const config *c, int n)
{
    static float q[HEADS * PREFILL * MAX_HEAD_DIM];
    const size_t count_q = (size_t)HEADS * n * c->head_dim;
    for (size_t i = 0; i < count_q; i++)
        q[i] = rk_test_half((float)(1.5 * normal()));
    put_acts(cpu, cpu->q, q, count_q);
    put_acts(gpu, gpu->q, q, count_q);
}

/* Per head and channel, the largest |value| of V's rows 0..ROWS-1 as the
 * CPU's cache reads them back (cpu_v): what an output of that channel is
 * an average of. */
static void value_bounds(const config *c, int rows, float *vmax)
{
    float x[MAX_HEAD_DIM];
    const int hd = c->head_dim;
    const rk_kv_layer host = {.k = cpu_k, .v = cpu_v, .cap = CAP, .heads = HEADS,
                              .head_dim = hd, .format = c->format, .group = c->group,
                              .residual = c->residual, .bits_avg = c->bits_avg};
    for (int h = 0; h < HEADS; h++) {
        float *m = vmax + (size_t)h * hd;
        memset(m, 0, (size_t)hd * sizeof *m);
        for (int r = 0; r < rows; r++) {
            rk_kv_read_rows(&host, 1, h, rows, r, 1, x);
            for (int d = 0; d < hd; d++)
                m[d] = fmaxf(m[d], fabsf(x[d]));
        }
    }
}

/* Attention over the same cache bytes: decode (the last row; the most
 * queries of the split-context kernel) and a prefill-kernel chunk after
 * cached rows. Returns the largest error as a share of its bound. */
static double test_attention(side *cpu, side *gpu, const config *c)
{
    static float want[PREFILL * HEADS * MAX_HEAD_DIM], got[PREFILL * HEADS * MAX_HEAD_DIM];
    float vmax[HEADS * MAX_HEAD_DIM];
    const struct {
        int n, row0;
    } cases[] = {{1, CAP - 1}, {16, 120}, {48, 64}};
    const int hd = c->head_dim;
    double worst = 0;
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int n = cases[t].n, row0 = cases[t].row0;
        const size_t count_out = (size_t)n * HEADS * hd;
        put_queries(cpu, gpu, c, n);
        put_i32(cpu, cpu->row, row0);
        put_i32(gpu, gpu->row, row0);
        poison(cpu, cpu->out, count_out * cpu->ops->act_bytes);
        poison(gpu, gpu->out, count_out * gpu->ops->act_bytes);
        cpu->ops->attention(cpu->ctx, cpu->out, cpu->q, &cpu->cache, cpu->row, n);
        gpu->ops->attention(gpu->ctx, gpu->out, gpu->q, &gpu->cache, gpu->row, n);
        fetch_acts(cpu, want, cpu->out, count_out);
        fetch_acts(gpu, got, gpu->out, count_out);
        value_bounds(c, row0 + n, vmax);
        /* An output is an average of its channel's values, |v| <= M. 2e-3
         * is test_cuda_attention's bound for the fp16 kernels against an
         * exact reference over fp16 rows. Here the rows are read back into
         * fp16 tiles (values 2^-11 relative; scores moved by up to 2^-11 x
         * sum |q_i k_i| / sqrt(head_dim), most at the outlier keys) and the
         * output is fp16: 2e-2 x M covers those (the CPU with its rows and
         * outputs so rounded comes within 0.1 of this bound on these inputs)
         * and the kernels' fp16 probabilities and summation order, and
         * still fails a misread code, scale or group in a channel, which
         * moves its outputs by a sizeable share of M. A bound per channel,
         * not of the largest output, so that the outlier channels do not
         * widen it for the others. */
        double err = 0, share = 0;
        for (size_t i = 0; i < count_out; i++) {
            const double bound = 2e-3 + 2e-2 * vmax[i % ((size_t)HEADS * hd)];
            const double d = isfinite(got[i]) ? fabs((double)got[i] - want[i]) : INFINITY;
            err = fmax(err, d);
            share = fmax(share, d / bound);
        }
        CHECKF(share <= 1, "%s attention, %d queries at row %d: error %.3g, %.3g of its bound",
               rk_kv_format_name(c->format), n, row0, err, share);
        worst = fmax(worst, share);
    }
    return worst;
}

/* attention_mass over the same cache bytes: SnapKV's window (the last 16
 * of a prefill chunk, replacing), H2O's prompt (every query: two tiles of
 * queries and of rows), a chunk after cached rows adding from its 10th
 * query, and H2O's decode step (adding to earlier scores). Returns the
 * largest relative error. */
static double test_mass(side *cpu, side *gpu, const config *c)
{
    static float prior[HEADS * CAP], want[HEADS * CAP], got[HEADS * CAP];
    const struct {
        int n, row0, from, add;
    } cases[] = {{48, 64, 32, 0}, {PREFILL, 0, 0, 0}, {PREFILL, 50, 10, 1}, {1, CAP - 1, 0, 1}};
    for (int i = 0; i < HEADS * CAP; i++)
        prior[i] = 0.125f * (float)(i % 9);
    double worst = 0;
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int n = cases[t].n, row0 = cases[t].row0, len = row0 + n;
        put_queries(cpu, gpu, c, n);
        put(cpu, cpu->scores, prior, sizeof prior);
        put(gpu, gpu->scores, prior, sizeof prior);
        put_i32(cpu, cpu->row, row0);
        put_i32(gpu, gpu->row, row0);
        /* The mass follows its queries' attention (ops.h). */
        cpu->ops->attention(cpu->ctx, cpu->out, cpu->q, &cpu->cache, cpu->row, n);
        gpu->ops->attention(gpu->ctx, gpu->out, gpu->q, &gpu->cache, gpu->row, n);
        cpu->ops->attention_mass(cpu->ctx, (rk_kv_scores){cpu->scores, CAP}, cpu->q, &cpu->cache,
                                 cpu->row, n, cases[t].from, cases[t].add);
        gpu->ops->attention_mass(gpu->ctx, (rk_kv_scores){gpu->scores, CAP}, gpu->q, &gpu->cache,
                                 gpu->row, n, cases[t].from, cases[t].add);
        fetch(cpu, want, cpu->scores, sizeof want);
        fetch(gpu, got, gpu->scores, sizeof got);
        double err = 0;
        for (int h = 0; h < HEADS; h++)
            for (int r = 0; r < len; r++) {
                const double w = want[h * CAP + r], g = got[h * CAP + r];
                err = fmax(err, isfinite(g) ? fabs(g - w) / (1e-3 + fabs(w)) : INFINITY);
            }
        /* test_kv_compress bounds the CUDA mass by 2e-3 of (1e-3 + the
         * exact mass) over exact fp16 keys. Keys read back into fp16 tiles
         * move a score by up to 2^-11 x sum |q_i k_i| / sqrt(head_dim), a
         * probability by up to twice that: about 1e-2 at the outlier keys
         * here (the CPU with its keys so rounded reaches 4.5e-3). 2e-2
         * still fails a wrong row or scale, which moves masses by far more. */
        CHECKF(err <= 2e-2, "%s attention_mass, %d queries from %d at row %d: relative error %.3g",
               rk_kv_format_name(c->format), n, cases[t].from, row0, err);
        worst = fmax(worst, err);
    }
    return worst;
}

/* Whether the targets' layers A (CPU) and B (CUDA) hold the same bytes:
 * K, V and, where kept, positions and scores. */
static int same_layers(side *cpu, side *gpu, const config *c, const rk_kv_layer *a,
                       const rk_kv_layer *b)
{
    static unsigned char x[KV_BYTES], y[KV_BYTES];
    const size_t rows = (size_t)HEADS * a->cap;
    const struct {
        const void *a, *b;
        size_t bytes;
    } parts[] = {{a->k, b->k, side_bytes(c, 0, a->cap)},
                 {a->v, b->v, side_bytes(c, 1, a->cap)},
                 {a->pos, b->pos, rows * sizeof(int32_t)},
                 {a->score, b->score, a->score ? rows * sizeof(float) : 0}};
    int same = 1;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (!parts[i].bytes)
            continue;
        fetch(cpu, x, parts[i].a, parts[i].bytes);
        fetch(gpu, y, parts[i].b, parts[i].bytes);
        same &= memcmp(x, y, parts[i].bytes) == 0;
    }
    return same;
}

/* The kept rows and their scores of a gather: KEEP rows a head, 2j or
 * 2j + 1 (a different choice per head), and a uniform score for every
 * source row. */
static int32_t kept_idx[HEADS * KEEP];
static float kept_scores[HEADS * CAP];

static void choose_kept(void)
{
    for (int h = 0; h < HEADS; h++)
        for (int j = 0; j < KEEP; j++)
            kept_idx[h * KEEP + j] = 2 * j + (h + j) % 2;
    for (int i = 0; i < HEADS * CAP; i++)
        kept_scores[i] = (float)uniform01();
}

/* kv_gather of the chosen rows into each side's kept layer, from its cache
 * (FROM_PROMPT 0) or its fp16 prompt rows: the same bytes, positions and
 * scores on both targets. */
static void gather_both(side *cpu, side *gpu, const config *c, int from_prompt)
{
    side *sides[2] = {cpu, gpu};
    for (int s = 0; s < 2; s++) {
        side *x = sides[s];
        put(x, x->idx, kept_idx, sizeof kept_idx);
        put(x, x->src_scores, kept_scores, sizeof kept_scores);
        x->ops->kv_gather(x->ctx, &x->kept, from_prompt ? &x->prompt : &x->cache,
                          (rk_kv_scores){x->src_scores, CAP}, x->idx, KEEP);
    }
    CHECKF(same_layers(cpu, gpu, c, &cpu->kept, &gpu->kept),
           "%s kv_gather: the CUDA target's kept rows, positions or scores differ from the CPU's",
           rk_kv_format_name(c->format));
}

/* kv_gather of KEEP rows a head (ascending, a different choice per head)
 * with their scores, then kv_evict over the kept layer as H2O (scores, a
 * recent window) and StreamingLLM (no scores, sinks) step it: each step's
 * new row (bytes of a cached row) at row KEEP with a new position. Scores
 * are the same numbers on both targets (attention_mass is checked above),
 * so that both must choose the same victims and move the same bytes. */
static void test_gather_evict(side *cpu, side *gpu, const config *c)
{
    const char *f = rk_kv_format_name(c->format);
    choose_kept();
    gather_both(cpu, gpu, c, 0);
    side *sides[2] = {cpu, gpu};

    const size_t row = row_bytes(c);
    for (int phase = 0; phase < 2; phase++) {
        const int h2o = phase == 0, sinks = h2o ? 0 : 4, recent = h2o ? 4 : 0;
        for (int t = 0; t < EVICT_STEPS; t++) {
            const int pos0 = CAP + POS_SHIFT + phase * EVICT_STEPS + t;
            for (int s = 0; s < 2; s++) {
                side *x = sides[s];
                rk_kv_layer l = x->kept;
                if (!h2o)
                    l.score = NULL;
                for (int h = 0; h < HEADS; h++) {
                    const size_t from = ((size_t)h * CAP + CAP - 1 - t) * row,
                                 to = ((size_t)h * l.cap + KEEP) * row;
                    const float score = 0.1f * (float)(t % 5);
                    put(x, (char *)l.k + to, cpu_k + from, row);
                    put(x, (char *)l.v + to, cpu_v + from, row);
                    if (h2o)
                        put(x, l.score + (size_t)h * l.cap + KEEP, &score, sizeof score);
                }
                put_i32(x, x->pos, pos0);
                put_i32(x, x->row, KEEP);
                x->ops->kv_evict(x->ctx, &l, NULL, x->pos, x->row, KEEP, sinks, recent);
            }
        }
        CHECKF(same_layers(cpu, gpu, c, &cpu->kept, &gpu->kept),
               "%s kv_evict (%s): after %d steps the CUDA target's rows, positions or scores "
               "differ from the CPU's",
               f, h2o ? "h2o" : "streamingllm", EVICT_STEPS);
    }
}

/* kv_gather of KEEP rows a head from fp16 prompt rows (the same bytes on
 * both targets) into a KIVI cache, which quantizes them as it appends them
 * at row 0 (one flush and a residual), or a smartkv one, which places
 * them by their scores (the fp16 tier's 36 and the rest ranked). The same
 * rules from the same halves and scores, so the same bytes, positions and
 * scores. */
static void test_gather_fp16(side *cpu, side *gpu, const config *c)
{
    static uint16_t rows[2][HEADS * CAP * MAX_HEAD_DIM];
    choose_kept();
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < (size_t)HEADS * CAP * c->head_dim; i++)
            rows[t][i] = rk_f32_to_f16(spread_value());
    side *sides[2] = {cpu, gpu};
    for (int s = 0; s < 2; s++) {
        put(sides[s], sides[s]->prompt.k, rows[0], sizeof rows[0]);
        put(sides[s], sides[s]->prompt.v, rows[1], sizeof rows[1]);
    }
    gather_both(cpu, gpu, c, 1);
}

/* The format the command line names, or NULL for every one. */
static const char *only;

static void run_config(side *cpu, side *gpu, const config *c)
{
    static float qkv[CAP * HEADS * 3 * MAX_HEAD_DIM], rope[ROPE_POSITIONS * MAX_HEAD_DIM];
    if (only && strcmp(only, rk_kv_format_name(c->format)) != 0)
        return;
    CHECK(row_bytes(c) <= MAX_ROW_BYTES);
    side_open(cpu, c);
    side_open(gpu, c);
    make_rope(rope, c->rot_dims);
    make_qkv(qkv, c);
    put(cpu, cpu->rope, rope, (size_t)ROPE_POSITIONS * c->rot_dims * sizeof(float));
    put(gpu, gpu->rope, rope, (size_t)ROPE_POSITIONS * c->rot_dims * sizeof(float));

    const append_stats st = test_append(cpu, gpu, c, qkv);
    /* The ops that read or move rows then see the same bytes on both. */
    put(gpu, gpu->cache.k, cpu_k, side_bytes(c, 0, CAP));
    put(gpu, gpu->cache.v, cpu_v, side_bytes(c, 1, CAP));
    const double attn = test_attention(cpu, gpu, c);
    double mass = 0;
    if (!is_kivi(c))
        mass = test_mass(cpu, gpu, c);
    if (from_fp16(c))
        test_gather_fp16(cpu, gpu, c);
    else
        test_gather_evict(cpu, gpu, c);
    printf("%-7s head_dim %3d group %3d residual %2d bits %4.1f rot_dims %3d: codes %.4f %% "
           "identical (fixed groups %.4f %%), max |code diff| %u, scale/min %.4f %%; q err %.2g "
           "of max |q|; attention err %.3f of bound; mass rel err %.3g\n",
           rk_kv_format_name(c->format), c->head_dim, c->group, c->residual, c->bits_avg,
           c->rot_dims,
           100 * rate(st.codes), 100 * rate(st.fixed_codes), st.max_diff, 100 * rate(st.metas),
           st.q_err, attn, mass);
    side_close(cpu);
    side_close(gpu);
}

int main(int argc, char **argv)
{
    only = argc > 1 ? argv[1] : NULL;
    side gpu = {.ops = rk_test_require_target("cuda")}, cpu = {.ops = rk_cpu_ops()};
    CHECKF(cpu.ops->init(&cpu.ctx) == RK_OK, "%s", rk_last_error());
    CHECKF(gpu.ops->init(&gpu.ctx) == RK_OK, "%s", rk_last_error());
    const rk_kv_format formats[] = {RK_KV_INT8, RK_KV_INT4, RK_KV_INT2};
    const int dims[] = {64, 80, 128};
    for (int d = 0; d < 3; d++)
        for (int f = 0; f < 3; f++) {
            /* Pythia's rotary share (rotary_pct 0.25) and a fully rotated
             * head; 8, 16 and 32 take the rotary kernel's thread-per-group
             * path, the others its warp-per-row one, and 20, at head_dim 80,
             * is a group that is not a multiple of 8. */
            const int hd = dims[d], groups[] = {16, hd, 8, 32, 20}, n_groups = 5;
            const int rots[] = {hd / 4, hd};
            const int listed = (gpu.ops->kv_formats & RK_KV_FORMAT_BIT(formats[f])) != 0;
            CHECKF(listed, "the CUDA target does not list %s among its KV formats",
                   rk_kv_format_name(formats[f]));
            if (!listed)
                continue;
            for (int g = 0; g < n_groups; g++)
                for (int r = 0; r < 2 && hd % groups[g] == 0; r++) {
                    const config c = {formats[f], hd, groups[g], rots[r], 0, 0};
                    if (rk_kv_format_check(c.format, hd, c.group) != RK_OK) {
                        printf("not run: %s\n", rk_last_error());
                        continue;
                    }
                    run_config(&cpu, &gpu, &c);
                }
        }
    /* KIVI: each format at each head_dim with the defaults (group 16,
     * residual 64: the chunk of 100 rows flushes one block and leaves 36,
     * the single row 127 flushes another, 63 of its rows from the
     * residual), and groups of 8, 32 and (80) 20 with a residual of two
     * groups, flushed in every phase (under 8 and 20 a small chunk
     * completes a block and starts the next: its newest rows take slots the
     * flush reads); and (80) groups of 5 in a residual of 15, whose
     * quantized rows (150 of 160) put the keys' per-channel scales off
     * 16-byte boundaries, where attention reads them 4 bytes at a time. */
    const rk_kv_format kivi[] = {RK_KV_KIVI, RK_KV_KIVI2, RK_KV_KIVI4};
    for (int d = 0; d < 3; d++)
        for (int f = 0; f < 3; f++) {
            const int hd = dims[d];
            const int listed = (gpu.ops->kv_formats & RK_KV_FORMAT_BIT(kivi[f])) != 0;
            CHECKF(listed, "the CUDA target does not list %s among its KV formats",
                   rk_kv_format_name(kivi[f]));
            const struct {
                int group, residual;
            } shapes[] = {{16, 64}, {8, 16}, {32, 64}, {20, 40}, {5, 15}};
            for (size_t k = 0; listed && k < sizeof shapes / sizeof shapes[0]; k++) {
                const config c = {kivi[f], hd, shapes[k].group, hd / 4, shapes[k].residual, 0};
                if (hd % c.group != 0)
                    continue;
                CHECKF(rk_kv_format_check(c.format, hd, c.group) == RK_OK &&
                           rk_kv_residual_check(c.format, hd, c.group, c.residual) == RK_OK,
                       "%s", rk_last_error());
                run_config(&cpu, &gpu, &c);
            }
        }
    /* smartkv: averages whose tiers (CAP 160: 36 fp16 rows, then the
     * rest) are fp16 and int8 (12 bits), int8 and int4 (9.5), int4 and
     * int2 (7), at each head_dim in groups of 16, of 32 (12 bits) and
     * (80) of 20, not a multiple of 8; the gather's 73-row cache is int8
     * and int4 at 12 bits, int2 at the others. */
    const int listed = (gpu.ops->kv_formats & RK_KV_FORMAT_BIT(RK_KV_SMART)) != 0;
    CHECKF(listed, "the CUDA target does not list smartkv among its KV formats");
    for (int d = 0; listed && d < 3; d++) {
        const int hd = dims[d];
        const struct {
            int group;
            double bits;
        } shapes[] = {{16, 9.5}, {16, 7}, {32, 12}, {20, 9.5}};
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const config c = {RK_KV_SMART, hd, shapes[k].group, hd / 4, 0, shapes[k].bits};
            if (hd % c.group != 0)
                continue;
            CHECKF(rk_kv_format_check(c.format, hd, c.group) == RK_OK &&
                       rk_smart_check(c.bits_avg, hd, c.group) == RK_OK,
                   "%s", rk_last_error());
            run_config(&cpu, &gpu, &c);
        }
    }
    cpu.ops->shutdown(cpu.ctx);
    gpu.ops->shutdown(gpu.ctx);
    return rk_test_finish("test_cuda_kv_quant");
}
