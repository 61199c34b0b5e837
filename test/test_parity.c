/* Parity of a target with HF transformers (goldens.json): per-token NLL,
 * argmax, first/last logits on three sequences, and the greedy continuations
 * of three prompts. usage: test_parity MODEL_DIR [cpu|cuda]
 *
 * The CPU target computes in fp32 like the reference and must match it
 * closely. The CUDA target computes in fp16 (fp32 accumulation), so its
 * bounds are those of a half-precision run: mean and max |dNLL|, argmax
 * agreement; its logits and greedy runs are reported, not required equal. */
#include <math.h>
#include <string.h>

#include "golden.h"
#include "model.h"
#include "rk_test.h"
#include "sampler.h"
#include "target_test.h"

enum { CHUNK = 128 };

typedef struct {
    int exact; /* fp32 target: every bound below is the strict one */
    double max_dnll, mean_dnll, min_argmax;
} bounds;

static bounds B;

static void check_sequence(rk_model *m, const cJSON *g, const char *name)
{
    int n, nn, na, nf, nl;
    const cJSON *seq = golden_path(g, "sequences", name, NULL);
    int32_t *ids = golden_ints(cJSON_GetObjectItem(seq, "input_ids"), &n);
    double *nll = golden_doubles(cJSON_GetObjectItem(seq, "next_token_nll"), &nn);
    int32_t *arg = golden_ints(cJSON_GetObjectItem(seq, "argmax"), &na);
    double *first = golden_doubles(cJSON_GetObjectItem(seq, "logits_first"), &nf);
    double *last = golden_doubles(cJSON_GetObjectItem(seq, "logits_last"), &nl);
    const int V = m->cfg.vocab;
    CHECK(nn == n - 1 && na == n && nf == V && nl == V);

    double max_dnll = 0, sum_dnll = 0, max_dfirst = 0, max_dlast = 0;
    int argmax_equal = 0;
    rk_seq s;
    rk_seq_reset(&s);
    for (int i = 0; i < n; i += CHUNK) {
        int k = n - i < CHUNK ? n - i : CHUNK;
        rk_status st = rk_model_forward(m, &s, ids + i, k);
        CHECKF(st == RK_OK, "%s", rk_last_error());
        if (st != RK_OK)
            break;
        for (int r = 0; r < k; r++) {
            const float *row = rk_model_logits(m, r);
            int p = i + r;
            argmax_equal += rk_argmax(row, V) == arg[p];
            if (p + 1 < n) {
                double t = NAN;
                CHECKF(rk_nll(row, V, ids[p + 1], &t) == RK_OK, "%s", rk_last_error());
                double d = fabs(t - nll[p]);
                max_dnll = fmax(max_dnll, d);
                sum_dnll += d;
            }
            for (int v = 0; p == 0 && v < V; v++)
                max_dfirst = fmax(max_dfirst, fabs(row[v] - first[v]));
            for (int v = 0; p == n - 1 && v < V; v++)
                max_dlast = fmax(max_dlast, fabs(row[v] - last[v]));
        }
    }
    double mean_dnll = sum_dnll / (n - 1);
    printf("  %-6s %3d tokens: mean|dNLL| %.2e max|dNLL| %.2e  argmax %d/%d  "
           "max|dlogit| first %.2e last %.2e\n",
           name, n, mean_dnll, max_dnll, argmax_equal, n, max_dfirst, max_dlast);
    CHECKF(max_dnll <= B.max_dnll, "%s: max |dNLL| %g", name, max_dnll);
    CHECKF(mean_dnll <= B.mean_dnll, "%s: mean |dNLL| %g", name, mean_dnll);
    CHECKF(argmax_equal >= B.min_argmax * n, "%s: argmax %d/%d", name, argmax_equal, n);
    if (B.exact)
        CHECKF(max_dfirst <= 1e-3 && max_dlast <= 1e-3, "%s: logits %g %g", name, max_dfirst,
               max_dlast);
    free(ids), free(nll), free(arg), free(first), free(last);
}

static void check_greedy(rk_model *m, const cJSON *g)
{
    const cJSON *e;
    int cases = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(g, "greedy"))
    {
        int np, no;
        int32_t *prompt = golden_ints(cJSON_GetObjectItem(e, "prompt_ids"), &np);
        int32_t *want = golden_ints(cJSON_GetObjectItem(e, "output_ids"), &no);
        rk_seq seq;
        rk_seq_reset(&seq);
        rk_status st = rk_model_prefill(m, &seq, prompt, np);
        int same = 0;
        /* As the generate app decodes: the recorded one-token step and, where
         * the target has one, its device argmax. */
        int32_t next = st == RK_OK ? rk_argmax(rk_model_logits(m, 0), m->cfg.vocab) : -1;
        for (int t = 0; st == RK_OK && t < no; t++) {
            if (next != want[t])
                break;
            same++;
            if (t + 1 < no)
                st = rk_model_forward_argmax(m, &seq, &next, 1, &next);
        }
        printf("  greedy '%s': %d/%d tokens identical\n",
               cJSON_GetObjectItem(e, "prompt")->valuestring, same, no);
        CHECKF(st == RK_OK, "%s", rk_last_error());
        CHECK(no == 48);
        if (B.exact)
            CHECK(same == no);
        cases++;
        free(prompt), free(want);
    }
    CHECK(cases == 3);
}

static const float *sort_logits;

static int cmp_desc(const void *a, const void *b)
{
    float x = sort_logits[*(const int32_t *)a], y = sort_logits[*(const int32_t *)b];
    return (x < y) - (x > y);
}

/* A target's device top-k against the same logits copied back: the same set
 * of ids (ties at the K-th value aside) with the same values. */
static void check_top_k(rk_model *m, const cJSON *g)
{
    int n;
    int32_t *ids = golden_ints(cJSON_GetObjectItem(golden_path(g, "sequences", "prompt", NULL),
                                                   "input_ids"), &n);
    const int V = m->cfg.vocab, ks[] = {1, 2, 5, 40, RK_TOP_K_MAX};
    int32_t *order = malloc((size_t)V * sizeof *order);
    float *logits = malloc((size_t)V * sizeof *logits);
    for (int t = 0; t < 5; t++) {
        const int k = ks[t];
        float vals[RK_TOP_K_MAX];
        int32_t got[RK_TOP_K_MAX];
        /* Both runs end with the same one-token step, so the same kernels
         * produce the same logits. */
        rk_seq seq;
        rk_seq_reset(&seq);
        CHECK(rk_model_prefill(m, &seq, ids, n - 1) == RK_OK);
        CHECK(rk_model_forward(m, &seq, ids + n - 1, 1) == RK_OK);
        memcpy(logits, rk_model_logits(m, 0), (size_t)V * sizeof *logits);
        rk_seq_reset(&seq);
        CHECK(rk_model_prefill(m, &seq, ids, n - 1) == RK_OK);
        CHECK(rk_model_forward_top_k(m, &seq, ids + n - 1, 1, k, vals, got) == RK_OK);
        for (int i = 0; i < V; i++)
            order[i] = i;
        sort_logits = logits;
        qsort(order, (size_t)V, sizeof *order, cmp_desc);
        int same = 0;
        for (int i = 0; i < k; i++) {
            int found = 0;
            for (int j = 0; j < k; j++)
                found |= got[i] == order[j];
            same += found && vals[i] == logits[got[i]];
        }
        printf("  device top-%d: %d/%d ids and values as in the copied logits\n", k, same, k);
        CHECK(same == k || logits[order[k - 1]] == logits[order[k]]);
        if (k == 1)
            CHECK(got[0] == rk_argmax(logits, V));
    }
    free(order), free(logits), free(ids);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: test_parity MODEL_DIR [cpu|cuda]\n");
        return 2;
    }
    const char *target = argc == 3 ? argv[2] : "cpu";
    char path[4096];
    snprintf(path, sizeof path, "%s/goldens.json", argv[1]);
    rk_test_require_path(path);
    const rk_ops *ops = rk_test_require_target(target);
    B = ops->act_bytes == 4 ? (bounds){1, 1e-4, 1e-4, 1.0} : (bounds){0, 5e-2, 5e-3, 0.99};
    cJSON *g = golden_load(argv[1]);
    CHECK(g != NULL);
    if (!g)
        return rk_test_finish("test_parity");

    rk_limits lim = {.max_prompt = 512, .max_new_tokens = 64, .prefill_chunk = CHUNK,
                     .logits_rows = CHUNK, .kv_format = ops->kv_format};
    rk_model *m = NULL;
    rk_status st = rk_model_load(argv[1], ops, &lim, &m);
    CHECKF(st == RK_OK, "load %s: %s", argv[1], rk_last_error());
    if (m) {
        printf("%s on %s\n", argv[1], ops->name);
        check_sequence(m, g, "wiki");
        check_sequence(m, g, "moby");
        check_sequence(m, g, "prompt");
        rk_model_free(m);
    }
    rk_limits gen = {.max_prompt = 128, .max_new_tokens = 64, .prefill_chunk = 128,
                     .logits_rows = 1, .kv_format = ops->kv_format};
    st = rk_model_load(argv[1], ops, &gen, &m);
    CHECKF(st == RK_OK, "load %s: %s", argv[1], rk_last_error());
    if (st == RK_OK) {
        check_greedy(m, g);
        if (ops->top_k)
            check_top_k(m, g);
        rk_model_free(m);
    }
    cJSON_Delete(g);
    return rk_test_finish("test_parity");
}
