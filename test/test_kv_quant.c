/* The quantized KV cache on the CPU target. The row formats of kv_quant.h
 * against a plain reference of their rule (codes, scales and minima bit
 * for bit, and the error each code may leave), on random rows and on the
 * edges of a group: its maximum and minimum, ties, equal values, zeros,
 * scales too small for fp16. The bytes formula. Real K/V of pythia-nano (and
 * pythia-mini where ../shared has it): relative Frobenius error per layer
 * and overall in the order fp16 < int8 < int4, the same from rk_kv_error
 * over the rows rk_model_kv_row reads back (rankkv-ppl --kv-error), and
 * the rows a quantized cache appends equal to the reference's codes of the
 * fp32 cache's rows; smartkv's rows, as its attention placed them, between
 * int8's and int4's error.
 * Every policy with every format against the fp32 cache: fp16 generates the
 * same greedy tokens, int8 logits stay close, int4 logits finite and its
 * NLL near. Refusals: a group that does not divide head_dim, an unknown
 * dtype, a target without the format, rank measurement over codes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "kv_quant.h"
#include "model.h"
#include "profile.h"
#include "rank.h"
#include "kv_reference.h"
#include "rk_test.h"
#include "safetensors.h"
#include "sampler.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

#define NANO RK_MODELS_DIR "/pythia-nano"
#define MINI RK_SHARED_DIR "/models/pythia-mini"

static const rk_kv_format quantized[] = {RK_KV_FP16, RK_KV_INT8, RK_KV_INT4, RK_KV_INT2};
enum { N_QUANTIZED = sizeof quantized / sizeof quantized[0] };
/* KIVI's formats (test_kv_kivi has their layout and arithmetic). */
static const rk_kv_format kivi[] = {RK_KV_KIVI, RK_KV_KIVI2, RK_KV_KIVI4};
enum { N_KIVI = sizeof kivi / sizeof kivi[0] };

static unsigned long long rng = 0x9E3779B97F4A7C15ULL;
static float frand(void) { return rk_test_frand(&rng); }

/* ---- the bytes of a row ---- */

static void test_row_bytes(void)
{
    const struct {
        rk_kv_format f;
        int hd, group;
        size_t bytes;
    } rows[] = {{RK_KV_FP32, 80, 16, 320}, {RK_KV_FP16, 80, 16, 160}, {RK_KV_INT8, 80, 16, 100},
                {RK_KV_INT4, 80, 16, 60},  {RK_KV_FP32, 64, 16, 256}, {RK_KV_FP16, 64, 16, 128},
                {RK_KV_INT8, 64, 16, 80},  {RK_KV_INT4, 64, 16, 48},  {RK_KV_INT8, 80, 80, 84},
                {RK_KV_INT4, 64, 8, 64},   {RK_KV_INT4, 80, 5, 104},  {RK_KV_INT2, 64, 16, 32},
                {RK_KV_INT2, 80, 16, 40}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        CHECKF(rk_kv_row_bytes(rows[i].f, rows[i].hd, rows[i].group) == rows[i].bytes,
               "%s, head_dim %d, group %d: %zu bytes", rk_kv_format_name(rows[i].f), rows[i].hd,
               rows[i].group, rk_kv_row_bytes(rows[i].f, rows[i].hd, rows[i].group));
    /* The payload against fp16's: the seed's ratios. */
    CHECK(rk_kv_row_payload_bytes(RK_KV_INT8, 80) * 2 == rk_kv_row_bytes(RK_KV_FP16, 80, 16));
    CHECK(rk_kv_row_payload_bytes(RK_KV_INT4, 80) * 4 == rk_kv_row_bytes(RK_KV_FP16, 80, 16));
}

/* ---- round trips against the rule written out ---- */

static float meta_at(const unsigned char *row, size_t payload, int g, int which)
{
    uint16_t h;
    memcpy(&h, row + payload + 4 * (size_t)g + 2 * (size_t)which, sizeof h);
    return rk_f16_to_f32(h);
}

/* X (HD values) through format F in groups of GROUP: the bytes against the
 * reference, the read-back against the codes, the error against what a
 * code may leave. Returns the number of failures. */
static int round_trip(rk_kv_format f, int hd, int group, const float *x)
{
    unsigned char row[RK_KV_MAX_HEAD_DIM * 4];
    float back[RK_KV_MAX_HEAD_DIM];
    rk_kv_quantize_row(f, hd, group, x, row);
    rk_kv_dequantize_row(f, hd, group, row, back);
    int bad = 0;
    if (f == RK_KV_FP32 || f == RK_KV_FP16) {
        for (int i = 0; i < hd; i++)
            bad += back[i] != (f == RK_KV_FP32 ? x[i] : rk_test_half(x[i]));
        return bad;
    }
    const int bits = rk_kv_format_bits(f);
    const size_t payload = rk_kv_row_payload_bytes(f, hd);
    const float qmax = (float)((1 << bits) - 1);
    for (int g = 0; g < hd / group; g++) {
        const float *xg = x + g * group;
        float s, m, lo = xg[0], hi = xg[0];
        unsigned q[RK_KV_MAX_HEAD_DIM];
        rk_test_quantize_group(bits, xg, group, &s, &m, q);
        bad += meta_at(row, payload, g, 0) != s || meta_at(row, payload, g, 1) != m;
        for (int i = 0; i < group; i++)
            lo = fminf(lo, xg[i]), hi = fmaxf(hi, xg[i]);
        /* Half a step, what rounding m and s to fp16 moves the extremes,
         * and an fp16 scale's underflow. */
        const float slack = (fabsf(lo) + fabsf(hi - m)) * 0x1p-11f + qmax * 0x1p-24f;
        for (int i = 0; i < group; i++) {
            const int e = g * group + i;
            bad += rk_test_code_at(row, bits, e) != q[i];
            bad += back[e] != (float)q[i] * s + m;
            bad += fabsf(back[e] - xg[i]) > 0.5f * s + slack + 1e-6f * fabsf(xg[i]);
        }
    }
    return bad;
}

/* Rows that sit on a group's edges, for head_dim HD in groups of GROUP. */
static void edge_rows(int hd, int group, int which, float *x)
{
    for (int i = 0; i < hd; i++) {
        switch (which) {
        case 0: x[i] = 0.0f; break;                           /* zeros */
        case 1: x[i] = 3.0f; break;                           /* all equal: s = 0 */
        case 2: x[i] = i % group == 0 ? 7.5f : -0.25f; break; /* one max, the rest the min */
        case 3: x[i] = -2.0f - (float)(i % group); break;     /* negative only */
        case 4: x[i] = 3000.0f * frand(); break;              /* large */
        case 5: x[i] = 1e-6f * frand(); break;                /* a scale below fp16's range */
        case 6: x[i] = i % group == 0 ? 1.0f : 0.0f; break;   /* one nonzero */
        default: x[i] = frand() * (i % 7 == 0 ? 20.0f : 1.0f); /* outlier channels */
        }
    }
}

/* Codes on a tie round half to even: with minimum 0 and maximum 2^bits - 1
 * the scale is exactly 1, and 2.5 reads back as 2, 3.5 as 4. */
static void test_ties(rk_kv_format f)
{
    enum { HD = 16 };
    float x[HD] = {0}, back[HD];
    unsigned char row[HD * 4];
    x[1] = (float)((1 << rk_kv_format_bits(f)) - 1);
    x[2] = 2.5f, x[3] = 3.5f, x[4] = 0.5f;
    rk_kv_quantize_row(f, HD, HD, x, row);
    rk_kv_dequantize_row(f, HD, HD, row, back);
    CHECKF(back[2] == 2.0f && back[3] == 4.0f && back[4] == 0.0f && back[1] == x[1],
           "%s ties: %g %g %g", rk_kv_format_name(f), back[2], back[3], back[4]);
}

static void test_round_trips(void)
{
    const struct {
        int hd, group;
    } shapes[] = {{80, 16}, {64, 16}, {80, 80}, {64, 8}, {80, 5}, {80, 1}, {64, 2}};
    float x[RK_KV_MAX_HEAD_DIM];
    for (int f = 0; f < RK_KV_N_FORMATS; f++) {
        if (!rk_kv_format_row((rk_kv_format)f))
            continue;
        int bad = 0, rows = 0;
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
            for (int which = 0; which < 8 + 200; which++, rows++) {
                edge_rows(shapes[k].hd, shapes[k].group, which, x);
                bad += round_trip((rk_kv_format)f, shapes[k].hd, shapes[k].group, x);
            }
        CHECKF(bad == 0, "%s: %d of %d rows' elements differ from the reference",
               rk_kv_format_name((rk_kv_format)f), bad, rows);
    }
    test_ties(RK_KV_INT8);
    test_ties(RK_KV_INT4);
}

/* ---- real K/V ---- */

/* The ids of the first N tokens of this repository's README (real text
 * that is always here), or NULL. */
static int32_t *readme_tokens(const char *model, int n)
{
    char path[4096];
    rk_tokenizer *tok;
    char *text;
    size_t len, have;
    int32_t *ids = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", model);
    if (rk_tok_load(path, &tok) != RK_OK)
        return NULL;
    if (rk_read_file(RK_SOURCE_DIR "/README.md", SIZE_MAX, &text, &len) == RK_OK) {
        if (rk_tok_encode(tok, text, len, &ids, &have) != RK_OK || have < (size_t)n) {
            free(ids);
            ids = NULL;
        }
        free(text);
    }
    rk_tok_free(tok);
    return ids;
}

static rk_model *load(const char *dir, rk_kv_format f, rk_kv_policy p, int prompt, int new_tokens)
{
    rk_limits lim = {.max_prompt = prompt, .max_new_tokens = new_tokens, .prefill_chunk = prompt,
                     .logits_rows = 1, .kv_format = f, .kv = p};
    rk_model *m = NULL;
    CHECKF(rk_model_load(dir, rk_cpu_ops(), &lim, &m) == RK_OK, "%s", rk_last_error());
    return m;
}

/* N floats BACK read back for X: the squared error into ERR2, X's squares
 * into NORM2. */
static void add_error(const float *back, const float *x, size_t n, double *err2, double *norm2)
{
    for (size_t i = 0; i < n; i++) {
        *err2 += ((double)back[i] - x[i]) * ((double)back[i] - x[i]);
        *norm2 += (double)x[i] * x[i];
    }
}

/* Relative Frobenius error of format F on the rows of one layer's K or V
 * (ROWS of HD floats): sums of squared errors and of squares into ERR2 and
 * NORM2. */
static void layer_error(rk_kv_format f, const float *x, int rows, int hd, double *err2,
                        double *norm2)
{
    unsigned char row[RK_KV_MAX_HEAD_DIM * 4];
    float back[RK_KV_MAX_HEAD_DIM];
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * hd;
        rk_kv_quantize_row(f, hd, RK_KV_GROUP_DEFAULT, xr, row);
        rk_kv_dequantize_row(f, hd, RK_KV_GROUP_DEFAULT, row, back);
        add_error(back, xr, (size_t)hd, err2, norm2);
    }
}

/* Each quantized cache's layer-0 rows after the prompt IDS[0..P) against
 * the reference's codes of FP32's (a model with the fp32 cache that ran it):
 * layer 0's input is the same in every format, so they are equal byte for
 * byte when the target quantizes on append as kv_quant.c does. */
static void check_appended_rows(const char *model, const rk_model *fp32, const int32_t *ids,
                                int P)
{
    const int H = fp32->cfg.n_heads, hd = fp32->cfg.head_dim;
    const rk_kv_layer want = rk_kv_cache_layer(&fp32->cache, fp32->base, 0);
    unsigned char row[RK_KV_MAX_HEAD_DIM * 4];
    for (int q = 0; q < N_QUANTIZED; q++) {
        rk_model *m = load(model, quantized[q], (rk_kv_policy){0}, P, 1);
        if (!m)
            continue;
        rk_seq seq;
        rk_seq_reset(&seq);
        CHECK(rk_model_prefill(m, &seq, ids, P) == RK_OK);
        const rk_kv_layer got = rk_kv_cache_layer(&m->cache, m->base, 0);
        const size_t bytes = rk_kv_row_bytes(got.format, hd, got.group);
        int bad = 0;
        for (int kv = 0; kv < 2; kv++)
            for (int h = 0; h < H; h++)
                for (int r = 0; r < P; r++) {
                    const size_t at = (size_t)h * got.cap + r;
                    const float *x = (const float *)(kv ? want.v : want.k) + at * hd;
                    rk_kv_quantize_row(got.format, hd, got.group, x, row);
                    bad += memcmp((const char *)(kv ? got.v : got.k) + at * bytes, row, bytes) != 0;
                }
        CHECKF(bad == 0, "%s: %d appended layer-0 rows differ from the reference's codes",
               rk_kv_format_name(quantized[q]), bad);
        rk_model_free(m);
    }
}

/* Where the KIVI formats fall among the row formats, in every layer and
 * overall (of P positions, all quantized when P is a multiple of the
 * residual): 4-bit keys per channel (kivi4) between int8 and int4 in every
 * layer, and overall below 0.7 of int4's per-token error (0.57 on
 * pythia-mini, 0.48 on pythia-nano: the outlier channels KIVI quantizes
 * keys per channel for; layer 0 of pythia-mini 0.89); 2-bit keys (kivi,
 * kivi2, the same codes) above int4; 4-bit values (kivi, kivi4) int4's rows
 * read from fp16, 2-bit values (kivi2) above them. */
static void check_kivi_order(const rk_kv_error *e)
{
    int bad = 0;
    for (int l = 0; l <= e->layers; l++) {
        double k[RK_KV_N_FORMATS], v[RK_KV_N_FORMATS];
        for (int f = 0; f < RK_KV_N_FORMATS; f++) {
            k[f] = l < e->layers ? rk_kv_error_layer(e, (rk_kv_format)f, 0, l)
                                 : rk_kv_error_overall(e, (rk_kv_format)f, 0);
            v[f] = l < e->layers ? rk_kv_error_layer(e, (rk_kv_format)f, 1, l)
                                 : rk_kv_error_overall(e, (rk_kv_format)f, 1);
        }
        bad += !(k[RK_KV_INT8] < k[RK_KV_KIVI4] &&
                 k[RK_KV_KIVI4] < (l < e->layers ? 1.0 : 0.7) * k[RK_KV_INT4] &&
                 k[RK_KV_INT4] < k[RK_KV_KIVI] && k[RK_KV_KIVI] == k[RK_KV_KIVI2]);
        bad += !(v[RK_KV_KIVI] == v[RK_KV_KIVI4] &&
                 fabs(v[RK_KV_KIVI] - v[RK_KV_INT4]) < 0.01 * v[RK_KV_INT4] &&
                 v[RK_KV_INT4] < v[RK_KV_KIVI2]);
        if (l == e->layers)
            printf("  overall K: kivi4 %.5f, kivi/kivi2 %.5f; V: kivi/kivi4 %.5f, kivi2 %.5f\n",
                   k[RK_KV_KIVI4], k[RK_KV_KIVI], v[RK_KV_KIVI], v[RK_KV_KIVI2]);
    }
    CHECKF(bad == 0, "%d layers' (or the overall) KIVI errors out of their order", bad);
}

/* rk_kv_error (what rankkv-ppl --kv-error records), fed the rows of the
 * fp32 cache of M as rk_model_kv_row reads them back after the P positions
 * S has run, against this test's own sums over the cache's rows (ERRS per
 * layer, TOTAL over the layers): the same errors, fp32's 0 exactly, the
 * order fp16 < int8 < int4 in every layer, and the overall the error of
 * the whole cache, between the smallest and largest layer's. */
static void check_error_record(const rk_model *m, const rk_seq *s, int P,
                               double errs[][2][N_QUANTIZED],
                               double total[2][N_QUANTIZED][2])
{
    const int L = m->cfg.n_layers, H = m->cfg.n_heads, hd = m->cfg.head_dim;
    static rk_kv_error e;
    e = (rk_kv_error){.layers = L, .head_dim = hd,
                      .formats = RK_KV_FORMAT_BIT(RK_KV_FP32) | RK_KV_FORMAT_BIT(RK_KV_FP16) |
                                 RK_KV_FORMAT_BIT(RK_KV_INT8) | RK_KV_FORMAT_BIT(RK_KV_INT4) |
                                 RK_KV_FORMAT_BIT(RK_KV_INT2) |
                                 RK_KV_FORMAT_BIT(RK_KV_KIVI) | RK_KV_FORMAT_BIT(RK_KV_KIVI2) |
                                 RK_KV_FORMAT_BIT(RK_KV_KIVI4)};
    const size_t head = (size_t)P * hd;
    float *k = malloc((size_t)H * hd * sizeof *k), *v = malloc((size_t)H * hd * sizeof *v);
    float *seqs = malloc(2 * (size_t)H * head * sizeof *seqs); /* [K, V][head][pos] */
    for (int l = 0; l < L; l++) {
        for (int pos = 0; pos < P; pos++) {
            CHECK(rk_model_kv_row(m, s, l, pos, k, v) == RK_OK);
            for (int h = 0; h < H; h++) {
                memcpy(seqs + h * head + (size_t)pos * hd, k + (size_t)h * hd, hd * sizeof *k);
                memcpy(seqs + (H + h) * head + (size_t)pos * hd, v + (size_t)h * hd,
                       hd * sizeof *v);
            }
        }
        for (int h = 0; h < 2 * H; h++)
            CHECK(rk_kv_error_add_rows(&e, l, h >= H, seqs + h * head, P) == RK_OK);
    }
    free(k);
    free(v);
    free(seqs);
    check_kivi_order(&e);
    int differ = 0, order = 0, zero = 1;
    for (int is_v = 0; is_v < 2; is_v++) {
        for (int l = 0; l < L; l++) {
            double got[N_QUANTIZED];
            for (int q = 0; q < N_QUANTIZED; q++) {
                got[q] = rk_kv_error_layer(&e, quantized[q], is_v, l);
                differ += !(fabs(got[q] - errs[l][is_v][q]) <= 1e-9 * errs[l][is_v][q]);
            }
            order += !(got[0] < got[1] && got[1] < got[2] && got[2] < got[3]);
            zero &= rk_kv_error_layer(&e, RK_KV_FP32, is_v, l) == 0.0;
        }
        for (int q = 0; q < N_QUANTIZED; q++) {
            const double all = rk_kv_error_overall(&e, quantized[q], is_v);
            const double want = sqrt(total[is_v][q][0] / total[is_v][q][1]);
            double lo = INFINITY, hi = 0;
            for (int l = 0; l < L; l++) {
                const double x = rk_kv_error_layer(&e, quantized[q], is_v, l);
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
            }
            CHECKF(fabs(all - want) <= 1e-9 * want && lo <= all && all <= hi,
                   "%s overall %s: %.9g, the cache's %.9g, layers %.9g..%.9g",
                   rk_kv_format_name(quantized[q]), is_v ? "V" : "K", all, want, lo, hi);
        }
    }
    CHECKF(differ == 0, "%d layer errors of rk_kv_error differ from the cache's", differ);
    CHECKF(order == 0, "%d layers' K or V out of the order fp16 < int8 < int4 < int2 in rk_kv_error",
           order);
    CHECK(zero);
    CHECK(rk_kv_error_overall(&e, RK_KV_FP32, 0) == 0.0);
}

/* The fp32 cache of a prompt of P tokens of MODEL, per layer and overall:
 * each format's error in order, and the rows each quantized cache appends
 * for layer 0 (whose input no format changes) equal to the reference's
 * codes of the fp32 rows. */
static void test_real_kv(const char *model, int P)
{
    int32_t *ids = readme_tokens(model, P);
    CHECKF(ids != NULL, "README tokens of %s", model);
    rk_model *m = ids ? load(model, RK_KV_FP32, (rk_kv_policy){0}, P, 1) : NULL;
    if (!m) {
        free(ids);
        return;
    }
    rk_seq seq;
    rk_seq_reset(&seq);
    CHECK(rk_model_prefill(m, &seq, ids, P) == RK_OK);
    const int L = m->cfg.n_layers, H = m->cfg.n_heads, hd = m->cfg.head_dim;
    double total[2][N_QUANTIZED][2] = {{{0}}};
    double errs[RK_MAX_LAYERS][2][N_QUANTIZED];
    int order = 0;
    printf("%s, %d README tokens: relative Frobenius error of K | V per layer (fp16 int8 int4)\n",
           model, P);
    for (int l = 0; l < L; l++) {
        const rk_kv_layer c = rk_kv_cache_layer(&m->cache, m->base, l);
        double(*e)[N_QUANTIZED] = errs[l];
        printf("  layer %2d:", l);
        for (int kv = 0; kv < 2; kv++) {
            for (int q = 0; q < N_QUANTIZED; q++) {
                double err2 = 0, norm2 = 0;
                for (int h = 0; h < H; h++)
                    layer_error(quantized[q], (const float *)(kv ? c.v : c.k) +
                                                  (size_t)h * c.cap * hd,
                                P, hd, &err2, &norm2);
                e[kv][q] = sqrt(err2 / norm2);
                total[kv][q][0] += err2, total[kv][q][1] += norm2;
                printf(" %.5f", e[kv][q]);
            }
            printf(kv ? "\n" : " |");
            order += !(e[kv][0] < e[kv][1] && e[kv][1] < e[kv][2]);
        }
    }
    CHECKF(order == 0, "%s: %d layers' K or V out of the order fp16 < int8 < int4", model, order);
    for (int kv = 0; kv < 2; kv++) {
        double e[N_QUANTIZED];
        for (int q = 0; q < N_QUANTIZED; q++)
            e[q] = sqrt(total[kv][q][0] / total[kv][q][1]);
        printf("  overall %s: fp16 %.5f, int8 %.5f, int4 %.5f\n", kv ? "V" : "K", e[0], e[1],
               e[2]);
        CHECK(e[0] < e[1] && e[1] < e[2]);
        CHECKF(e[0] < 1e-3 && e[1] < 1e-2 && e[2] < 0.15, "%s %s: %g %g %g", model,
               kv ? "V" : "K", e[0], e[1], e[2]);
    }
    check_error_record(m, &seq, P, errs, total);
    check_appended_rows(model, m, ids, P);
    rk_model_free(m);
    free(ids);
}

/* SmartKV among the others, on a prompt of P tokens of MODEL: the rows of
 * its cache (each in the tier its attention placed it in, read back by
 * rk_model_kv_row) against the fp16 cache's of the same prompt, whose
 * activations they share (smartkv holds the prompt in fp16 until it is
 * placed), and int8 and int4 as the reference quantizes those same rows.
 * Its default average (8 bits of fp16's 16, scales counted) lies between
 * int8's 10 and int4's 6, and so must its error, overall, K and V. */
static void test_smart_order(const char *model, int P)
{
    int32_t *ids = readme_tokens(model, P);
    CHECKF(ids != NULL, "README tokens of %s", model);
    rk_model *ref = ids ? load(model, RK_KV_FP16, (rk_kv_policy){0}, P, 1) : NULL;
    rk_model *smart = ids ? load(model, RK_KV_SMART, (rk_kv_policy){0}, P, 1) : NULL;
    if (!ref || !smart) {
        rk_model_free(ref);
        rk_model_free(smart);
        free(ids);
        return;
    }
    rk_seq sr, ss;
    rk_seq_reset(&sr);
    rk_seq_reset(&ss);
    CHECK(rk_model_prefill(ref, &sr, ids, P) == RK_OK);
    CHECK(rk_model_prefill(smart, &ss, ids, P) == RK_OK);
    const int L = ref->cfg.n_layers, H = ref->cfg.n_heads, hd = ref->cfg.head_dim;
    const size_t width = (size_t)H * hd;
    float *k = malloc(2 * width * sizeof *k), *v = k + width;
    float *sk = malloc(2 * width * sizeof *sk), *sv = sk + width;
    /* [K, V][int8, smartkv, int4] */
    double err2[2][3] = {{0}}, norm2[2][3] = {{0}};
    for (int l = 0; l < L; l++)
        for (int pos = 0; pos < P; pos++) {
            CHECK(rk_model_kv_row(ref, &sr, l, pos, k, v) == RK_OK);
            CHECK(rk_model_kv_row(smart, &ss, l, pos, sk, sv) == RK_OK);
            /* The newest rows stay in smartkv's fp16 tier: equal, as the
             * activations are the same. */
            if (pos == P - 1)
                CHECKF(memcmp(k, sk, width * sizeof *k) == 0 &&
                           memcmp(v, sv, width * sizeof *v) == 0,
                       "%s layer %d: smartkv's newest row differs from the fp16 cache's", model,
                       l);
            for (int kv = 0; kv < 2; kv++) {
                const float *x = kv ? v : k, *got = kv ? sv : sk;
                add_error(got, x, width, &err2[kv][1], &norm2[kv][1]);
                layer_error(RK_KV_INT8, x, H, hd, &err2[kv][0], &norm2[kv][0]);
                layer_error(RK_KV_INT4, x, H, hd, &err2[kv][2], &norm2[kv][2]);
            }
        }
    for (int kv = 0; kv < 2; kv++) {
        double e[3];
        for (int q = 0; q < 3; q++)
            e[q] = sqrt(err2[kv][q] / norm2[kv][q]);
        printf("%s, %d README tokens, %s against the fp16 cache: int8 %.5f, smartkv (8 bits) "
               "%.5f, int4 %.5f\n",
               model, P, kv ? "V" : "K", e[0], e[1], e[2]);
        CHECKF(e[0] < e[1] && e[1] < e[2], "%s %s: smartkv's error %g not between int8's %g and "
               "int4's %g", model, kv ? "V" : "K", e[1], e[0], e[2]);
    }
    free(k);
    free(sk);
    rk_model_free(ref);
    rk_model_free(smart);
    free(ids);
}

/* ---- every policy in every format against the fp32 cache ---- */

enum { PROMPT = 200, NEW = 24, GREEDY = 48, PROMPTS = 3, BUDGET = 40, WINDOW = 8 };

/* What a policy in a format makes of pythia-nano: the logits of NEW
 * tokens of WikiText scored after a PROMPT-token prompt, their NLL, and
 * greedy continuations of the goldens' prompts. */
typedef struct {
    float *logits;
    double nll;
    int32_t greedy[PROMPTS][GREEDY];
} outcome;

static void keep_logits(void *user, int i, const float *logits, int vocab)
{
    memcpy((float *)user + (size_t)i * vocab, logits, (size_t)vocab * sizeof(float));
}

static void run_policy(rk_model *m, const int32_t *text, const cJSON *g, outcome *o)
{
    rk_seq seq;
    rk_seq_reset(&seq);
    CHECK(rk_model_prefill(m, &seq, text, PROMPT) == RK_OK);
    CHECK(rk_model_score_steps_each(m, &seq, text + PROMPT, NEW, &o->nll, keep_logits,
                                    o->logits) == RK_OK);
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(g, "greedy")) {
        int np;
        int32_t *prompt = golden_ints(cJSON_GetObjectItem(e, "prompt_ids"), &np);
        rk_seq_reset(&seq);
        CHECK(k < PROMPTS && rk_model_prefill(m, &seq, prompt, np) == RK_OK);
        int32_t next = rk_argmax(rk_model_logits(m, 0), m->cfg.vocab);
        for (int t = 0; k < PROMPTS && t < GREEDY; t++) {
            o->greedy[k][t] = next;
            if (t + 1 < GREEDY)
                CHECK(rk_model_forward_argmax(m, &seq, &next, 1, &next) == RK_OK);
        }
        free(prompt);
        k++;
    }
}

/* Greedy tokens GOT shares with WANT, each prompt up to its first
 * difference. */
static int same_greedy(const outcome *want, const outcome *got)
{
    int same = 0;
    for (int k = 0; k < PROMPTS; k++)
        for (int t = 0; t < GREEDY && got->greedy[k][t] == want->greedy[k][t]; t++)
            same++;
    return same;
}

/* The tolerance a format justifies, against the fp32 cache: fp16 rounds
 * K/V by 2^-11 (relative error 2e-4 on real rows), which moves no greedy
 * token here (H2O's logits move by up to 0.4 where a near tie of
 * accumulated attention evicts another row); int8's 0.4 % moves logits by
 * about a tenth and the NLL by thousandths; int4's 7 % is a real loss,
 * held to finite logits and an NLL within a quarter of a nat per token on
 * this 3.9 M-parameter model. */
static void check_format(const char *policy, rk_kv_format f, const outcome *want,
                         const outcome *got, int vocab)
{
    double worst = 0;
    int finite = 1;
    for (size_t i = 0; i < (size_t)NEW * vocab; i++) {
        finite &= isfinite(got->logits[i]) != 0;
        worst = fmax(worst, fabs((double)got->logits[i] - want->logits[i]));
    }
    const double dnll = (got->nll - want->nll) / NEW;
    const int same = same_greedy(want, got);
    printf("  %-16s %s: max |logit - fp32's| %.4f, NLL %+.4f nats/token, greedy %3d/%d as fp32\n",
           policy, rk_kv_format_name(f), worst, dnll, same, PROMPTS * GREEDY);
    CHECKF(finite, "%s %s: logits not finite", policy, rk_kv_format_name(f));
    if (f == RK_KV_FP16)
        CHECKF(same == PROMPTS * GREEDY && worst < 0.5, "%s fp16: greedy %d, max |dlogit| %g",
               policy, same, worst);
    if (f == RK_KV_INT8)
        CHECKF(worst < 0.3 && fabs(dnll) < 0.02, "%s int8: max |dlogit| %g, dNLL %g", policy,
               worst, dnll);
    if (f == RK_KV_INT4 || rk_kv_format_kivi(f))
        CHECKF(fabs(dnll) < 0.25, "%s %s: dNLL %g", policy, rk_kv_format_name(f), dnll);
}

static void test_policies(void)
{
    cJSON *g = golden_load(NANO);
    CHECK(g != NULL);
    if (!g)
        return;
    int n;
    int32_t *text = golden_ints(golden_path(g, "sequences", "wiki", "input_ids"), &n);
    CHECK(n >= PROMPT + NEW);
    rk_identity nano;
    CHECK(rk_identity_of(NANO, &nano) == RK_OK);
    const char *methods[] = {"full", "snapkv", "pyramidkv", "h2o", "streamingllm", "rankkv",
                             "pyramidkv-rankkv"};
    rk_config cfg;
    CHECK(rk_config_load(NANO "/config.json", &cfg) == RK_OK);
    outcome want = {.logits = malloc((size_t)NEW * cfg.vocab * sizeof(float))};
    outcome got = {.logits = malloc((size_t)NEW * cfg.vocab * sizeof(float))};
    printf("pythia-nano, every policy (budget %d) in every format against its fp32 cache:\n",
           BUDGET);
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        rk_kv_options o = {.method = methods[i], .average = strcmp(methods[i], "full") ? BUDGET : 0,
                           .window = WINDOW, .profile = rk_profile_find(&nano)};
        rk_kv_policy p;
        CHECKF(rk_kv_policy_make(&o, cfg.n_layers, &p) == RK_OK, "%s", rk_last_error());
        rk_model *m = load(NANO, RK_KV_FP32, p, PROMPT, GREEDY);
        if (!m)
            continue;
        run_policy(m, text, g, &want);
        rk_model_free(m);
        for (int q = 0; q < N_QUANTIZED + N_KIVI; q++) {
            const rk_kv_format f = q < N_QUANTIZED ? quantized[q] : kivi[q - N_QUANTIZED];
            if (rk_kv_policy_stores(&p, f) != RK_OK || !(m = load(NANO, f, p, PROMPT, GREEDY)))
                continue;
            run_policy(m, text, g, &got);
            check_format(methods[i], f, &want, &got, cfg.vocab);
            rk_model_free(m);
        }
    }
    free(want.logits);
    free(got.logits);
    free(text);
    cJSON_Delete(g);
}

/* ---- refusals ---- */

static void test_refusals(void)
{
    rk_config cfg;
    CHECK(rk_config_load(NANO "/config.json", &cfg) == RK_OK);
    rk_model *m = malloc(sizeof *m);
    rk_limits lim = {.max_prompt = 64, .max_new_tokens = 8, .prefill_chunk = 64,
                     .logits_rows = 1, .kv_format = RK_KV_INT4, .kv_group = 7};
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_EINVAL &&
          strstr(rk_last_error(), "KV group of 7 channels does not divide head_dim 80"));
    lim.kv_group = 160;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_EINVAL);
    lim.kv_group = 20;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_OK);
    /* fp32 and fp16 have no groups to divide anything. */
    lim.kv_format = RK_KV_FP16, lim.kv_group = 7;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_OK);
    rk_kv_format f;
    CHECK(rk_kv_format_parse("int3", &f) == RK_EINVAL &&
          strstr(rk_last_error(), "unknown KV dtype 'int3' (have: fp32, fp16, int8, int4, int2, "
                                  "kivi, kivi2, kivi4, smartkv)"));
    CHECK(rk_kv_format_parse("int4", &f) == RK_OK && f == RK_KV_INT4);

    /* A target that stores fp16 only (the CUDA target until its quantized
     * kernels exist) refuses the others when the plan is made. */
    rk_ops fp16_only = *rk_cpu_ops();
    fp16_only.name = "fp16-only";
    fp16_only.kv_formats = RK_KV_FORMAT_BIT(RK_KV_FP16);
    lim.kv_format = RK_KV_INT8, lim.kv_group = 0;
    CHECK(rk_model_plan(&cfg, &fp16_only, &lim, m) == RK_EDTYPE &&
          strstr(rk_last_error(), "the fp16-only target has no int8 KV cache (it stores: fp16)"));
    lim.kv_format = RK_KV_FP16;
    CHECK(rk_model_plan(&cfg, &fp16_only, &lim, m) == RK_OK);

    /* Rank measurement reads the target's own keys, not codes. */
    lim.kv_format = RK_KV_INT8;
    lim.rank = rk_cpu_rank_ops();
    lim.rank_len = 64;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_EDTYPE &&
          strstr(rk_last_error(), "rank measurement"));
    free(m);
}

/* ---- the plan: the cache and the prompt's region in the format ---- */

static void test_plan_bytes(void)
{
    rk_config cfg;
    CHECK(rk_config_load(NANO "/config.json", &cfg) == RK_OK);
    rk_model *m = malloc(sizeof *m);
    rk_kv_options o = {.method = "snapkv", .average = 40, .window = 8};
    for (int f = 0; f < RK_KV_N_FORMATS; f++) {
        if (!rk_kv_format_row((rk_kv_format)f))
            continue;
        rk_limits lim = {.max_prompt = 100, .max_new_tokens = 20, .prefill_chunk = 100,
                         .logits_rows = 1, .kv_format = (rk_kv_format)f};
        CHECK(rk_kv_policy_make(&o, cfg.n_layers, &lim.kv) == RK_OK);
        CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_OK);
        const size_t row = rk_kv_row_bytes((rk_kv_format)f, cfg.head_dim, RK_KV_GROUP_DEFAULT);
        const size_t heads = (size_t)cfg.n_heads;
        CHECK(m->kv_bytes == 2 * (size_t)cfg.n_layers * (40 + 20) * heads * row);
        CHECK(rk_plan_find(&m->plan, "kv_cache_k")->size == m->kv_bytes / 2);
        /* The prompt's region holds rows in the cache's format. */
        CHECK(rk_plan_find(&m->plan, "prefill_layer_k")->size == 100 * heads * row);
    }
    free(m);
}

int main(void)
{
    test_row_bytes();
    test_round_trips();
    test_plan_bytes();
    test_refusals();
    test_real_kv(NANO, 512);
    test_smart_order(NANO, 512);
    if (access(MINI "/model.safetensors", R_OK) == 0) {
        test_real_kv(MINI, 1024);
        test_smart_order(MINI, 1024);
    } else
        printf("pythia-mini is absent (../shared): its K/V are not measured\n");
    test_policies();
    return rk_test_finish("test_kv_quant");
}
