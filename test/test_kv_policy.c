/* The KV-compression building blocks that every target shares: per-layer
 * budget allocation (exact totals, pyramid shape, validation) and the
 * per-head selection rules of SnapKV, StreamingLLM and H2O. */
#include <math.h>
#include <string.h>

#include "flops.h"
#include "kv_budget.h"
#include "kv_select.h"
#include "rk_test.h"

static long long sum(const int *b, int n)
{
    long long s = 0;
    for (int i = 0; i < n; i++)
        s += b[i];
    return s;
}

/* PyramidKV's beta: 0 takes the default, and a NaN or a negative one is
 * refused rather than silently replaced by it. */
static void test_beta(void)
{
    rk_kv_policy p;
    const double bad[] = {NAN, -2.0, -INFINITY};
    for (int i = 0; i < 3; i++) {
        const rk_kv_options opt = {.method = "pyramidkv", .average = 64, .beta = bad[i]};
        CHECKF(rk_kv_policy_make(&opt, 4, &p) == RK_EINVAL && strstr(rk_last_error(), "beta"),
               "beta %g accepted", bad[i]);
    }
    const rk_kv_options dflt = {.method = "pyramidkv", .average = 64};
    CHECK(rk_kv_policy_make(&dflt, 4, &p) == RK_OK);
}

/* A schedule that gives a layer more rows than the prompt has passes the
 * surplus on: the total stays, no layer is over the cap, and the others
 * keep their order. */
static void test_cap(void)
{
    int b[6] = {2729, 1500, 900, 600, 300, 115};
    const long long total = sum(b, 6);
    CHECK(rk_budget_cap(b, 6, 64, 2048) == RK_OK);
    CHECKF(b[0] == 2048 && sum(b, 6) == total, "%d, total %lld", b[0], sum(b, 6));
    for (int l = 1; l < 6; l++)
        CHECKF(b[l] <= 2048 && b[l] <= b[l - 1] && b[l] >= 64, "layer %d: %d", l, b[l]);
    /* 1500 was over the cap once layer 0's surplus was added: it is capped
     * in the second pass. */
    int two[3] = {3000, 1900, 100};
    CHECK(rk_budget_cap(two, 3, 32, 2048) == RK_OK);
    CHECKF(two[0] == 2048 && two[1] == 2048 && two[2] == 904, "%d %d %d", two[0], two[1],
           two[2]);
    int full[2] = {3000, 1000};
    CHECK(rk_budget_cap(full, 2, 0, 1999) == RK_ELIMIT);

    /* Through the policy: PyramidKV's bottom layer at average 1024 over 4
     * layers wants 1966 rows; a 1500-token prompt limit caps it, the sum
     * stays 4096. */
    rk_kv_policy p;
    rk_kv_options o = {.method = "pyramidkv", .average = 1024};
    CHECK(rk_kv_policy_make(&o, 4, &p) == RK_OK && p.budget[0] > 1500);
    o.max_rows = 1500;
    CHECK(rk_kv_policy_make(&o, 4, &p) == RK_OK);
    CHECKF(p.budget[0] == 1500 && sum(p.budget, 4) == 4096, "%d, total %lld", p.budget[0],
           sum(p.budget, 4));
    o.max_rows = 1000;
    CHECK(rk_kv_policy_make(&o, 4, &p) == RK_ELIMIT && strstr(rk_last_error(), "per layer"));
}

static void test_budgets(void)
{
    int b[64];
    const int layers[] = {1, 4, 7, 24, 32}, averages[] = {33, 128, 256, 512, 1024};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            const int L = layers[i], avg = averages[j];
            CHECK(rk_budget_uniform(L, avg, 32, b) == RK_OK);
            CHECKF(sum(b, L) == (long long)L * avg, "uniform %d x %d", L, avg);
            CHECK(b[0] == avg && b[L - 1] == avg);
            CHECK(rk_budget_pyramid(L, avg, 32, 20.0, b) == RK_OK);
            CHECKF(sum(b, L) == (long long)L * avg, "pyramid %d x %d sums to %lld", L, avg,
                   sum(b, L));
            int mono = 1, floor_ok = 1;
            for (int l = 0; l < L; l++) {
                mono &= l == 0 || b[l] <= b[l - 1];
                floor_ok &= b[l] >= 32;
            }
            CHECKF(mono && floor_ok, "pyramid %d x %d not decreasing or under the window", L, avg);
            CHECK(rk_budget_check(b, L, L, avg, 32, 1 << 20) == RK_OK);
        }
    /* PyramidKV's shape at 32 layers, average 512, window 32, beta 20: the
     * bottom layer gets about (2 - 1/20) * 480 + 32, the top 480 / 20 + 32. */
    CHECK(rk_budget_pyramid(32, 512, 32, 20.0, b) == RK_OK);
    printf("pyramid 32 x 512: bottom %d, top %d\n", b[0], b[31]);
    CHECK(b[0] >= 966 && b[0] <= 969 && b[31] >= 55 && b[31] <= 57);
    CHECK(rk_budget_pyramid(8, 100, 4, 1.0, b) == RK_OK && b[0] == 100 && b[7] == 100);

    /* Weights: proportional shares, the remainder to the largest fractions. */
    const double w[3] = {1.0, 2.0, 1.0};
    CHECK(rk_budget_from_weights(w, 3, 10, 0, b) == RK_OK);
    CHECKF(b[0] == 8 && b[1] == 15 && b[2] == 7, "%d %d %d", b[0], b[1], b[2]);
    CHECK(rk_budget_from_weights(w, 3, 10, 9, b) == RK_OK && sum(b, 3) == 30 && b[2] >= 9);

    /* Refusals. */
    const double bad[2] = {1.0, 0.0};
    CHECK(rk_budget_from_weights(bad, 2, 10, 0, b) == RK_EINVAL);
    CHECK(rk_budget_pyramid(4, 32, 32, 20.0, b) == RK_EINVAL);
    CHECK(rk_budget_pyramid(4, 64, 32, 0.5, b) == RK_EINVAL);
    int arr[4] = {100, 100, 100, 100};
    CHECK(rk_budget_check(arr, 3, 4, 100, 32, 2048) == RK_EINVAL);
    CHECK(strstr(rk_last_error(), "3 entries") != NULL);
    arr[0] = 10, arr[1] = 190;
    CHECK(rk_budget_check(arr, 4, 4, 100, 32, 2048) == RK_EINVAL);
    CHECK(strstr(rk_last_error(), "below the minimum") != NULL);
    arr[0] = 3000, arr[1] = -2800;
    CHECK(rk_budget_check(arr, 4, 4, 100, -5000, 2048) == RK_ELIMIT);
    arr[0] = 100, arr[1] = 101;
    CHECK(rk_budget_check(arr, 4, 4, 100, 32, 2048) == RK_EINVAL);
    CHECK(strstr(rk_last_error(), "sum") != NULL);

    /* Weights and sizes whose shares cannot be computed are refused, not
     * cast from NaN or inf: 1e308 + 1e308 overflows the sum (a loop of 2^33
     * steps followed), 1e308 × the spare positions the share, and 2 × 2^30
     * positions an int. */
    const double huge[2] = {1e308, 1e308};
    CHECK(rk_budget_from_weights(huge, 2, 10, 0, b) == RK_EINVAL);
    CHECKF(strstr(rk_last_error(), "sum") != NULL, "%s", rk_last_error());
    CHECK(rk_budget_from_weights(huge, 1, 10, 0, b) == RK_EINVAL);
    const double inf[2] = {1.0, INFINITY};
    CHECK(rk_budget_from_weights(inf, 2, 10, 0, b) == RK_EINVAL);
    CHECK(rk_budget_uniform(2, 1 << 30, 0, b) == RK_EINVAL);
    CHECK(rk_budget_pyramid(2, 1 << 30, 32, 20.0, b) == RK_EINVAL);
    CHECK(rk_budget_pyramid(4, 64, 32, INFINITY, b) == RK_EINVAL);
    CHECKF(strstr(rk_last_error(), "beta") != NULL, "%s", rk_last_error());
    CHECK(rk_budget_uniform(2, 1 << 29, 0, b) == RK_OK && b[0] == 1 << 29);
}

static void test_selection(void)
{
    int32_t keep[64], heap[64];
    float pooled[64];

    const float s[8] = {0.1f, 0.9f, 0.3f, 0.9f, 0.2f, 0.8f, 0.0f, 0.5f};
    CHECK(rk_select_top(s, 8, 3, keep, heap) == 3);
    CHECK(keep[0] == 1 && keep[1] == 3 && keep[2] == 5);
    CHECK(rk_select_top(s, 8, 1, keep, heap) == 1 && keep[0] == 1); /* tie: earlier */
    CHECK(rk_select_top(s, 8, 20, keep, heap) == 8 && keep[7] == 7);

    const float m[7] = {0, 5, 0, 0, 0, 0, 7};
    float out[7];
    rk_maxpool1d(m, 7, 3, out);
    CHECK(out[0] == 5 && out[1] == 5 && out[2] == 5 && out[3] == 0 && out[4] == 0 &&
          out[5] == 7 && out[6] == 7);

    /* SnapKV: 20 positions, window 4, budget 8: the 4 best pooled prefix
     * positions plus 16..19. A spike at 9 pools over 8..10 (kernel 3). */
    float score[20] = {0};
    score[9] = 1.0f;
    score[2] = 0.5f;
    int got = rk_snapkv_select(score, 20, 4, 8, 3, keep, pooled, heap);
    CHECK(got == 8);
    const int32_t want[8] = {1, 8, 9, 10, 16, 17, 18, 19};
    CHECKF(memcmp(keep, want, sizeof want) == 0, "%d %d %d %d %d %d %d %d", keep[0], keep[1],
           keep[2], keep[3], keep[4], keep[5], keep[6], keep[7]);
    CHECK(rk_snapkv_select(score, 6, 4, 8, 3, keep, pooled, heap) == 6 && keep[5] == 5);

    got = rk_streaming_select(100, 10, 4, keep);
    CHECK(got == 10 && keep[0] == 0 && keep[3] == 3 && keep[4] == 94 && keep[9] == 99);
    CHECK(rk_streaming_select(5, 10, 4, keep) == 5 && keep[4] == 4);

    float acc[12] = {0};
    acc[0] = 3.0f, acc[5] = 2.0f, acc[7] = 1.0f;
    got = rk_h2o_select(acc, 12, 5, 2, keep, heap);
    CHECK(got == 5 && keep[0] == 0 && keep[1] == 5 && keep[2] == 7 && keep[3] == 10 &&
          keep[4] == 11);
}

/* rk_flops_count against a hand count on pythia-nano's shape (4 layers,
 * d = 160, 2 heads, f = 640, V = 8192): a 100-token prompt and 5 new
 * tokens, so 4 decode steps. Per token and layer the projections and MLP
 * are 8·160² + 4·160·640 = 614400, of which QKV 6·160² = 153600; the
 * causal prompt sees K(100, 100) = 5050 key rows, and the last layer runs
 * past its attention on the logits' row only, so the prefill is
 * 4·(100·153600 + 4·160·5050) + 3·100·460800 + 460800 + 2·160·8192 =
 * 215690240 for every policy. */
static void test_flops(void)
{
    const rk_config nano = {.n_layers = 4, .hidden = 160, .n_heads = 2, .head_dim = 80,
                            .ffn = 640, .vocab = 8192};
    rk_limits lim = {.max_prompt = 100, .max_new_tokens = 5, .prefill_chunk = 100,
                     .logits_rows = 1};
    const double prefill = 215690240, step = 4 * 614400 + 2 * 160 * 8192;

    /* The full cache: steps attend 101..104 rows, 4·160·410 a layer. */
    rk_flops f = rk_flops_count(&nano, &lim, 100, 5);
    CHECKF(f.prefill == prefill && f.compress == 0 && f.decode == 4 * step + 4 * 4 * 160 * 410.0,
           "full: %.0f %.0f %.0f", f.prefill, f.compress, f.decode);
    /* The KV a step reads: 102.5 rows on average, 4 layers, K and V of 2
     * heads of 80 fp32; int8 rows in groups of 16 are 80 codes + 5 × 4
     * bytes of scale and minimum. */
    rk_kv_cache cache = {.layers = 4, .heads = 2, .head_dim = 80, .group = 16};
    CHECK(rk_kv_step_bytes(&cache, &lim.kv, 100, 5) == 102.5 * 4 * 2 * 2 * 320);
    for (int l = 0; l < 4; l++)
        cache.format[l] = RK_KV_INT8;
    CHECK(rk_kv_step_bytes(&cache, &lim.kv, 100, 5) == 102.5 * 4 * 2 * 2 * 100);
    /* Each layer at its own format (rank precision): one int4 layer, 40 +
     * 20 bytes a row. */
    cache.format[3] = RK_KV_INT4;
    CHECK(rk_kv_step_bytes(&cache, &lim.kv, 100, 5) == 102.5 * 2 * 2 * (3 * 100 + 60));
    for (int l = 0; l < 4; l++)
        cache.format[l] = RK_KV_FP32;
    CHECK(rk_kv_step_bytes(&cache, &lim.kv, 100, 1) == 0);

    /* SnapKV at 40: the 32-query window sees K(32, 100) = 2704 rows,
     * (2·160 + 2·2)·2704 to score; pooling 2·100·6, selection of 40 of 100
     * 2·100·⌈log2 40⌉ = 1200; steps attend 41..44 rows. */
    rk_kv_options opt = {.method = "snapkv", .average = 40};
    CHECK(rk_kv_policy_make(&opt, 4, &lim.kv) == RK_OK);
    f = rk_flops_count(&nano, &lim, 100, 5);
    CHECKF(f.prefill == prefill && f.compress == 4 * (324.0 * 2704 + 1200 + 1200) &&
               f.decode == 4 * step + 4 * 4 * 160 * 170.0,
           "snapkv: %.0f %.0f %.0f", f.prefill, f.compress, f.decode);
    /* SnapKV's steps attend 41..44 rows of the 40 kept. */
    CHECK(rk_kv_step_bytes(&cache, &lim.kv, 100, 5) == 42.5 * 4 * 2 * 2 * 320);
    CHECK(rk_flops_total(&f) == f.prefill + f.compress + f.decode);

    /* rankkv-dynamic adds, per layer, the 64-token attention matrices
     * (160·64·65) and two heads' A·Aᵀ and eigenvalues ((10/3)·64³ each). */
    opt.method = "rankkv-dynamic";
    CHECK(rk_kv_policy_make(&opt, 4, &lim.kv) == RK_OK);
    lim.rank_len = 64;
    const double svd = 160.0 * 64 * 65 + 2 * 10.0 / 3.0 * 64 * 64 * 64;
    f = rk_flops_count(&nano, &lim, 100, 5);
    CHECKF(fabs(f.compress - 4 * (324.0 * 2704 + 2400 + svd)) < 1e-6 * f.compress,
           "dynamic: %.0f", f.compress);
}

int main(void)
{
    test_beta();
    test_budgets();
    test_cap();
    test_selection();
    test_flops();
    return rk_test_finish("test_kv_policy");
}
