/* RankKV's budget strategies (core/rank_budget.c), the compiled profiles'
 * tables against them, and model identity: a profile refuses a model it
 * was not calibrated on. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_budget.h"
#include "kv_policy.h"
#include "model.h"
#include "profile.h"
#include "rank_budget.h"
#include "rk_test.h"
#include "targets.h"
#include "textio.h"

static long sum_of(const int *b, int n)
{
    long s = 0;
    for (int i = 0; i < n; i++)
        s += b[i];
    return s;
}

static int min_of(const int *b, int n)
{
    int m = b[0];
    for (int i = 1; i < n; i++)
        m = b[i] < m ? b[i] : m;
    return m;
}

static int by_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Whether A and B hold the same budgets in some order. */
static int same_multiset(const int *a, const int *b, int n)
{
    int x[RK_MAX_LAYERS], y[RK_MAX_LAYERS];
    memcpy(x, a, (size_t)n * sizeof(int));
    memcpy(y, b, (size_t)n * sizeof(int));
    qsort(x, (size_t)n, sizeof(int), by_int);
    qsort(y, (size_t)n, sizeof(int), by_int);
    return memcmp(x, y, (size_t)n * sizeof(int)) == 0;
}

static void strategies(void)
{
    enum { L = 24 };
    double rank[L];
    /* A hump like a real model's: ranks rise to the middle layers. */
    for (int l = 0; l < L; l++)
        rank[l] = 100 + 300 * sin(3.14159 * (l + 0.5) / L) + 7 * (l % 3);
    const int averages[] = {40, 128, 512, 1024};
    int prop[L], b[L];
    for (size_t a = 0; a < sizeof averages / sizeof averages[0]; a++) {
        const int avg = averages[a];
        for (int s = 0; s < RK_RANK_N_STRATEGIES; s++) {
            const rk_rank_allocation alloc = {.strategy = (rk_rank_strategy)s};
            CHECKF(rk_budget_from_ranks(&alloc, rank, L, avg, 32, b) == RK_OK, "%s: %s",
                   rk_rank_strategy_name((rk_rank_strategy)s), rk_last_error());
            CHECKF(sum_of(b, L) == (long)L * avg, "%s avg %d: sum %ld",
                   rk_rank_strategy_name((rk_rank_strategy)s), avg, sum_of(b, L));
            CHECK(min_of(b, L) >= 32);
        }
        const rk_rank_allocation p = {.strategy = RK_RANK_PROPORTIONAL};
        CHECK(rk_budget_from_ranks(&p, rank, L, avg, 32, prop) == RK_OK);
        /* Higher rank, no smaller budget; the spare positions in proportion. */
        for (int i = 0; i < L; i++)
            for (int j = 0; j < L; j++)
                if (rank[i] > rank[j])
                    CHECK(prop[i] >= prop[j]);
        double rsum = 0;
        for (int l = 0; l < L; l++)
            rsum += rank[l];
        for (int l = 0; l < L; l++)
            CHECK(fabs((prop[l] - 32) - (double)L * (avg - 32) * rank[l] / rsum) < 1.0);

        const rk_rank_allocation pw1 = {.strategy = RK_RANK_POWER, .power = 1.0};
        CHECK(rk_budget_from_ranks(&pw1, rank, L, avg, 32, b) == RK_OK);
        CHECK(memcmp(b, prop, sizeof prop) == 0);

        const rk_rank_allocation inv = {.strategy = RK_RANK_INVERSE};
        CHECK(rk_budget_from_ranks(&inv, rank, L, avg, 32, b) == RK_OK);
        CHECK(same_multiset(b, prop, L));
        for (int i = 0; i < L; i++)
            for (int j = 0; j < L; j++)
                if (rank[i] > rank[j])
                    CHECK(b[i] <= b[j]);

        const rk_rank_allocation r1 = {.strategy = RK_RANK_RANDOM, .seed = 5};
        int b2[L];
        CHECK(rk_budget_from_ranks(&r1, rank, L, avg, 32, b) == RK_OK);
        CHECK(rk_budget_from_ranks(&r1, rank, L, avg, 32, b2) == RK_OK);
        CHECK(same_multiset(b, prop, L));
        CHECK(memcmp(b, b2, sizeof b) == 0);
        const rk_rank_allocation r2 = {.strategy = RK_RANK_RANDOM, .seed = 6};
        CHECK(rk_budget_from_ranks(&r2, rank, L, avg, 32, b2) == RK_OK);
        if (avg > 40)
            CHECK(memcmp(b, b2, sizeof b) != 0);
    }

    /* Softmax: a huge temperature is uniform; a small one puts the spare
     * positions on the highest-rank layers. */
    const rk_rank_allocation hot = {.strategy = RK_RANK_SOFTMAX, .temperature = 1e9};
    CHECK(rk_budget_from_ranks(&hot, rank, L, 256, 32, b) == RK_OK);
    for (int l = 0; l < L; l++)
        CHECK(b[l] == 256);
    const rk_rank_allocation cold = {.strategy = RK_RANK_SOFTMAX, .temperature = 5};
    CHECK(rk_budget_from_ranks(&cold, rank, L, 256, 32, b) == RK_OK);
    int top = 0;
    for (int l = 1; l < L; l++)
        top = rank[l] > rank[top] ? l : top;
    CHECKF(b[top] > 256 * 4, "coldest softmax gives the top layer %d", b[top]);

    /* Adaptive: the layers of a quartile share one budget (±1 of rounding),
     * and a higher tier gets more. */
    const rk_rank_allocation ad = {.strategy = RK_RANK_ADAPTIVE};
    CHECK(rk_budget_from_ranks(&ad, rank, L, 256, 32, b) == RK_OK);
    int distinct = 0, seen[RK_MAX_LAYERS];
    for (int l = 0; l < L; l++) {
        int dup = 0;
        for (int k = 0; k < distinct; k++)
            dup |= abs(seen[k] - b[l]) <= 1;
        if (!dup)
            seen[distinct++] = b[l];
    }
    CHECKF(distinct == 4, "adaptive made %d budget levels", distinct);

    /* Refusals. */
    double bad[3] = {100, 0, 50};
    const rk_rank_allocation p = {.strategy = RK_RANK_PROPORTIONAL};
    CHECK(rk_budget_from_ranks(&p, bad, 3, 64, 32, b) != RK_OK);
    bad[1] = NAN;
    CHECK(rk_budget_from_ranks(&p, bad, 3, 64, 32, b) != RK_OK);
    bad[1] = INFINITY;
    CHECK(rk_budget_from_ranks(&p, bad, 3, 64, 32, b) != RK_OK);
    /* Ranks whose weights overflow, and parameters that are not finite or
     * below zero: errors, not NaN shares cast to int (ranks of 1e308 made
     * a loop of 2^33 steps) nor a silent fall back to the defaults. */
    const double huge[2] = {1e308, 1e308};
    for (int s = 0; s < RK_RANK_N_STRATEGIES; s++) {
        const rk_rank_allocation alloc = {.strategy = (rk_rank_strategy)s};
        CHECKF(rk_budget_from_ranks(&alloc, huge, 2, 64, 32, b) != RK_OK, "%s",
               rk_rank_strategy_name((rk_rank_strategy)s));
    }
    const rk_rank_allocation bad_params[] = {
        {.strategy = RK_RANK_SOFTMAX, .temperature = NAN},
        {.strategy = RK_RANK_SOFTMAX, .temperature = INFINITY},
        {.strategy = RK_RANK_SOFTMAX, .temperature = -1},
        {.strategy = RK_RANK_POWER, .power = NAN},
        {.strategy = RK_RANK_POWER, .power = INFINITY},
        {.strategy = RK_RANK_POWER, .power = -2},
        {.strategy = RK_RANK_PROPORTIONAL, .power = NAN},
        {.strategy = RK_RANK_ADAPTIVE, .tiers = -4},
    };
    for (size_t i = 0; i < sizeof bad_params / sizeof bad_params[0]; i++) {
        CHECKF(rk_budget_from_ranks(&bad_params[i], rank, L, 256, 32, b) == RK_EINVAL,
               "parameters %zu accepted", i);
        CHECKF(strstr(rk_last_error(), "temperature") || strstr(rk_last_error(), "power") ||
                   strstr(rk_last_error(), "tiers"),
               "%s", rk_last_error());
    }
    const rk_rank_allocation steep = {.strategy = RK_RANK_POWER, .power = 200};
    CHECK(rk_budget_from_ranks(&steep, rank, L, 256, 32, b) == RK_EINVAL);
    CHECKF(strstr(rk_last_error(), "overflow") != NULL, "%s", rk_last_error());
    rk_rank_strategy s;
    CHECK(rk_rank_strategy_parse("inverse", &s) == RK_OK && s == RK_RANK_INVERSE);
    CHECK(rk_rank_strategy_parse("uniform", &s) != RK_OK);
    CHECK(strstr(rk_last_error(), "proportional") != NULL);
}

/* Each compiled profile's tables are what the strategy code makes of its
 * ranks, so the header and the runtime cannot disagree. */
/* A header is C that can be edited by hand: a table row below the minimum
 * or off the total is refused, not handed to the plan. */
static void edited_table(void)
{
    const rk_profile *p = rk_compiled_profiles[0];
    const size_t n = (size_t)RK_RANK_N_STRATEGIES * RK_PROFILE_N_AVERAGES * p->layers;
    int *table = malloc(n * sizeof *table), got[RK_MAX_LAYERS];
    CHECK(table != NULL);
    if (!table)
        return;
    rk_profile edited = *p;
    edited.budgets = table;
    const rk_rank_allocation alloc = {.strategy = RK_RANK_PROPORTIONAL};
    memcpy(table, p->budgets, n * sizeof *table);
    table[0] = p->min_budget - 1;
    table[1] += 1 - p->min_budget + p->budgets[0];
    CHECK(rk_profile_budgets(&edited, &alloc, 128, p->min_budget, got) == RK_ECONFIG);
    memcpy(table, p->budgets, n * sizeof *table);
    table[0] += 1;
    CHECK(rk_profile_budgets(&edited, &alloc, 128, p->min_budget, got) == RK_ECONFIG &&
          strstr(rk_last_error(), "sum"));
    memcpy(table, p->budgets, n * sizeof *table);
    table[0] = -2147483647;
    CHECK(rk_profile_budgets(&edited, &alloc, 128, p->min_budget, got) == RK_ECONFIG);
    memcpy(table, p->budgets, n * sizeof *table);
    CHECK(rk_profile_budgets(&edited, &alloc, 128, p->min_budget, got) == RK_OK);
    free(table);
}

static void profiles(void)
{
    static const int averages[] = RK_PROFILE_AVERAGES;
    CHECK(rk_n_compiled_profiles >= 1);
    for (int i = 0; i < rk_n_compiled_profiles; i++) {
        const rk_profile *p = rk_compiled_profiles[i];
        int want[RK_MAX_LAYERS], got[RK_MAX_LAYERS];
        CHECK(p->layers >= 1 && p->layers <= RK_MAX_LAYERS && p->samples >= 1);
        for (int l = 0; l < p->layers; l++) {
            CHECK(p->rank_mean[l] >= 1 && p->rank_mean[l] <= p->seq_len);
            double hm = 0;
            for (int h = 0; h < p->heads; h++)
                hm += p->head_rank[l * p->heads + h] / p->heads;
            CHECKF(fabs(hm - p->rank_mean[l]) < 1e-9 * p->rank_mean[l],
                   "%s layer %d: head mean %g, layer mean %g", p->name, l, hm, p->rank_mean[l]);
        }
        for (int s = 0; s < RK_RANK_N_STRATEGIES; s++)
            for (int a = 0; a < RK_PROFILE_N_AVERAGES; a++) {
                const rk_rank_allocation alloc = {.strategy = (rk_rank_strategy)s};
                CHECK(rk_budget_from_ranks(&alloc, p->rank_mean, p->layers, averages[a],
                                           p->min_budget, want) == RK_OK);
                const int *table =
                    p->budgets + ((size_t)s * RK_PROFILE_N_AVERAGES + a) * p->layers;
                CHECKF(memcmp(want, table, (size_t)p->layers * sizeof(int)) == 0,
                       "%s: table %s/%d differs from the strategy code", p->name,
                       rk_rank_strategy_name((rk_rank_strategy)s), averages[a]);
                CHECK(rk_profile_budgets(p, &alloc, averages[a], p->min_budget, got) == RK_OK);
                CHECK(memcmp(want, got, (size_t)p->layers * sizeof(int)) == 0);
            }
        /* Off the table: the same code on the profile's ranks. */
        const rk_rank_allocation pw = {.strategy = RK_RANK_POWER, .power = 3};
        CHECK(rk_profile_budgets(p, &pw, 300, 16, got) == RK_OK);
        CHECK(rk_budget_from_ranks(&pw, p->rank_mean, p->layers, 300, 16, want) == RK_OK);
        CHECK(memcmp(want, got, (size_t)p->layers * sizeof(int)) == 0);
    }
    edited_table();
}

/* pythia-nano's identity finds its profile; the same files under a config
 * that marks random weights are another model, which the profile refuses
 * at load. */
static void identity(void)
{
    const char *nano = RK_MODELS_DIR "/pythia-nano";
    rk_identity id;
    CHECKF(rk_identity_of(nano, &id) == RK_OK, "%s", rk_last_error());
    CHECK(strcmp(id.name, "pythia-nano") == 0 && id.layers == 4 && id.heads == 2);
    const rk_profile *p = rk_profile_find(&id);
    CHECKF(p != NULL, "%s", rk_last_error());
    if (!p)
        return;
    rk_identity again;
    CHECK(rk_identity_of(RK_MODELS_DIR "/pythia-nano/", &again) == RK_OK && again.hash == id.hash);

    char dir[] = "/tmp/rankkv-identity-XXXXXX", path[4096], src[4096];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(src, sizeof src, "%s/model.safetensors", nano);
    CHECK(symlink(src, path) == 0);
    char *cfg;
    size_t len;
    snprintf(src, sizeof src, "%s/config.json", nano);
    CHECK(rk_read_file(src, 1 << 20, &cfg, &len) == RK_OK);
    char *brace = strrchr(cfg, '}');
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "%.*s,\n  \"rankkv_random_weights_seed\": 7\n}\n", (int)(brace - cfg), cfg);
    fclose(f);
    free(cfg);

    rk_identity other;
    CHECK(rk_identity_of(dir, &other) == RK_OK);
    CHECK(other.hash != id.hash);
    CHECK(rk_profile_find(&other) == NULL);
    CHECK(strstr(rk_last_error(), "no RankKV profile") != NULL);

    const rk_ops *ops = rk_cpu_ops();
    rk_kv_options opt = {.method = "rankkv", .average = 64, .profile = p};
    rk_limits lim = {.max_prompt = 256, .max_new_tokens = 8, .prefill_chunk = 256,
                     .logits_rows = 1, .kv_format = ops->kv_format};
    CHECKF(rk_kv_policy_make(&opt, 4, &lim.kv) == RK_OK, "%s", rk_last_error());
    rk_model *m = NULL;
    CHECK(rk_model_load(dir, ops, &lim, &m) != RK_OK && m == NULL);
    CHECKF(strstr(rk_last_error(), "calibrated on another model") != NULL, "%s",
           rk_last_error());
    CHECKF(rk_model_load(nano, ops, &lim, &m) == RK_OK, "%s", rk_last_error());
    rk_model_free(m);

    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);

    /* Policy refusals: rankkv without a profile, with another layer count,
     * with explicit budgets; the dynamic policy without rank measurement. */
    rk_kv_policy pol;
    rk_kv_options none = {.method = "rankkv", .average = 64};
    CHECK(rk_kv_policy_make(&none, 4, &pol) != RK_OK);
    CHECK(rk_kv_policy_make(&opt, 6, &pol) != RK_OK);
    int budgets[4] = {64, 64, 64, 64};
    rk_kv_options expl = opt;
    expl.budgets = budgets;
    expl.n_budgets = 4;
    CHECK(rk_kv_policy_make(&expl, 4, &pol) != RK_OK);
    rk_kv_options dyn = {.method = "rankkv-dynamic", .average = 64};
    CHECK(rk_kv_policy_make(&dyn, 4, &lim.kv) == RK_OK);
    CHECK(rk_model_load(nano, ops, &lim, &m) != RK_OK);
    CHECK(strstr(rk_last_error(), "RANKKV_DYNAMIC") != NULL);
}

/* pyramidkv-rankkv: PyramidKV's shares above the window times the rank
 * weights, renormalised, the window kept; checked against a hand count and
 * against the pyramid it must equal when every rank is the same. */
static void pyramid_ranks(void)
{
    /* Two layers, ranks 1 and 3, average 132, window 32, beta 20: the
     * pyramid's shares of s = 100 are 195 and 5; times the ranks, 195 and
     * 15, sharing 200 positions: 185.71 and 14.29, the leftover one to the
     * larger remainder, then the window: 218 and 46. Inverse swaps the rank
     * weights: 585 and 5, 198.31 and 1.69, so 230 and 34. */
    const double two[2] = {1, 3};
    int b[8], want[8];
    rk_rank_allocation prop = {.strategy = RK_RANK_PROPORTIONAL};
    CHECK(rk_budget_pyramid_ranks(&prop, two, 2, 132, 32, 20, b) == RK_OK);
    CHECKF(b[0] == 218 && b[1] == 46, "proportional: %d %d", b[0], b[1]);
    rk_rank_allocation inv = {.strategy = RK_RANK_INVERSE};
    CHECK(rk_budget_pyramid_ranks(&inv, two, 2, 132, 32, 20, b) == RK_OK);
    CHECKF(b[0] == 230 && b[1] == 34, "inverse: %d %d", b[0], b[1]);

    const double same[8] = {300, 300, 300, 300, 300, 300, 300, 300};
    CHECK(rk_budget_pyramid(8, 256, 32, 20, want) == RK_OK);
    for (int s = 0; s < RK_RANK_N_STRATEGIES; s++) {
        rk_rank_allocation a = {.strategy = (rk_rank_strategy)s};
        CHECKF(rk_budget_pyramid_ranks(&a, same, 8, 256, 32, 20, b) == RK_OK, "%s: %s",
               rk_rank_strategy_name(a.strategy), rk_last_error());
        CHECKF(memcmp(b, want, sizeof want) == 0, "%s on equal ranks is not the pyramid",
               rk_rank_strategy_name(a.strategy));
    }

    /* Every strategy hands out exactly layers x average, each layer at
     * least the window, at averages down to one above the window. */
    const double rank[8] = {210, 480, 350, 260, 500, 300, 220, 410};
    for (int s = 0; s < RK_RANK_N_STRATEGIES; s++)
        for (int avg = 33; avg <= 1024; avg = avg * 2 + 7) {
            rk_rank_allocation a = {.strategy = (rk_rank_strategy)s};
            CHECKF(rk_budget_pyramid_ranks(&a, rank, 8, avg, 32, 20, b) == RK_OK, "%s %d: %s",
                   rk_rank_strategy_name(a.strategy), avg, rk_last_error());
            CHECKF(sum_of(b, 8) == 8L * avg && min_of(b, 8) >= 32, "%s %d: sum %ld min %d",
                   rk_rank_strategy_name(a.strategy), avg, sum_of(b, 8), min_of(b, 8));
        }
    /* Random moves the rank weights under the schedule: seeds differ, the
     * same seed repeats. */
    rk_rank_allocation r1 = {.strategy = RK_RANK_RANDOM, .seed = 1}, r2 = r1;
    r2.seed = 2;
    int again[8];
    CHECK(rk_budget_pyramid_ranks(&r1, rank, 8, 512, 32, 20, b) == RK_OK);
    CHECK(rk_budget_pyramid_ranks(&r1, rank, 8, 512, 32, 20, again) == RK_OK);
    CHECK(memcmp(b, again, sizeof b) == 0);
    CHECK(rk_budget_pyramid_ranks(&r2, rank, 8, 512, 32, 20, again) == RK_OK);
    CHECK(memcmp(b, again, sizeof b) != 0);
    CHECK(rk_budget_pyramid_ranks(&prop, rank, 8, 32, 32, 20, b) == RK_EINVAL);
    CHECK(rk_budget_pyramid_ranks(&prop, rank, 8, 64, 32, 0.5, b) == RK_EINVAL);

    /* The policy: the nano profile's ranks under the pyramid, by name. */
    rk_identity id;
    const rk_profile *p = NULL;
    CHECK(rk_identity_of(RK_MODELS_DIR "/pythia-nano", &id) == RK_OK &&
          (p = rk_profile_find(&id)) != NULL);
    if (!p)
        return;
    CHECK(rk_kv_needs_profile("pyramidkv-rankkv") && rk_kv_needs_profile("rankkv") &&
          !rk_kv_needs_profile("pyramidkv") && !rk_kv_needs_profile("nonsense"));
    rk_kv_policy pol;
    rk_kv_options opt = {.method = "pyramidkv-rankkv", .average = 64, .profile = p,
                         .rank = {.strategy = RK_RANK_INVERSE}};
    CHECKF(rk_kv_policy_make(&opt, 4, &pol) == RK_OK, "%s", rk_last_error());
    CHECK(strcmp(rk_kv_policy_name(&pol), "pyramidkv-rankkv") == 0 && pol.method == RK_KV_SNAPKV &&
          pol.profile == p);
    CHECK(rk_budget_pyramid_ranks(&opt.rank, p->rank_mean, 4, 64, RK_KV_WINDOW, RK_KV_BETA,
                                  want) == RK_OK);
    CHECK(memcmp(pol.budget, want, 4 * sizeof(int)) == 0);
    CHECK(rk_kv_policy_check(&pol, 4, 1 << 20) == RK_OK);
    rk_kv_options none = {.method = "pyramidkv-rankkv", .average = 64};
    CHECK(rk_kv_policy_make(&none, 4, &pol) != RK_OK);
    CHECK(strstr(rk_last_error(), "pyramidkv-rankkv takes its budgets") != NULL);
    int budgets[4] = {64, 64, 64, 64};
    rk_kv_options expl = opt;
    expl.budgets = budgets;
    expl.n_budgets = 4;
    CHECK(rk_kv_policy_make(&expl, 4, &pol) != RK_OK);
}

int main(void)
{
    strategies();
    pyramid_ranks();
    profiles();
    identity();
    printf("%d checks, %d failed\n", rk_test_checks, rk_test_failures);
    return rk_test_failures ? 1 : 0;
}
