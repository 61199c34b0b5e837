/* The KIVI formats (kv_kivi.h) on the CPU target. A head's bytes against
 * the layout's formula. Rows appended one at a time against a plain
 * reference of the rule (keys per channel over groups of positions, values
 * per token, both from fp16 rows; the newest rows fp16): before and after
 * each flush, codes, scales and minima read from the layout written out
 * here, at most 2^bits values per key channel and group once flushed (keys
 * really quantized), 2-bit ties to even, group edges. rk_kv_error's KIVI
 * sums against the reference. On pythia-nano: layer 0's rows the
 * reference's of the fp32 cache's;
 * SnapKV's kept rows in every layer the reference's of the fp16 cache's
 * same kept rows, and a budget of the whole prompt layer 0's bytes of the
 * full cache; rollback inside the residual, refused past a flush; the plan's
 * bytes; refusals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_kivi.h"
#include "kv_quant.h"
#include "model.h"
#include "kv_reference.h"
#include "rk_test.h"
#include "safetensors.h"
#include "targets.h"

#define NANO RK_MODELS_DIR "/pythia-nano"

static const rk_kv_format formats[] = {RK_KV_KIVI, RK_KV_KIVI2, RK_KV_KIVI4};
enum { N_FORMATS = sizeof formats / sizeof formats[0] };

static unsigned long long rng = 0x2545F4914F6CDD1DULL;
static float frand(void) { return rk_test_frand(&rng); }

/* ---- bytes ---- */

static void test_bytes(void)
{
    /* A head of 512 rows of 80 dims, G 16, R 64, kivi: K 512 x 20 B of
     * codes + 32 groups x 80 channels x 4 B + 64 x 160 B of residual; V
     * 512 x (40 + 5 x 4) B + 64 x 160 B. */
    CHECK(rk_kv_head_bytes(RK_KV_KIVI, 0, 80, 16, 64, 0, 512) == 30720);
    CHECK(rk_kv_head_bytes(RK_KV_KIVI, 1, 80, 16, 64, 0, 512) == 40960);
    int bad = 0;
    const int caps[] = {1, 15, 63, 64, 65, 100, 128, 224, 1000};
    for (int f = 0; f < N_FORMATS; f++)
        for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
            for (int hd = 64; hd <= 80; hd += 16) {
                const int cap = caps[i], G = 16, R = 32, kb = rk_kv_kivi_bits(formats[f], 0),
                          vb = rk_kv_kivi_bits(formats[f], 1);
                /* README: a quantized position costs its codes and 2 x
                 * head_dim / G pairs of fp16 scale and minimum; a residual
                 * position 2 x head_dim fp16 values. */
                const size_t q = (size_t)(cap / R * R), slots = (size_t)(cap < R ? cap : R);
                const size_t want = q * ((size_t)hd * (kb + vb) / 8 + 2 * (size_t)(hd / G) * 4) +
                                    slots * 2 * (size_t)hd * 2;
                bad += rk_kv_head_bytes(formats[f], 0, hd, G, R, 0, cap) +
                           rk_kv_head_bytes(formats[f], 1, hd, G, R, 0, cap) !=
                       want;
            }
    CHECKF(bad == 0, "%d KIVI head sizes differ from the formula", bad);
    /* The mean quantized row of kivi at 80 dims: 30 B of codes + 20 of scales. */
    CHECK(rk_kv_row_bytes(RK_KV_KIVI, 80, 16) == 50 && rk_kv_row_payload_bytes(RK_KV_KIVI, 80) == 30);
}

/* ---- the rule written out ---- */

static float f16_at(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return rk_f16_to_f32(h);
}

/* A one-head-pair layer cache of CAP rows in format F, and its memory. */
typedef struct {
    rk_kv_layer c;
    unsigned char *mem;
} scratch_layer;

static scratch_layer scratch(rk_kv_format f, int hd, int G, int R, int cap)
{
    scratch_layer s = {.c = {.cap = cap, .heads = 2, .head_dim = hd, .format = f, .group = G,
                             .residual = R}};
    const size_t k = 2 * rk_kv_head_bytes(f, 0, hd, G, R, 0, cap);
    s.mem = calloc(1, k + 2 * rk_kv_head_bytes(f, 1, hd, G, R, 0, cap));
    s.c.k = s.mem;
    s.c.v = s.mem + k;
    return s;
}

/* Head H's side IS_V of S, holding ROWS of the rows X (CAP x HD floats, the
 * appended ones), against the rule: fp16 rows from the last flush on,
 * codes and scales at the layout's places before it, and what reads back.
 * Returns the number of differences. */
static int check_side(const scratch_layer *s, int is_v, int h, int rows, const float *x)
{
    const rk_kv_layer *c = &s->c;
    const int hd = c->head_dim, G = c->group, R = c->residual;
    const int bits = rk_kv_kivi_bits(c->format, is_v), Q = rows / R * R;
    const unsigned char *head = rk_kv_layer_head(c, is_v, h);
    const size_t code_row = (size_t)hd * bits / 8, row = is_v ? code_row + (size_t)(hd / G) * 4
                                                              : code_row;
    const size_t meta = (size_t)(c->cap / R * R) * row;
    int bad = 0;
    float back[RK_KV_MAX_HEAD_DIM], col[RK_KV_MAX_HEAD_DIM], s_, m;
    unsigned q[RK_KV_MAX_HEAD_DIM];
    for (int r = Q; r < rows; r++) {
        rk_kivi_read(c, is_v, h, rows, r, back);
        for (int d = 0; d < hd; d++)
            bad += back[d] != rk_test_half(x[(size_t)r * hd + d]);
    }
    for (int r = 0; r < Q && is_v; r++) {
        rk_kivi_read(c, 1, h, rows, r, back);
        for (int g = 0; g < hd / G; g++) {
            for (int i = 0; i < G; i++)
                col[i] = rk_test_half(x[(size_t)r * hd + g * G + i]);
            rk_test_quantize_group(bits, col, G, &s_, &m, q);
            const unsigned char *pair = head + (size_t)r * row + code_row + 4 * (size_t)g;
            bad += f16_at(pair) != s_ || f16_at(pair + 2) != m;
            for (int i = 0; i < G; i++)
                bad += rk_test_code_at(head + (size_t)r * row, bits, g * G + i) != q[i] ||
                       back[g * G + i] != (float)q[i] * s_ + m;
        }
    }
    for (int g0 = 0; g0 < Q && !is_v; g0 += G)
        for (int d = 0; d < hd; d++) {
            for (int i = 0; i < G; i++)
                col[i] = rk_test_half(x[(size_t)(g0 + i) * hd + d]);
            rk_test_quantize_group(bits, col, G, &s_, &m, q);
            const unsigned char *pair = head + meta + ((size_t)(g0 / G) * hd + d) * 4;
            bad += f16_at(pair) != s_ || f16_at(pair + 2) != m;
            float seen[4 * 16 + 1];
            int distinct = 0;
            for (int i = 0; i < G; i++) {
                rk_kivi_read(c, 0, h, rows, g0 + i, back);
                bad += rk_test_code_at(head + (size_t)(g0 + i) * row, bits, d) != q[i] ||
                       back[d] != (float)q[i] * s_ + m;
                int j = 0;
                while (j < distinct && seen[j] != back[d])
                    j++;
                if (j == distinct && distinct < 4 * 16)
                    seen[distinct++] = back[d];
            }
            bad += distinct > 1 << bits;
        }
    return bad;
}

/* Rows of one block of positions: random, an outlier channel, equal
 * values, zeros, large, tiny. */
static void fill_rows(float *x, int rows, int hd)
{
    for (int r = 0; r < rows; r++)
        for (int d = 0; d < hd; d++) {
            float *e = &x[(size_t)r * hd + d];
            switch (r / 24 % 6) {
            case 0: *e = frand(); break;
            case 1: *e = d == 3 ? 40.0f + frand() : frand(); break;
            case 2: *e = 1.5f; break;
            case 3: *e = 0.0f; break;
            case 4: *e = 3000.0f * frand(); break;
            default: *e = 1e-6f * frand(); break;
            }
        }
}

static void test_rule(void)
{
    const struct {
        int hd, G, R, cap;
    } shapes[] = {{80, 16, 64, 200}, {64, 8, 32, 150}, {80, 16, 16, 70}, {64, 4, 12, 40}};
    for (int f = 0; f < N_FORMATS; f++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const int hd = shapes[k].hd, R = shapes[k].R, cap = shapes[k].cap;
            scratch_layer s = scratch(formats[f], hd, shapes[k].G, R, cap);
            float *x = malloc(2 * (size_t)cap * hd * sizeof *x);
            fill_rows(x, 2 * cap, hd); /* K rows, then V rows */
            int bad = 0, fp16_before = 0, quantized_after = 0;
            for (int r = 0; r < cap; r++) {
                for (int h = 0; h < 2; h++) {
                    rk_kivi_append(&s.c, 0, h, r, x + (size_t)r * hd);
                    rk_kivi_append(&s.c, 1, h, r, x + (size_t)(cap + r) * hd);
                }
                const int rows = r + 1;
                /* Every row until the block is full, and every block edge. */
                if (rows < R || rows % R <= 1 || rows % R == R - 1 || rows == cap)
                    for (int h = 0; h < 2; h++)
                        bad += check_side(&s, 0, h, rows, x) +
                               check_side(&s, 1, h, rows, x + (size_t)cap * hd);
                /* Row 0 of the random block: fp16 before the flush, codes
                 * after. */
                float back[RK_KV_MAX_HEAD_DIM];
                rk_kivi_read(&s.c, 0, 1, rows, 0, back);
                if (rows == R - 1)
                    fp16_before = back[0] == rk_test_half(x[0]);
                if (rows == R)
                    quantized_after = back[0] != rk_test_half(x[0]) || back[1] != rk_test_half(x[1]);
            }
            CHECKF(bad == 0 && fp16_before && quantized_after,
                   "%s hd %d G %d R %d: %d elements differ from the rule (fp16 before the flush "
                   "%d, quantized after %d)",
                   rk_kv_format_name(formats[f]), hd, shapes[k].G, R, bad, fp16_before,
                   quantized_after);
            free(x);
            free(s.mem);
        }
}

/* 2-bit codes round half to even: a key channel of minimum 0 and maximum 3
 * has scale 1, and 1.5 reads back as 2, 2.5 as 2, 0.5 as 0. */
static void test_ties(void)
{
    enum { HD = 4, G = 8 };
    scratch_layer s = scratch(RK_KV_KIVI2, HD, G, G, G);
    const float channel0[G] = {0.0f, 3.0f, 1.5f, 2.5f, 0.5f, 1.0f, 2.0f, 0.0f};
    const float want[G] = {0.0f, 3.0f, 2.0f, 2.0f, 0.0f, 1.0f, 2.0f, 0.0f};
    for (int r = 0; r < G; r++) {
        const float x[HD] = {channel0[r], 0.0f, 0.0f, 0.0f};
        rk_kivi_append(&s.c, 0, 0, r, x);
    }
    int bad = 0;
    for (int r = 0; r < G; r++) {
        float back[HD];
        rk_kivi_read(&s.c, 0, 0, G, r, back);
        bad += back[0] != want[r];
    }
    CHECKF(bad == 0, "%d 2-bit key codes not rounded half to even", bad);
    free(s.mem);
}

/* rk_kv_error's KIVI sums: the rows' squared error through the reference
 * cache, whose reads test_rule checked. */
static void test_error(void)
{
    enum { HD = 64, N = 150 };
    static float x[N * HD];
    fill_rows(x, N, HD);
    static rk_kv_error e;
    e = (rk_kv_error){.layers = 1, .head_dim = HD, .group = 8, .residual = 32,
                      .formats = RK_KV_FORMAT_BIT(RK_KV_KIVI) | RK_KV_FORMAT_BIT(RK_KV_KIVI4)};
    for (int is_v = 0; is_v < 2; is_v++)
        CHECK(rk_kv_error_add_rows(&e, 0, is_v, x, N) == RK_OK);
    for (int f = 0; f < 3; f += 2)
        for (int is_v = 0; is_v < 2; is_v++) {
            scratch_layer s = scratch(formats[f], HD, 8, 32, N);
            double err2 = 0, norm2 = 0;
            float back[HD];
            for (int r = 0; r < N; r++)
                rk_kivi_append(&s.c, is_v, 0, r, x + (size_t)r * HD);
            for (int r = 0; r < N; r++) {
                rk_kivi_read(&s.c, is_v, 0, N, r, back);
                for (int d = 0; d < HD; d++) {
                    const double xd = x[(size_t)r * HD + d];
                    err2 += (back[d] - xd) * (back[d] - xd);
                    norm2 += xd * xd;
                }
            }
            const double want = sqrt(err2 / norm2), got = rk_kv_error_layer(&e, formats[f], is_v, 0);
            CHECKF(fabs(got - want) <= 1e-12 * want, "%s %s: rk_kv_error %.12g, the cache %.12g",
                   rk_kv_format_name(formats[f]), is_v ? "V" : "K", got, want);
            free(s.mem);
        }
}

/* ---- the model ---- */

enum { PROMPT = 200, NEW = 24, G_ = 16, R_ = 32 };
static int32_t tokens[PROMPT + NEW];

static rk_kv_policy policy(const char *method, int budget)
{
    rk_kv_options o = {.method = method, .average = budget, .window = 8};
    rk_kv_policy p;
    CHECKF(rk_kv_policy_make(&o, 4, &p) == RK_OK, "%s", rk_last_error());
    return p;
}

static rk_model *load(rk_kv_format f, rk_kv_policy p)
{
    rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = NEW, .prefill_chunk = PROMPT,
                     .logits_rows = 1, .kv_format = f, .kv_group = G_, .kv_residual = R_,
                     .kv = p};
    rk_model *m = NULL;
    CHECKF(rk_model_load(NANO, rk_cpu_ops(), &lim, &m) == RK_OK, "%s", rk_last_error());
    return m;
}

static int prefill(rk_model *m, rk_seq *s, int n)
{
    rk_seq_reset(s);
    return rk_model_prefill(m, s, tokens, n) == RK_OK;
}

/* Layer L's K and V bytes of M, copied. */
static unsigned char *layer_bytes(const rk_model *m, int l, size_t *n)
{
    const rk_kv_layer x = rk_kv_cache_layer(&m->cache, m->base, l);
    const size_t k = (size_t)x.heads * rk_kv_head_bytes(x.format, 0, x.head_dim, x.group,
                                                        x.residual, 0, x.cap);
    *n = k + (size_t)x.heads * rk_kv_head_bytes(x.format, 1, x.head_dim, x.group, x.residual, 0,
                                                x.cap);
    unsigned char *copy = malloc(*n);
    memcpy(copy, x.k, k);
    memcpy(copy + k, x.v, *n - k);
    return copy;
}

/* The full cache: layer 0's rows (whose input no format changes) the
 * reference's of the fp32 cache's; rollback inside the residual gives the
 * same cache again, and past a flush it is refused. */
static void test_full(rk_kv_format f)
{
    rk_model *m = load(f, (rk_kv_policy){0});
    rk_model *fp32 = load(RK_KV_FP32, (rk_kv_policy){0});
    if (!m || !fp32)
        return;
    rk_seq a, c;
    CHECK(prefill(m, &a, PROMPT) && prefill(fp32, &c, PROMPT));
    const int H = m->cfg.n_heads, hd = m->cfg.head_dim;
    float *k = malloc((size_t)H * hd * sizeof *k), *v = malloc((size_t)H * hd * sizeof *v);
    scratch_layer s = scratch(f, hd, G_, R_, PROMPT + NEW);
    for (int pos = 0; pos < PROMPT; pos++) {
        CHECK(rk_model_kv_row(fp32, &c, 0, pos, k, v) == RK_OK);
        for (int h = 0; h < H; h++) {
            rk_kivi_append(&s.c, 0, h, pos, k + (size_t)h * hd);
            rk_kivi_append(&s.c, 1, h, pos, v + (size_t)h * hd);
        }
    }
    int bad = 0;
    for (int pos = 0; pos < PROMPT; pos++) {
        CHECK(rk_model_kv_row(m, &a, 0, pos, k, v) == RK_OK);
        for (int h = 0; h < H; h++) {
            float want[RK_KV_MAX_HEAD_DIM];
            rk_kivi_read(&s.c, 0, h, PROMPT, pos, want);
            bad += memcmp(want, k + (size_t)h * hd, hd * sizeof *k) != 0;
            rk_kivi_read(&s.c, 1, h, PROMPT, pos, want);
            bad += memcmp(want, v + (size_t)h * hd, hd * sizeof *v) != 0;
        }
    }
    CHECKF(bad == 0, "%s: %d layer-0 rows differ from the reference's", rk_kv_format_name(f), bad);
    free(s.mem);

    /* 200 rows are 192 quantized + 8 residual: back to 195 and forward the
     * same 5 tokens again gives the same cache. */
    CHECK(prefill(m, &a, 195) && rk_model_forward(m, &a, tokens + 195, 5) == RK_OK);
    size_t n;
    unsigned char *before[RK_MAX_LAYERS];
    for (int l = 0; l < m->cfg.n_layers; l++)
        before[l] = layer_bytes(m, l, &n);
    CHECK(rk_seq_truncate(m, &a, 195) == RK_OK);
    CHECK(rk_model_forward(m, &a, tokens + 195, 5) == RK_OK);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        unsigned char *after = layer_bytes(m, l, &n);
        CHECKF(memcmp(before[l], after, n) == 0, "%s: layer %d after a rollback",
               rk_kv_format_name(f), l);
        free(before[l]);
        free(after);
    }
    /* At 224 rows the block 192..223 is flushed but still in the residual;
     * the rows of 160..191 are not. */
    for (int t = 0; t < NEW; t++)
        CHECK(rk_model_forward(m, &a, tokens + t, 1) == RK_OK);
    CHECK(rk_seq_truncate(m, &a, 191) == RK_EINVAL &&
          strstr(rk_last_error(), "were quantized and their fp16 residual rows overwritten"));
    CHECK(rk_seq_truncate(m, &a, 192) == RK_OK && a.n_past == 192);
    free(k);
    free(v);
    rk_model_free(m);
    rk_model_free(fp32);
}

/* SnapKV over KIVI: the prompt attends and is scored in fp16, so the kept
 * positions are the fp16 cache's, and each layer's kept rows are the
 * reference's KIVI cache of the fp16 cache's kept rows (gathered, then
 * flushed in blocks). A budget of the whole prompt: layer 0's bytes are
 * the full cache's. Then decoding appends. */
static void test_snapkv(rk_kv_format f)
{
    enum { BUDGET = 72 }; /* 64 quantized rows and 8 residual after the prompt */
    rk_model *m = load(f, policy("snapkv", BUDGET));
    rk_model *fp16 = load(RK_KV_FP16, policy("snapkv", BUDGET));
    if (!m || !fp16)
        return;
    rk_seq a, b;
    CHECK(prefill(m, &a, PROMPT) && prefill(fp16, &b, PROMPT));
    const int H = m->cfg.n_heads, hd = m->cfg.head_dim;
    int bad = 0;
    int32_t pa[2 * BUDGET], pb[2 * BUDGET];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        CHECK(rk_model_kept_positions(m, &a, l, pa) == RK_OK &&
              rk_model_kept_positions(fp16, &b, l, pb) == RK_OK);
        bad += memcmp(pa, pb, (size_t)H * BUDGET * sizeof *pa) != 0;
        const rk_kv_layer c = rk_kv_cache_layer(&m->cache, m->base, l);
        const rk_kv_layer h16 = rk_kv_cache_layer(&fp16->cache, fp16->base, l);
        scratch_layer s = scratch(f, hd, G_, R_, c.cap);
        const size_t row = rk_kv_row_bytes(RK_KV_FP16, hd, G_);
        float x[RK_KV_MAX_HEAD_DIM], want[RK_KV_MAX_HEAD_DIM], got[RK_KV_MAX_HEAD_DIM];
        for (int h = 0; h < H; h++)
            for (int r = 0; r < BUDGET; r++)
                for (int is_v = 0; is_v < 2; is_v++) {
                    const char *src = (const char *)(is_v ? h16.v : h16.k) +
                                      ((size_t)h * h16.cap + r) * row;
                    rk_kv_dequantize_row(RK_KV_FP16, hd, G_, src, x);
                    rk_kivi_append(&s.c, is_v, h, r, x);
                }
        for (int h = 0; h < H; h++)
            for (int r = 0; r < BUDGET; r++)
                for (int is_v = 0; is_v < 2; is_v++) {
                    rk_kivi_read(&s.c, is_v, h, BUDGET, r, want);
                    rk_kivi_read(&c, is_v, h, a.rows[l], r, got);
                    bad += memcmp(want, got, hd * sizeof *got) != 0;
                }
        free(s.mem);
    }
    CHECKF(bad == 0 && a.rows[0] == BUDGET, "snapkv %s: %d kept rows or positions differ",
           rk_kv_format_name(f), bad);
    for (int t = 0; t < NEW - 1; t++) {
        CHECK(rk_model_forward(m, &a, tokens + PROMPT + t, 1) == RK_OK);
        int finite = 1;
        for (int i = 0; i < m->cfg.vocab; i++)
            finite &= isfinite(rk_model_logits(m, 0)[i]) != 0;
        CHECK(finite);
    }
    CHECK(a.rows[0] == BUDGET + NEW - 1);
    rk_model_free(m);
    rk_model_free(fp16);

    rk_model *whole = load(f, policy("snapkv", PROMPT));
    rk_model *full = load(f, (rk_kv_policy){0});
    if (whole && full) {
        CHECK(prefill(whole, &a, PROMPT) && prefill(full, &b, PROMPT));
        size_t n, n2;
        unsigned char *x = layer_bytes(whole, 0, &n), *y = layer_bytes(full, 0, &n2);
        CHECKF(n == n2 && memcmp(x, y, n) == 0, "snapkv %s keeping the whole prompt: layer 0",
               rk_kv_format_name(f));
        free(x);
        free(y);
    }
    rk_model_free(whole);
    rk_model_free(full);
}

/* The plan: the bytes of each layer's caps by the formula, K and V regions
 * of their own sizes, the prompt's region fp16. */
static void test_plan(void)
{
    rk_config cfg;
    CHECK(rk_config_load(NANO "/config.json", &cfg) == RK_OK);
    rk_model *m = malloc(sizeof *m);
    const char *methods[] = {"full", "snapkv", "pyramidkv"};
    for (int f = 0; f < N_FORMATS; f++)
        for (int i = 0; i < 3; i++) {
            rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = NEW, .prefill_chunk = PROMPT,
                             .logits_rows = 1, .kv_format = formats[f], .kv_group = G_,
                             .kv_residual = R_,
                             .kv = i ? policy(methods[i], 72) : (rk_kv_policy){0}};
            CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_OK);
            size_t k = 0, v = 0;
            for (int l = 0; l < cfg.n_layers; l++) {
                k += (size_t)cfg.n_heads * rk_kv_head_bytes(formats[f], 0, cfg.head_dim, G_, R_, 0,
                                                            m->cache.cap[l]);
                v += (size_t)cfg.n_heads * rk_kv_head_bytes(formats[f], 1, cfg.head_dim, G_, R_, 0,
                                                            m->cache.cap[l]);
            }
            CHECK(m->kv_bytes == k + v && rk_plan_find(&m->plan, "kv_cache_k")->size == k &&
                  rk_plan_find(&m->plan, "kv_cache_v")->size == v);
            if (i)
                CHECK(rk_plan_find(&m->plan, "prefill_layer_k")->size ==
                      (size_t)PROMPT * cfg.n_heads * cfg.head_dim * 2);
        }
    free(m);
}

static void test_refusals(void)
{
    rk_config cfg;
    CHECK(rk_config_load(NANO "/config.json", &cfg) == RK_OK);
    rk_model *m = malloc(sizeof *m);
    rk_limits lim = {.max_prompt = 64, .max_new_tokens = 8, .prefill_chunk = 64,
                     .logits_rows = 1, .kv_format = RK_KV_KIVI, .kv = policy("h2o", 40)};
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_EINVAL &&
          strstr(rk_last_error(), "h2o evicts single rows, and a kivi cache quantizes keys per "
                                  "channel over groups of positions"));
    lim.kv = policy("streamingllm", 40);
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_EINVAL &&
          strstr(rk_last_error(), "streamingllm evicts"));
    lim.kv = (rk_kv_policy){0};
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_OK);
    lim.kv_residual = 24;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_EINVAL &&
          strstr(rk_last_error(), "KV residual of 24 positions is not a multiple of the KV group "
                                  "of 16"));
    lim.kv_residual = 0, lim.kv_group = 7;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_EINVAL &&
          strstr(rk_last_error(), "KV group of 7 channels does not divide head_dim 80"));
    lim.kv_group = 0;
    rk_ops fp16_only = *rk_cpu_ops();
    fp16_only.name = "fp16-only";
    fp16_only.kv_formats = RK_KV_FORMAT_BIT(RK_KV_FP16);
    CHECK(rk_model_plan(&cfg, &fp16_only, &lim, m) == RK_EDTYPE &&
          strstr(rk_last_error(), "the fp16-only target has no kivi KV cache (it stores: fp16)"));
    free(m);
}

int main(void)
{
    for (int i = 0; i < PROMPT + NEW; i++)
        tokens[i] = (int32_t)((i * 7919 + 13) % 2000) + (i % 3 == 0 ? 50 : 0);
    test_bytes();
    test_rule();
    test_ties();
    test_error();
    test_plan();
    test_refusals();
    for (int f = 0; f < N_FORMATS; f++) {
        test_full(formats[f]);
        test_snapkv(formats[f]);
    }
    return rk_test_finish("test_kv_kivi");
}
