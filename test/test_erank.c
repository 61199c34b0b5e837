/* Effective ranks against HF: test_erank MODEL_DIR TARGET. The per-head
 * effective rank of the causal attention of goldens.json's 512-token
 * WikiText sequence must match sequences.wiki.effective_rank_per_layer_head
 * within 1e-3 relative on the CPU (fp32, LAPACK SVD) and 1e-2 on CUDA (fp16
 * activations, cuSOLVER on A·Aᵀ). Also checks the dynamic policy's
 * budgets are the strategy's on those ranks. */
#include <math.h>
#include <string.h>

#include "golden.h"
#include "model.h"
#include "rank.h"
#include "rank_budget.h"
#include "rk_test.h"
#include "target_test.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_erank MODEL_DIR cpu|cuda\n");
        return 2;
    }
    const char *dir = argv[1], *target = argv[2];
    rk_test_require_path(dir);
    const rk_ops *ops = rk_test_require_target(target);
    const rk_rank_ops *rank = rk_rank_find(target);
    CHECK(rank != NULL);
    if (!rank)
        return 1;
    const double tol = strcmp(target, "cpu") == 0 ? 1e-3 : 1e-2;

    cJSON *g = golden_load(dir);
    CHECK(g != NULL);
    if (!g)
        return 1;
    int n, rows;
    int32_t *ids = golden_ints(golden_path(g, "sequences", "wiki", "input_ids"), &n);
    const cJSON *want = golden_path(g, "sequences", "wiki", "effective_rank_per_layer_head");
    rows = cJSON_GetArraySize(want);

    rk_limits lim = {.max_prompt = n, .max_new_tokens = 0, .prefill_chunk = n, .logits_rows = 1,
                     .kv_format = ops->kv_format, .rank = rank, .rank_len = n};
    rk_model *m;
    if (rk_model_load(dir, ops, &lim, &m) != RK_OK) {
        fprintf(stderr, "load: %s\n", rk_last_error());
        return 1;
    }
    const int L = m->cfg.n_layers, H = m->cfg.n_heads;
    CHECK(rows == L);
    double *ranks = calloc((size_t)L * H, sizeof *ranks);
    const double t0 = rk_now();
    rk_status st = rk_model_measure_ranks(m, ids, n, ranks);
    const double secs = rk_now() - t0;
    CHECKF(st == RK_OK, "%s", rk_last_error());
    double worst = 0;
    int worst_l = 0, worst_h = 0;
    for (int l = 0; l < L && l < rows; l++) {
        const cJSON *row = cJSON_GetArrayItem(want, l);
        CHECK(cJSON_GetArraySize(row) == H);
        for (int h = 0; h < H; h++) {
            const double ref = cJSON_GetArrayItem(row, h)->valuedouble;
            const double rel = fabs(ranks[l * H + h] - ref) / ref;
            if (rel > worst)
                worst = rel, worst_l = l, worst_h = h;
            CHECKF(rel <= tol, "layer %d head %d: %.4f vs HF %.4f (rel %.2e > %.0e)", l, h,
                   ranks[l * H + h], ref, rel, tol);
        }
    }
    printf("%s on %s: %d x %d heads, %d tokens: worst relative error %.2e (layer %d head %d), "
           "%.2f s\n",
           dir, target, L, H, n, worst, worst_l, worst_h, secs);

    /* The same measurement, as rankkv-dynamic's prefill makes it, drives
     * the budgets: they must be the proportional strategy's on these ranks. */
    rk_model_free(m);
    rk_kv_options opt = {.method = "rankkv-dynamic", .average = 64};
    rk_limits dyn = {.max_prompt = n, .max_new_tokens = 4, .prefill_chunk = n, .logits_rows = 1,
                     .kv_format = ops->kv_format, .rank = rank, .rank_len = n};
    CHECKF(rk_kv_policy_make(&opt, L, &dyn.kv) == RK_OK, "%s", rk_last_error());
    if (rk_model_load(dir, ops, &dyn, &m) != RK_OK) {
        fprintf(stderr, "load dynamic: %s\n", rk_last_error());
        return 1;
    }
    rk_seq seq;
    rk_seq_reset(&seq);
    CHECKF(rk_model_prefill(m, &seq, ids, n) == RK_OK, "%s", rk_last_error());
    double mean[RK_MAX_LAYERS];
    int expect[RK_MAX_LAYERS];
    rk_erank_layer_means(ranks, L, H, mean);
    const rk_rank_allocation prop = {.strategy = RK_RANK_PROPORTIONAL};
    CHECK(rk_budget_from_ranks(&prop, mean, L, 64, m->lim.kv.window, expect) == RK_OK);
    for (int l = 0; l < L; l++) {
        CHECKF(m->lim.kv.budget[l] == expect[l], "layer %d: dynamic budget %d, expected %d", l,
               m->lim.kv.budget[l], expect[l]);
        CHECK(seq.rows[l] == expect[l]);
    }
    int32_t next;
    CHECKF(rk_model_forward_argmax(m, &seq, &ids[0], 1, &next) == RK_OK, "%s", rk_last_error());
    rk_model_free(m);
    free(ranks);
    free(ids);
    cJSON_Delete(g);
    printf("%d checks, %d failed\n", rk_test_checks, rk_test_failures);
    return rk_test_failures ? 1 : 0;
}
