/* smartkv (kv_smart.h) on the CPU target. The tiers' capacities against
 * the rule written out for worked and random cases, and a head's bytes
 * against the formula. Rows placed by score and appended one at a time,
 * demotions included, against a plain reference (each row's floats as the
 * reader must return them: its first tier's rounding, then a second per
 * demotion), with no row ever promoted, sinks and the newest rows fp16,
 * every quantized tier no less important than the one below. On
 * pythia-nano: at 16 bits (every row fp16) the full cache's and SnapKV's
 * logits and rows equal the fp16 cache's bit for bit (the slot maps, the
 * placement and the reader are then exact); at 8 bits the logits are
 * finite, the plan's bytes the formula's; refusals. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv_quant.h"
#include "kv_smart.h"
#include "model.h"
#include "rk_test.h"
#include "targets.h"

#define NANO RK_MODELS_DIR "/pythia-nano"

/* The rule of kv_smart.h written out: fp16 min(36, C); the rest split
 * between the two ladder steps bracketing their average. */
static void rule(int G, double X, int C, int n[4])
{
    const double e[4] = {16, 8 + 32.0 / G, 4 + 32.0 / G, 2 + 32.0 / G};
    memset(n, 0, 4 * sizeof *n);
    n[0] = C < 36 ? C : 36;
    const int R = C - n[0];
    if (!R)
        return;
    const double a = (X * C - 16.0 * n[0]) / R;
    if (a <= e[3]) {
        n[3] = R;
        return;
    }
    int t = 0;
    while (a < e[t + 1])
        t++;
    const int up = (int)floor(R * (a - e[t + 1]) / (e[t] - e[t + 1]) + 1e-9);
    n[t] += up;
    n[t + 1] += R - up;
}

static void test_tiers(void)
{
    rk_smart_side s = rk_smart_side_of(0, 64, 16, 8.0, 1024);
    CHECK(s.cap[0] == 36 && s.cap[1] == 422 && s.cap[2] == 566 && s.cap[3] == 0);
    /* 36 x 128 + 422 x 80 + 566 x 48 bytes of rows, 8 x 1024 of maps. */
    CHECK(s.bytes == 36 * 128 + 422 * 80 + 566 * 48 + 8 * 1024);
    CHECK(rk_smart_side_of(1, 64, 16, 8.0, 1024).bytes == 36 * 128 + 422 * 80 + 566 * 48);
    s = rk_smart_side_of(0, 64, 16, 16.0, 1024);
    CHECK(s.cap[0] == 1024);
    s = rk_smart_side_of(0, 64, 16, 4.0, 1024);
    CHECK(s.cap[0] == 36 && s.cap[3] == 988);
    s = rk_smart_side_of(0, 64, 16, 5.0, 1024);
    CHECK(s.cap[1] == 0 && s.cap[2] > 0 && s.cap[3] > 0);
    CHECK(rk_smart_side_of(0, 64, 16, 8.0, 20).cap[0] == 20);
    int bad = 0;
    srand(7);
    for (int i = 0; i < 2000; i++) {
        const int hd = (rand() % 2) ? 64 : 80, G = (rand() % 2) ? 16 : 8;
        const int C = 1 + rand() % 3000;
        const double lo = 2 + 32.0 / G, X = lo + (16 - lo) * (rand() / (double)RAND_MAX);
        int n[4];
        rule(G, X, C, n);
        s = rk_smart_side_of(0, hd, G, X, C);
        size_t rows = 0;
        double bits = 0;
        for (int t = 0; t < 4; t++) {
            bad += s.cap[t] != n[t];
            rows += (size_t)s.cap[t] * rk_kv_row_bytes(rk_smart_tier_format(t), hd, G);
            bits += s.cap[t] * rk_smart_tier_bits(t, hd, G);
        }
        bad += n[0] + n[1] + n[2] + n[3] != C;
        bad += s.bytes != ((rows + 3) & ~(size_t)3) + 8 * (size_t)C;
        /* Within X once the fp16 tier and int2's floor are paid for. */
        bad += C > 36 && (X * C - 16.0 * 36) / (C - 36) > lo && bits > X * C + 1e-6;
    }
    CHECKF(bad == 0, "%d tier capacities or bytes differ from the rule", bad);
    CHECK(rk_smart_check(3.9, 64, 16) != RK_OK && rk_smart_check(16.1, 64, 16) != RK_OK &&
          rk_smart_check(4.0, 64, 16) == RK_OK && rk_smart_check(NAN, 64, 16) != RK_OK);
}

/* The plain reference: per row, its tier and the floats the reader must
 * return. */
enum { HD = 64, G = 16, CAP = 300 };
typedef struct {
    int tier[CAP];
    float k[CAP][HD], v[CAP][HD];
} reference;

/* X through a row of tier T and back: one rounding. */
static void round_once(int t, float *x)
{
    unsigned char row[RK_KV_MAX_ROW_BYTES];
    rk_kv_quantize_row(rk_smart_tier_format(t), HD, G, x, row);
    rk_kv_dequantize_row(rk_smart_tier_format(t), HD, G, row, x);
}

static int count(const reference *r, int rows, int t)
{
    int n = 0;
    for (int i = 0; i < rows; i++)
        n += r->tier[i] == t;
    return n;
}

/* Importance order of the rows, as kv_smart.c's: lower score, or equal
 * and later. */
static int below(const float *score, int a, int b)
{
    return score[a] < score[b] || (score[a] == score[b] && a > b);
}

/* Row I (its floats as they stand) moves down from tier T: into a free
 * slot, or in place of the least important row (fp16: the oldest but the
 * sinks), which moves on down; or, least important itself, on down. Each
 * tier a row is stored in rounds it once more. */
static void ref_insert(reference *r, const float *score, int rows, const int cap[4], int i,
                       int t)
{
    r->tier[i] = -1;
    for (; t < 4; t++) {
        if (!cap[t])
            continue;
        int victim = -1;
        for (int j = 0; j < rows; j++) {
            if (r->tier[j] != t)
                continue;
            if (t == 0 ? j >= RK_SMART_SINKS && (victim < 0 || j < victim)
                       : victim < 0 || below(score, j, victim))
                victim = j;
        }
        if (count(r, rows, t) < cap[t])
            victim = -1;
        else if (t > 0 && below(score, i, victim))
            continue;
        r->tier[i] = t;
        round_once(t, r->k[i]);
        round_once(t, r->v[i]);
        if (victim < 0)
            return;
        r->tier[victim] = -1;
        i = victim;
    }
}

static void test_round_trip(double X)
{
    unsigned char *mem = calloc(1, 2 * rk_smart_side_of(0, HD, G, X, CAP).bytes);
    float *score = calloc(CAP, sizeof *score);
    rk_kv_layer c = {.cap = CAP, .heads = 1, .head_dim = HD, .format = RK_KV_SMART, .group = G,
                     .bits_avg = X, .score = score};
    c.k = mem;
    c.v = mem + rk_smart_side_of(0, HD, G, X, CAP).bytes;
    const rk_smart_side s = rk_smart_side_of(0, HD, G, X, CAP);
    reference *r = calloc(1, sizeof *r);
    float src[CAP][2][HD];
    srand(11);
    for (int i = 0; i < CAP; i++)
        for (int d = 0; d < HD; d++) {
            src[i][0][d] = (float)(rand() / (double)RAND_MAX * 4 - 2) * (d % 7 ? 1.0f : 8.0f);
            src[i][1][d] = (float)(rand() / (double)RAND_MAX * 2 - 1);
        }
    /* A prompt of 200 rows placed by score. */
    const int P = 200;
    for (int i = 0; i < P; i++)
        score[i] = (float)(rand() % 1000) / 7.0f;
    rk_smart_place(&c, 0, P);
    for (int i = 0; i < P; i++)
        rk_smart_write(&c, 0, i, src[i][0], src[i][1]);
    int bad = 0, order = 0;
    for (int i = 0; i < P; i++) {
        const int t = rk_smart_tier_of(&c, 0, i);
        bad += (i < RK_SMART_SINKS || i >= P - (s.cap[0] - RK_SMART_SINKS)) != (t == 0);
        for (int j = 0; j < P; j++) {
            const int u = rk_smart_tier_of(&c, 0, j);
            order += t > 0 && u > t && score[j] > score[i];
        }
        r->tier[i] = t;
        memcpy(r->k[i], src[i][0], sizeof r->k[i]);
        memcpy(r->v[i], src[i][1], sizeof r->v[i]);
        round_once(t, r->k[i]);
        round_once(t, r->v[i]);
    }
    CHECKF(bad == 0 && order == 0, "placement: %d rows in the wrong tier for their age, %d "
           "below a less important row", bad, order);
    /* Decode: 100 rows appended, scores accumulating as attention would. */
    int promoted = 0, differ = 0, seconds = 0;
    for (int i = P; i < CAP; i++) {
        for (int j = 0; j < i; j++)
            score[j] += (float)(rand() % 100) / 50.0f;
        score[i] = 0;
        int before[CAP];
        for (int j = 0; j < i; j++)
            before[j] = rk_smart_tier_of(&c, 0, j);
        rk_smart_append(&c, 0, i, src[i][0], src[i][1]);
        memcpy(r->k[i], src[i][0], sizeof r->k[i]);
        memcpy(r->v[i], src[i][1], sizeof r->v[i]);
        ref_insert(r, score, i + 1, s.cap, i, 0);
        for (int j = 0; j <= i; j++) {
            const int t = rk_smart_tier_of(&c, 0, j);
            promoted += j < i && t < before[j];
            differ += t != r->tier[j];
            float x[HD];
            rk_smart_read(&c, 0, 0, j, x);
            differ += memcmp(x, r->k[j], sizeof x) != 0;
            rk_smart_read(&c, 1, 0, j, x);
            differ += memcmp(x, r->v[j], sizeof x) != 0;
        }
    }
    /* A demoted row reads back as its second rounding, not as its source
     * stored once in its last tier. */
    for (int j = 0; j < CAP; j++) {
        float once[HD];
        memcpy(once, src[j][0], sizeof once);
        round_once(r->tier[j], once);
        seconds += memcmp(once, r->k[j], sizeof once) != 0;
    }
    for (int t = 0; t < 4; t++)
        CHECK(count(r, CAP, t) == s.cap[t]);
    CHECKF(promoted == 0, "%g bits: %d rows promoted", X, promoted);
    CHECKF(differ == 0, "%g bits: %d rows or tiers differ from the reference", X, differ);
    CHECKF(seconds > 0, "%g bits: no row was demoted", X);
    free(r);
    free(score);
    free(mem);
}

/* NaN scores (attention over an overflowed activation) rank below every
 * number, as kv_smart.c's order says: a prompt with a NaN every fifth row
 * places every row in a slot of its own, no NaN row in a higher tier than
 * a ranked number, and appends with NaN scores among them still give
 * every row a slot. */
static void test_nan_scores(void)
{
    const double X = 8.0;
    const rk_smart_side s = rk_smart_side_of(0, HD, G, X, CAP);
    unsigned char *mem = calloc(1, 2 * s.bytes);
    float *score = calloc(CAP, sizeof *score);
    rk_kv_layer c = {.cap = CAP, .heads = 1, .head_dim = HD, .format = RK_KV_SMART, .group = G,
                     .bits_avg = X, .score = score, .k = mem, .v = mem + s.bytes};
    float k[HD] = {0}, v[HD] = {0};
    const int P = 200;
    for (int i = 0; i < CAP; i++)
        score[i] = i % 5 == 2 ? NAN : (float)(i % 13);
    rk_smart_place(&c, 0, P);
    for (int i = 0; i < P; i++)
        rk_smart_write(&c, 0, i, k, v);
    int above = 0;
    for (int i = 0; i < P; i++)
        for (int j = 0; j < P; j++) {
            const int ti = rk_smart_tier_of(&c, 0, i), tj = rk_smart_tier_of(&c, 0, j);
            above += ti > 0 && tj > 0 && isnan(score[i]) && !isnan(score[j]) && ti < tj;
        }
    CHECKF(above == 0, "%d pairs of a NaN-scored row placed above a numbered one", above);
    for (int i = P; i < CAP; i++)
        rk_smart_append(&c, 0, i, k, v);
    const int32_t *where = (const int32_t *)(mem + s.maps), *owner = where + CAP;
    int unplaced = 0;
    for (int r = 0; r < CAP; r++)
        unplaced += where[r] < 0 || where[r] >= CAP || owner[where[r]] != r;
    CHECKF(unplaced == 0, "%d rows without a slot of their own after NaN scores", unplaced);
    free(score);
    free(mem);
}

enum { PROMPT = 200, NEW = 24 };
static int32_t tokens[PROMPT + NEW];

static rk_model *load(rk_kv_format f, double bits, rk_kv_policy p)
{
    rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = NEW, .prefill_chunk = PROMPT,
                     .logits_rows = 1, .kv_format = f, .kv_bits_avg = bits, .kv = p};
    rk_model *m = NULL;
    CHECKF(rk_model_load(NANO, rk_cpu_ops(), &lim, &m) == RK_OK, "%s", rk_last_error());
    return m;
}

/* The logits of a prompt and NEW decode steps, concatenated. */
static float *run(rk_model *m)
{
    const size_t V = (size_t)m->cfg.vocab;
    float *out = malloc((NEW + 1) * V * sizeof *out);
    rk_seq s;
    rk_seq_reset(&s);
    CHECK(rk_model_forward(m, &s, tokens, PROMPT) == RK_OK);
    memcpy(out, m->host_logits, V * sizeof *out);
    for (int i = 0; i < NEW; i++) {
        CHECK(rk_model_forward(m, &s, tokens + PROMPT + i, 1) == RK_OK);
        memcpy(out + (i + 1) * V, m->host_logits, V * sizeof *out);
    }
    /* A demoted row's bits are gone: no rollback. */
    CHECK((rk_seq_truncate(m, &s, PROMPT + NEW - 1) != RK_OK) == (m->cache.dtype == RK_KV_SMART));
    return out;
}

static void test_model(const char *method)
{
    rk_kv_options o = {.method = method, .average = strcmp(method, "full") ? 64 : 0, .window = 8};
    rk_kv_policy p;
    CHECK(rk_kv_policy_make(&o, 4, &p) == RK_OK);
    rk_model *fp16 = load(RK_KV_FP16, 0, p), *all = load(RK_KV_SMART, 16, p);
    rk_model *half = load(RK_KV_SMART, 0, p);
    if (!fp16 || !all || !half)
        return;
    const size_t n = (NEW + 1) * (size_t)fp16->cfg.vocab;
    float *a = run(fp16), *b = run(all), *c = run(half);
    CHECKF(memcmp(a, b, n * sizeof *a) == 0, "%s: smartkv at 16 bits differs from fp16", method);
    int finite = 1;
    double diff = 0;
    for (size_t i = 0; i < n; i++) {
        finite &= isfinite(c[i]);
        diff += fabs(c[i] - a[i]);
    }
    CHECKF(finite && diff > 0, "%s: smartkv at 8 bits (finite %d, differs %g)", method, finite,
           diff);
    /* The plan's bytes: every layer's heads by the formula. */
    size_t bytes = 0;
    for (int l = 0; l < half->cfg.n_layers; l++)
        for (int is_v = 0; is_v < 2; is_v++)
            bytes += (size_t)half->cfg.n_heads *
                     rk_smart_side_of(is_v, half->cfg.head_dim, RK_KV_GROUP_DEFAULT, 8.0,
                                      half->cache.cap[l]).bytes;
    CHECK(half->kv_bytes == bytes &&
          rk_plan_find(&half->plan, "kv_cache_k")->size + rk_plan_find(&half->plan,
                                                                      "kv_cache_v")->size ==
              bytes);
    free(a);
    free(b);
    free(c);
    rk_model_free(fp16);
    rk_model_free(all);
    rk_model_free(half);
}

static void test_refusals(void)
{
    rk_config cfg;
    CHECK(rk_config_load(NANO "/config.json", &cfg) == RK_OK);
    rk_model *m = malloc(sizeof *m);
    const char *evicting[] = {"h2o", "streamingllm"};
    for (int i = 0; i < 2; i++) {
        rk_kv_options o = {.method = evicting[i], .average = 64};
        rk_limits lim = {.max_prompt = 100, .max_new_tokens = 20, .prefill_chunk = 100,
                         .logits_rows = 1, .kv_format = RK_KV_SMART};
        CHECK(rk_kv_policy_make(&o, cfg.n_layers, &lim.kv) == RK_OK);
        CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) != RK_OK);
    }
    rk_limits lim = {.max_prompt = 100, .max_new_tokens = 20, .prefill_chunk = 100,
                     .logits_rows = 1, .kv_format = RK_KV_SMART, .kv_bits_avg = 3};
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) != RK_OK);
    lim.kv_bits_avg = 0, lim.prefill_chunk = 50;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) != RK_OK);
    lim.prefill_chunk = 100, lim.kv_precision = RK_KV_RANK;
    CHECK(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) != RK_OK);
    /* A target whose kv_formats lack it says so. */
    rk_ops fp16_only = *rk_cpu_ops();
    fp16_only.kv_formats = RK_KV_FORMAT_BIT(RK_KV_FP16);
    CHECK(rk_model_check_kv_format(&cfg, &fp16_only, RK_KV_SMART, 0, 0) != RK_OK &&
          strstr(rk_last_error(), "no smartkv KV cache"));
    free(m);
}

int main(void)
{
    for (int i = 0; i < PROMPT + NEW; i++)
        tokens[i] = (int32_t)((i * 7919 + 13) % 2000) + (i % 3 == 0 ? 50 : 0);
    test_tiers();
    test_round_trip(8.0);
    test_round_trip(6.0);
    test_round_trip(12.0);
    test_nan_scores();
    test_model("full");
    test_model("snapkv");
    test_refusals();
    return rk_test_finish("test_kv_smart");
}
