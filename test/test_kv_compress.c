/* KV compression on a target (argument: cpu or cuda; cuda skips without a
 * GPU), in every KV storage format the target has (kv_quant.h). First the
 * target's cache ops against plain references on random data: attention
 * and the attention mass in double over the rows as the format reads them
 * back, the kept rows against kv_select.c's rule (identical on every target
 * when the scores are), the gather, a sequence of evictions (rows move
 * byte for byte), and an eviction that adds its query's mass against the
 * mass and then the eviction (bit for bit). Then the model on the
 * committed pythia-nano: a budget at least the context equals the full
 * cache; small budgets keep what each method promises, before and while
 * decoding; the KV bytes match the per-layer formula; bad budgets are
 * refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_quant.h"
#include "kv_select.h"
#include "model.h"
#include "rk_test.h"
#include "safetensors.h"
#include "target_test.h"

#define NANO RK_MODELS_DIR "/pythia-nano"

static const rk_ops *ops;
static rk_kv_format fmt; /* the storage format under test */
enum { GROUP = 16 };
static void *ctx;
static char *arena;
static size_t arena_used;

static unsigned long long rng = 88172645463325252ULL;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void *take(size_t bytes)
{
    void *p = arena + arena_used;
    arena_used += (bytes + 255) / 256 * 256;
    return p;
}

/* The value a target holds for X: fp16-rounded on 2-byte targets. */
static float held(float x) { return ops->act_bytes == 2 ? rk_f16_to_f32(rk_f32_to_f16(x)) : x; }

static void put_i32(void *dst, int32_t v) { ops->copy_in(ctx, dst, &v, sizeof v); }

/* A layer's cache of CAP rows per head at K and V, as the ops take it. */
static rk_kv_layer layer(void *k, void *v, int32_t *pos, float *score, int heads, int head_dim,
                         int cap)
{
    return (rk_kv_layer){.k = k, .v = v, .pos = pos, .score = score, .cap = cap, .heads = heads,
                         .head_dim = head_dim, .format = fmt, .group = GROUP};
}

enum { H = 3, HD = 64, CAP = 80 };

static size_t row_bytes(void) { return rk_kv_row_bytes(fmt, HD, GROUP); }

/* ROWS rows of HD floats X stored at DST in the format under test (by the
 * reference quantizer, copied in); X is replaced by what the rows read
 * back as. */
static void put_rows(void *dst, float *x, int rows)
{
    unsigned char bytes[HD * sizeof(float)];
    const size_t row = row_bytes();
    for (int r = 0; r < rows; r++) {
        rk_kv_quantize_row(fmt, HD, GROUP, x + (size_t)r * HD, bytes);
        rk_kv_dequantize_row(fmt, HD, GROUP, bytes, x + (size_t)r * HD);
        ops->copy_in(ctx, (char *)dst + (size_t)r * row, bytes, row);
    }
}

/* The largest of |GOT - WANT| / (1e-3 + |WANT|) over N. */
static double worst_relative(const float *got, const double *want, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs(got[i] - want[i]) / (1e-3 + fabs(want[i]));
        worst = err > worst ? err : worst;
    }
    return worst;
}

/* Softmax probabilities of query I (of N, head H) against rows 0..row0+i of
 * K (host floats, CAP rows per head), in double, into P. */
static void reference_probs(const float *q, const float *k, int h, int n, int i, int row0,
                            double *p)
{
    double mx = -1e300, sum = 0;
    for (int c = 0; c <= row0 + i; c++) {
        p[c] = 0;
        for (int d = 0; d < HD; d++)
            p[c] += (double)held(q[((size_t)h * n + i) * HD + d]) *
                    k[((size_t)h * CAP + c) * HD + d];
        p[c] /= sqrt(HD);
        mx = p[c] > mx ? p[c] : mx;
    }
    for (int c = 0; c <= row0 + i; c++)
        sum += p[c] = exp(p[c] - mx);
    for (int c = 0; c <= row0 + i; c++)
        p[c] /= sum;
}

/* Causal attention over a cache in the format under test, tiles of rows
 * included (the CPU reads 64 rows of HD 64 at a time), against double. */
static void test_attention(void)
{
    static float q[H * CAP * HD], k[H * CAP * HD], v[H * CAP * HD], got[CAP * H * HD];
    static double want[CAP * H * HD];
    void *dq = take(sizeof q / 4 * ops->act_bytes), *dout = take(sizeof got / 4 * ops->act_bytes);
    void *dk = take(H * CAP * row_bytes()), *dv = take(H * CAP * row_bytes());
    int32_t *drow = take(sizeof(int32_t));
    const struct {
        int n, row0;
    } cases[] = {{40, 0}, {1, 37}, {1, 79}, {5, 60}, {80, 0}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int n = cases[t].n, row0 = cases[t].row0;
        for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
            q[i] = 2.0f * frand(), k[i] = 2.0f * frand(), v[i] = frand();
        ops->upload(ctx, dq, q, RK_F32, (size_t)H * n * HD);
        put_rows(dk, k, H * CAP);
        put_rows(dv, v, H * CAP);
        put_i32(drow, row0);
        const rk_kv_layer cache = layer(dk, dv, NULL, NULL, H, HD, CAP);
        ops->attention(ctx, dout, dq, &cache, drow, n);
        ops->copy_out(ctx, got, dout, (size_t)n * H * HD * ops->act_bytes);
        CHECK(ops->sync(ctx) == RK_OK);
        if (ops->act_bytes == 2) /* a 2-byte target's output is fp16 */
            for (int i = n * H * HD - 1; i >= 0; i--) {
                uint16_t u;
                memcpy(&u, (char *)got + 2 * (size_t)i, 2);
                got[i] = rk_f16_to_f32(u);
            }
        for (int h = 0; h < H; h++)
            for (int i = 0; i < n; i++) {
                double p[CAP];
                reference_probs(q, k, h, n, i, row0, p);
                for (int d = 0; d < HD; d++) {
                    double o = 0;
                    for (int c = 0; c <= row0 + i; c++)
                        o += p[c] * v[((size_t)h * CAP + c) * HD + d];
                    want[((size_t)i * H + h) * HD + d] = o;
                }
            }
        /* Averages of values in [-1, 1]: absolute error, as outputs near 0
         * make a relative one meaningless. */
        double worst = 0;
        for (int i = 0; i < n * H * HD; i++)
            worst = fabs(got[i] - want[i]) > worst ? fabs(got[i] - want[i]) : worst;
        const double tol = ops->act_bytes == 2 ? 5e-3 : 2e-6;
        CHECKF(worst < tol, "%s case %zu: error %.3g", rk_kv_format_name(fmt), t, worst);
    }
}

static void test_attention_mass(void)
{
    static float q[H * CAP * HD], k[H * CAP * HD], prior[H * CAP], got[H * CAP];
    static double want[H * CAP];
    void *dq = take(sizeof q / 4 * ops->act_bytes), *dk = take(H * CAP * row_bytes());
    void *dout = take((size_t)H * CAP * HD * ops->act_bytes);
    float *dscore = take(sizeof got);
    int32_t *drow = take(sizeof(int32_t));
    /* KEEPS: the mass goes to the scores of the cache itself, as H2O's decode
     * steps add it (the CUDA target then sums the scores its attention left
     * instead of scoring the keys again). */
    const struct {
        int n, from, row0, add, keeps;
    } cases[] = {{40, 0, 0, 0, 0}, {40, 30, 0, 0, 0}, {80, 10, 0, 0, 0}, {1, 0, 37, 1, 0},
                 {5, 2, 60, 1, 0},  {1, 0, 37, 1, 1},  {5, 2, 60, 1, 1},  {16, 0, 0, 0, 1}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int n = cases[t].n, from = cases[t].from, row0 = cases[t].row0, len = row0 + n;
        for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
            q[i] = 2.0f * frand(), k[i] = 2.0f * frand();
        for (int i = 0; i < H * CAP; i++)
            prior[i] = (float)i;
        ops->upload(ctx, dq, q, RK_F32, (size_t)H * n * HD);
        put_rows(dk, k, H * CAP);
        ops->copy_in(ctx, dscore, prior, sizeof prior);
        put_i32(drow, row0);
        /* The mass follows its queries' attention (ops.h), whose values do
         * not matter here: the keys stand in for them. */
        const rk_kv_layer cache = layer(dk, dk, NULL, cases[t].keeps ? dscore : NULL, H, HD, CAP);
        ops->attention(ctx, dout, dq, &cache, drow, n);
        ops->attention_mass(ctx, (rk_kv_scores){dscore, CAP}, dq, &cache, drow, n, from,
                            cases[t].add);
        ops->copy_out(ctx, got, dscore, sizeof got);
        CHECK(ops->sync(ctx) == RK_OK);
        for (int h = 0; h < H; h++) {
            for (int c = 0; c < len; c++)
                want[h * len + c] = cases[t].add && c < row0 ? prior[h * CAP + c] : 0;
            for (int i = from; i < n; i++) {
                double p[CAP];
                reference_probs(q, k, h, n, i, row0, p);
                for (int c = 0; c <= row0 + i; c++)
                    want[h * len + c] += p[c];
            }
        }
        for (int h = 0; h < H; h++)
            memmove(got + h * len, got + h * CAP, (size_t)len * sizeof(float));
        const double worst = worst_relative(got, want, (size_t)H * len);
        const double tol = ops->act_bytes == 2 ? 2e-3 : 1e-5;
        CHECKF(worst < tol, "%s case %zu: relative error %.3g", rk_kv_format_name(fmt), t, worst);
    }
}

static void test_keep_gather(void)
{
    /* Longer than the CUDA kernel's block of 1024 threads. */
    enum { N = 2000, STRIDE = 2048 };
    static float score[H * STRIDE], pooled[N];
    static int32_t want[H * N], got[H * N], heap[N];
    float *dscore = take(sizeof score);
    int32_t *didx = take(sizeof got);
    const struct {
        int n, budget, tail, pool;
    } cases[] = {{N, 100, 16, 7}, {N, 100, 16, 1}, {N, 16, 16, 7}, {200, 250, 16, 7},
                 {N, 600, 32, 7}, {N, 299, 1, 3}};
    /* Scores all distinct, then few distinct values, so that ties decide
     * many places. */
    for (int fill = 0; fill < 2; fill++) {
        for (int i = 0; i < H * STRIDE; i++)
            score[i] = fill ? floorf((frand() + 1.0f) * 4.0f) * 0.25f : (frand() + 1.0f) * 1e-3f;
        ops->copy_in(ctx, dscore, score, sizeof score);
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
            const int n = cases[t].n, b = cases[t].budget, keep = b < n ? b : n;
            for (int h = 0; h < H; h++)
                CHECK(rk_snapkv_select(score + h * STRIDE, n, cases[t].tail, b, cases[t].pool,
                                       want + h * keep, pooled, heap) == keep);
            ops->kv_keep(ctx, didx, dscore, n, H, STRIDE, cases[t].pool, b, cases[t].tail);
            ops->copy_out(ctx, got, didx, (size_t)H * keep * sizeof(int32_t));
            CHECK(ops->sync(ctx) == RK_OK);
            CHECKF(memcmp(got, want, (size_t)H * keep * sizeof(int32_t)) == 0,
                   "fill %d case %zu: kept rows differ from kv_select.c", fill, t);
        }
    }

    /* Gather the last case's rows: K/V rows, positions and scores. */
    const int keep = 299, scap = N, dcap = 310;
    const size_t row = row_bytes();
    static float src[H * N * HD];
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++)
        src[i] = frand();
    void *sk = take(H * N * row), *sv = take(H * N * row), *dk = take(H * dcap * row),
         *dv = take(H * dcap * row);
    int32_t *dpos = take(H * dcap * sizeof(int32_t));
    float *dsc = take(H * dcap * sizeof(float));
    put_rows(sk, src, H * N);
    put_rows(sv, src, H * N);
    const rk_kv_layer dst = layer(dk, dv, dpos, dsc, H, HD, dcap),
                      source = layer(sk, sv, NULL, NULL, H, HD, scap);
    ops->kv_gather(ctx, &dst, &source, (rk_kv_scores){dscore, STRIDE}, didx, keep);
    static char sbytes[H * N * HD * 4], dbytes[H * 310 * HD * 4];
    static int32_t pos[H * 310];
    static float sc[H * 310];
    ops->copy_out(ctx, sbytes, sv, H * N * row);
    ops->copy_out(ctx, dbytes, dv, H * dcap * row);
    ops->copy_out(ctx, pos, dpos, sizeof pos);
    ops->copy_out(ctx, sc, dsc, sizeof sc);
    CHECK(ops->sync(ctx) == RK_OK);
    int bad = 0;
    for (int h = 0; h < H; h++)
        for (int j = 0; j < keep; j++) {
            const int r = got[h * keep + j];
            bad += memcmp(dbytes + ((size_t)h * dcap + j) * row,
                          sbytes + ((size_t)h * scap + r) * row, row) != 0;
            bad += pos[h * dcap + j] != r;
            bad += sc[h * dcap + j] != score[h * STRIDE + r];
        }
    CHECKF(bad == 0, "%s: %d gathered entries differ", rk_kv_format_name(fmt), bad);
}

/* Evictions over 40 steps against a host model of the same rule. Every
 * row the cache holds must be, byte for byte, the row written for the
 * position it is said to hold. */
static void test_evict(int with_score)
{
    enum { B = 8, C = B + 1, STEPS = 40, SINKS = 2, RECENT = 3 };
    const size_t row = row_bytes();
    void *dk = take(H * C * row), *dv = take(H * C * row);
    int32_t *dpos = take(H * C * sizeof(int32_t)), *dp = take(4), *dr = take(4);
    float *dsc = take(H * C * sizeof(float));
    int32_t pos[H * C];
    float sc[H * C], rowv[HD];
    static unsigned char written[H][STEPS][HD * sizeof(float)];
    int rows = 0, bad = 0;
    for (int t = 0; t < STEPS; t++) {
        const int row0 = rows;
        for (int h = 0; h < H; h++) {
            for (int d = 0; d < HD; d++)
                rowv[d] = frand();
            rk_kv_quantize_row(fmt, HD, GROUP, rowv, written[h][t]);
            ops->copy_in(ctx, (char *)dk + ((size_t)h * C + row0) * row, written[h][t], row);
            ops->copy_in(ctx, (char *)dv + ((size_t)h * C + row0) * row, written[h][t], row);
            sc[h * C + row0] = (float)((t * 7 + h * 3) % 11);
        }
        ops->copy_in(ctx, dsc, sc, sizeof sc);
        put_i32(dp, t);
        put_i32(dr, row0);
        const rk_kv_layer cache = layer(dk, dv, dpos, with_score ? dsc : NULL, H, HD, C);
        ops->kv_evict(ctx, &cache, NULL, dp, dr, B, with_score ? 0 : SINKS, with_score ? RECENT : 0);
        /* The host's model of the step. */
        const int sinks = with_score ? 0 : SINKS, recent = with_score ? RECENT : 0;
        for (int h = 0; h < H; h++) {
            int32_t *p = pos + h * C;
            float *s = sc + h * C;
            p[row0] = t;
            if (row0 < B)
                continue;
            int v = -1;
            for (int r = 0; r < row0; r++)
                if (p[r] >= sinks && p[r] <= t - recent &&
                    (v < 0 || (with_score ? s[r] < s[v] : p[r] < p[v])))
                    v = r;
            p[v] = p[row0];
            s[v] = s[row0];
        }
        rows = rows + 1 < B ? rows + 1 : B;
        int32_t got_pos[H * C];
        float got_sc[H * C];
        ops->copy_out(ctx, got_pos, dpos, sizeof got_pos);
        ops->copy_out(ctx, got_sc, dsc, sizeof got_sc);
        static char kb[H * C * HD * 4], vb[H * C * HD * 4];
        ops->copy_out(ctx, kb, dk, H * C * row);
        ops->copy_out(ctx, vb, dv, H * C * row);
        CHECK(ops->sync(ctx) == RK_OK);
        for (int h = 0; h < H; h++)
            for (int r = 0; r < rows; r++) {
                const size_t at = ((size_t)h * C + r) * row;
                const int32_t p = pos[h * C + r];
                bad += got_pos[h * C + r] != p || memcmp(kb + at, written[h][p], row) != 0 ||
                       memcmp(vb + at, written[h][p], row) != 0;
                if (with_score)
                    bad += got_sc[h * C + r] != sc[h * C + r];
            }
    }
    CHECKF(bad == 0, "%s evictions (%s): %d entries differ from the host's",
           rk_kv_format_name(fmt), with_score ? "h2o" : "streaming", bad);
}

/* kv_evict given the step's query adds its attention mass first: the same
 * bytes, positions and scores, to the bit, as attention_mass of the query
 * (added) and then kv_evict without it, once with the cache full (an
 * eviction) and once before (the mass alone). */
static void test_evict_adds_mass(void)
{
    enum { B = 40, C = B + 1, RECENT = 4 };
    static float q[H * HD], rowv[HD], prior[H * C];
    static unsigned char kb[H * C * HD * 4], vb[H * C * HD * 4], got_k[2][H * C * HD * 4],
        got_v[2][H * C * HD * 4];
    static int32_t pos[H * C], got_pos[2][H * C];
    static float got_sc[2][H * C];
    const size_t row = row_bytes(), bytes = (size_t)H * C * row;
    void *dq = take(sizeof q / 4 * ops->act_bytes), *dout = take(sizeof q / 4 * ops->act_bytes);
    void *dk = take(bytes), *dv = take(bytes);
    int32_t *dpos = take(sizeof pos), *dp = take(4), *dr = take(4);
    float *dsc = take(sizeof prior);
    for (int t = 0; t < 2; t++) {
        const int row0 = t ? B : B - 5;
        for (int i = 0; i < H * HD; i++)
            q[i] = 2.0f * frand();
        for (int r = 0; r < H * C; r++) {
            for (int d = 0; d < HD; d++)
                rowv[d] = 2.0f * frand();
            rk_kv_quantize_row(fmt, HD, GROUP, rowv, kb + r * row);
            for (int d = 0; d < HD; d++)
                rowv[d] = frand();
            rk_kv_quantize_row(fmt, HD, GROUP, rowv, vb + r * row);
            pos[r] = r % C;
            prior[r] = 0.25f * (float)((r * 7) % 5);
        }
        const rk_kv_layer cache = layer(dk, dv, dpos, dsc, H, HD, C);
        for (int fused = 0; fused < 2; fused++) {
            ops->upload(ctx, dq, q, RK_F32, (size_t)H * HD);
            ops->copy_in(ctx, dk, kb, bytes);
            ops->copy_in(ctx, dv, vb, bytes);
            ops->copy_in(ctx, dpos, pos, sizeof pos);
            ops->copy_in(ctx, dsc, prior, sizeof prior);
            put_i32(dp, row0);
            put_i32(dr, row0);
            ops->attention(ctx, dout, dq, &cache, dr, 1);
            if (!fused)
                ops->attention_mass(ctx, (rk_kv_scores){dsc, C}, dq, &cache, dr, 1, 0, 1);
            ops->kv_evict(ctx, &cache, fused ? dq : NULL, dp, dr, B, 0, RECENT);
            ops->copy_out(ctx, got_k[fused], dk, bytes);
            ops->copy_out(ctx, got_v[fused], dv, bytes);
            ops->copy_out(ctx, got_pos[fused], dpos, sizeof pos);
            ops->copy_out(ctx, got_sc[fused], dsc, sizeof prior);
            CHECK(ops->sync(ctx) == RK_OK);
        }
        /* Not vacuous: the mass reached the scores, and a full cache's heads
         * each moved the new row (position row0) into an old one's place. */
        int moved = 0;
        for (int h = 0; h < H; h++)
            for (int r = 0; r < row0; r++)
                moved += got_pos[1][h * C + r] == row0;
        CHECKF(memcmp(got_sc[1], prior, sizeof prior) != 0 && moved == (row0 < B ? 0 : H),
               "%s row0 %d: scores unchanged, or %d heads evicted", rk_kv_format_name(fmt), row0,
               moved);
        CHECKF(memcmp(got_k[0], got_k[1], bytes) == 0 && memcmp(got_v[0], got_v[1], bytes) == 0 &&
                   memcmp(got_pos[0], got_pos[1], sizeof pos) == 0 &&
                   memcmp(got_sc[0], got_sc[1], sizeof prior) == 0,
               "%s row0 %d: kv_evict with the query differs from attention_mass and then "
               "kv_evict", rk_kv_format_name(fmt), row0);
    }
}

static void test_ops(void)
{
    rk_config cfg = {.n_heads = H, .head_dim = HD, .hidden = H * HD};
    CHECK(ops->init(&ctx) == RK_OK);
    const size_t scratch = ops->scratch_bytes(&cfg, CAP, 512), bytes = scratch + (8u << 20);
    CHECK(ops->alloc(ctx, bytes, (void **)&arena) == RK_OK);
    ops->bind_scratch(ctx, arena, scratch);
    arena_used = scratch;
    test_attention();
    test_attention_mass();
    test_keep_gather();
    test_evict(1);
    test_evict(0);
    test_evict_adds_mass();
    CHECK(arena_used <= bytes);
    ops->release(ctx, arena);
    ops->shutdown(ctx);
}

/* Model tests on pythia-nano. */
enum { PROMPT = 200, NEW = 24 };

static rk_kv_policy policy(const char *method, int average, int window)
{
    rk_kv_options o = {.method = method, .average = average, .window = window};
    rk_kv_policy p;
    CHECKF(rk_kv_policy_make(&o, 4, &p) == RK_OK, "%s", rk_last_error());
    return p;
}

static rk_model *load(rk_kv_policy p)
{
    rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = NEW, .prefill_chunk = PROMPT,
                     .logits_rows = 1, .kv_format = fmt, .kv_group = GROUP, .kv = p};
    rk_model *m = NULL;
    CHECKF(rk_model_load(NANO, ops, &lim, &m) == RK_OK, "%s", rk_last_error());
    return m;
}

static int32_t tokens[PROMPT + NEW];

/* Logits of the prompt and of NEW teacher-forced steps, V floats each. */
static void run(rk_model *m, float *out)
{
    const int V = m->cfg.vocab;
    rk_seq seq;
    rk_seq_reset(&seq);
    CHECK(rk_model_prefill(m, &seq, tokens, PROMPT) == RK_OK);
    memcpy(out, rk_model_logits(m, 0), V * sizeof(float));
    for (int i = 0; i < NEW - 1; i++) {
        CHECK(rk_model_forward(m, &seq, &tokens[PROMPT + i], 1) == RK_OK);
        memcpy(out + (size_t)(i + 1) * V, rk_model_logits(m, 0), V * sizeof(float));
    }
}

static void test_large_budget_is_full(void)
{
    rk_model *full = load(policy("full", 0, 0));
    if (!full)
        return;
    const size_t count = (size_t)NEW * full->cfg.vocab;
    float *want = malloc(count * sizeof(float)), *got = malloc(count * sizeof(float));
    run(full, want);
    const char *methods[] = {"snapkv", "h2o", "streamingllm"};
    for (int i = 0; i < 3; i++) {
        rk_model *m = load(policy(methods[i], PROMPT + NEW, 0));
        if (!m)
            continue;
        run(m, got);
        double worst = 0;
        for (size_t j = 0; j < count; j++) {
            const double d = fabs(got[j] - want[j]);
            worst = d > worst ? d : worst;
        }
        printf("%s %s, budget = context: max |logit difference| from the full cache %.3g\n",
               rk_kv_format_name(fmt), methods[i], worst);
        /* The CPU moves the same rows through the same arithmetic, in every
         * format: the prompt's region holds rows in the cache's format, so
         * the prompt attends to the values the full cache would hold and
         * the kept rows move without being quantized again. The CUDA decode
         * kernel splits the rows by the cache's capacity, which differs, so
         * it only rounds differently. */
        CHECKF(worst <= (ops->act_bytes == 2 ? 2e-2 : 0.0), "%s %s: %g", rk_kv_format_name(fmt),
               methods[i], worst);
        rk_model_free(m);
    }
    free(want);
    free(got);
    rk_model_free(full);
}

static int ascending_distinct(const int32_t *p, int n)
{
    for (int i = 1; i < n; i++)
        if (p[i] <= p[i - 1])
            return 0;
    return 1;
}

static int contains(const int32_t *p, int n, int32_t v)
{
    for (int i = 0; i < n; i++)
        if (p[i] == v)
            return 1;
    return 0;
}

static int by_value(const void *a, const void *b)
{
    return *(const int32_t *)a - *(const int32_t *)b;
}

static void test_small_budgets(void)
{
    enum { BUDGET = 48, WINDOW = 8 };
    const char *methods[] = {"snapkv", "pyramidkv", "h2o", "streamingllm"};
    int32_t pos[8 * (BUDGET * 4 + NEW)];
    for (int i = 0; i < 4; i++) {
        rk_kv_policy p = policy(methods[i], BUDGET, WINDOW);
        rk_model *m = load(p);
        if (!m)
            continue;
        const int H_ = m->cfg.n_heads, L = m->cfg.n_layers;
        size_t rows = 0;
        for (int l = 0; l < L; l++)
            rows += (size_t)m->cache.cap[l];
        CHECK(m->kv_bytes ==
              2 * rows * m->cfg.n_heads * rk_kv_row_bytes(fmt, m->cfg.head_dim, GROUP));
        CHECK(rk_plan_find(&m->plan, "kv_cache_k")->size * 2 == m->kv_bytes);
        rk_seq seq;
        rk_seq_reset(&seq);
        CHECK(rk_model_prefill(m, &seq, tokens, PROMPT) == RK_OK);
        int bad = 0;
        for (int l = 0; l < L; l++) {
            const int b = p.budget[l];
            bad += seq.rows[l] != b;
            bad += m->cache.cap[l] != (p.method == RK_KV_SNAPKV ? b + NEW : b + 1);
            CHECK(rk_model_kept_positions(m, &seq, l, pos) == RK_OK);
            for (int h = 0; h < H_; h++) {
                const int32_t *ph = pos + (size_t)h * b;
                bad += !ascending_distinct(ph, b) || ph[0] < 0 || ph[b - 1] != PROMPT - 1;
                if (p.method == RK_KV_SNAPKV)
                    bad += ph[b - WINDOW] != PROMPT - WINDOW;
                if (p.method == RK_KV_H2O)
                    bad += ph[b - b / 2] != PROMPT - b / 2;
                if (p.method == RK_KV_STREAMING)
                    bad += ph[RK_KV_SINKS - 1] != RK_KV_SINKS - 1 ||
                           ph[RK_KV_SINKS] != PROMPT - (b - RK_KV_SINKS);
            }
        }
        CHECKF(bad == 0, "%s %s after the prompt: %d broken promises", rk_kv_format_name(fmt),
               methods[i], bad);
        for (int t = 0; t < NEW - 1; t++)
            CHECK(rk_model_forward(m, &seq, &tokens[PROMPT + t], 1) == RK_OK);
        const int newest = PROMPT + NEW - 2;
        bad = 0;
        for (int l = 0; p.method != RK_KV_SNAPKV && l < L; l++) {
            const int b = p.budget[l];
            bad += seq.rows[l] != b;
            CHECK(rk_model_kept_positions(m, &seq, l, pos) == RK_OK);
            for (int h = 0; h < H_; h++) {
                int32_t *ph = pos + (size_t)h * b;
                qsort(ph, (size_t)b, sizeof *ph, by_value);
                bad += !ascending_distinct(ph, b) || ph[b - 1] != newest;
                if (p.method == RK_KV_STREAMING)
                    bad += ph[RK_KV_SINKS - 1] != RK_KV_SINKS - 1 ||
                           ph[RK_KV_SINKS] != newest - (b - RK_KV_SINKS) + 1;
                else
                    for (int r = newest - b / 2 + 1; r <= newest; r++)
                        bad += !contains(ph, b, r);
            }
        }
        for (int l = 0; p.method == RK_KV_SNAPKV && l < L; l++)
            bad += seq.rows[l] != p.budget[l] + NEW - 1;
        CHECKF(bad == 0, "%s %s while decoding: %d broken promises", rk_kv_format_name(fmt),
               methods[i], bad);
        if (p.method == RK_KV_H2O || p.method == RK_KV_STREAMING)
            CHECK(rk_model_forward(m, &seq, tokens, 2) == RK_ELIMIT);
        rk_model_free(m);
    }
}

static void test_refusals(void)
{
    rk_config cfg;
    CHECK(rk_config_load(NANO "/config.json", &cfg) == RK_OK);
    rk_kv_policy p;
    const int three[3] = {64, 64, 64}, low[4] = {100, 100, 20, 36}, ok[4] = {64, 64, 64, 64};
    rk_kv_options o = {.method = "snapkv", .average = 64, .budgets = three, .n_budgets = 3};
    CHECK(rk_kv_policy_make(&o, 4, &p) != RK_OK && strstr(rk_last_error(), "3 entries"));
    o.budgets = low, o.n_budgets = 4;
    CHECK(rk_kv_policy_make(&o, 4, &p) != RK_OK && strstr(rk_last_error(), "below"));
    o.budgets = ok;
    CHECK(rk_kv_policy_make(&o, 4, &p) == RK_OK);
    o.budgets = NULL, o.average = 16;
    CHECK(rk_kv_policy_make(&o, 4, &p) != RK_OK && strstr(rk_last_error(), "always keeps"));
    o.method = "nonsense";
    CHECK(rk_kv_policy_make(&o, 4, &p) != RK_OK && strstr(rk_last_error(), "unknown"));

    rk_model *m = malloc(sizeof *m);
    rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = NEW, .prefill_chunk = PROMPT,
                     .logits_rows = 1, .kv_format = fmt, .kv = policy("snapkv", 5000, 0)};
    CHECK(rk_model_plan(&cfg, ops, &lim, m) == RK_ELIMIT &&
          strstr(rk_last_error(), "more than the plan allows"));
    lim.kv = policy("h2o", 64, 0);
    lim.prefill_chunk = 64;
    CHECK(rk_model_plan(&cfg, ops, &lim, m) == RK_ELIMIT && strstr(rk_last_error(), "chunk"));
    lim.prefill_chunk = PROMPT;
    CHECK(rk_model_plan(&cfg, ops, &lim, m) == RK_OK);
    free(m);
}

int main(int argc, char **argv)
{
    ops = rk_test_require_target(argc > 1 ? argv[1] : "cpu");
    for (int i = 0; i < PROMPT + NEW; i++)
        tokens[i] = (int32_t)((i * 7919 + 13) % 2000) + (i % 3 == 0 ? 50 : 0);
    /* The row formats: KIVI's and smartkv's rows do not move as bytes, and
     * their prompts attend in fp16 (test_kv_kivi, test_kv_smart). */
    for (fmt = 0; fmt < RK_KV_N_FORMATS; fmt++) {
        if (!(ops->kv_formats & RK_KV_FORMAT_BIT(fmt)) || !rk_kv_format_row(fmt))
            continue;
        test_ops();
        test_large_budget_is_full();
        test_small_budgets();
    }
    fmt = ops->kv_format;
    test_refusals();
    return rk_test_finish("test_kv_compress");
}
