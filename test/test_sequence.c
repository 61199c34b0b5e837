/* A sequence apart from its model, as a speculative decoder uses one:
 * after the prompt, a step of k rows gives the logits of every row, the
 * same as k one-token steps (on CUDA it replays the recording of the k-row
 * step); truncating a sequence forgets the rejected rows, so what follows
 * equals a run that never saw them; policies that cannot roll back refuse.
 * Greedy decoding's runs of steps fed on the device, and its prompt's
 * argmax, give the ids that steps fed from the host give. A prompt's
 * last rows of logits do not depend on how many rows the model keeps.
 * usage: test_sequence cpu|cuda */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rk_test.h"
#include "sampler.h"
#include "target_test.h"

#define NANO RK_MODELS_DIR "/pythia-nano"

/* SnapKV keeps 34 of the 40 prompt rows (its window is 32). */
enum { PROMPT = 40, K = 6, NEW = 32 };

static const rk_ops *ops;

/* pythia-nano planned for a PROMPT-token prompt in chunks of CHUNK, NEW_TOKENS new tokens and
 * ROWS rows of logits, under METHOD at BUDGET. */
static rk_model *load_rows(const char *method, int budget, int chunk, int new_tokens, int rows)
{
    rk_kv_options opt = {.method = method, .average = strcmp(method, "full") ? budget : 0};
    rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = new_tokens, .prefill_chunk = chunk,
                     .logits_rows = rows, .kv_format = ops->kv_format};
    rk_model *m = NULL;
    CHECKF(rk_kv_policy_make(&opt, 4, &lim.kv) == RK_OK, "%s", rk_last_error());
    CHECKF(rk_model_load(NANO, ops, &lim, &m) == RK_OK, "%s", rk_last_error());
    return m;
}

static rk_model *load_planned(const char *method, int budget, int chunk, int new_tokens)
{
    return load_rows(method, budget, chunk, new_tokens, K);
}

static rk_model *load(const char *method, int budget)
{
    return load_planned(method, budget, PROMPT, NEW);
}


/* The logits of tokens[PROMPT..PROMPT+K) one step at a time, into WANT. */
static void one_at_a_time(rk_model *m, const int32_t *tokens, float *want)
{
    const int V = m->cfg.vocab;
    rk_seq s;
    rk_seq_reset(&s);
    CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK);
    for (int i = 0; i < K; i++) {
        CHECK(rk_model_forward(m, &s, tokens + PROMPT + i, 1) == RK_OK);
        memcpy(want + (size_t)i * V, rk_model_logits(m, 0), (size_t)V * sizeof(float));
    }
}

static void steps_and_truncate(const char *method, double tol)
{
    rk_model *m = load(method, 34);
    if (!m)
        return;
    const int V = m->cfg.vocab;
    int32_t tokens[PROMPT + K + NEW];
    for (int i = 0; i < PROMPT + K + NEW; i++)
        tokens[i] = (int32_t)((i * 7919 + 13) % V);
    float *want = malloc((size_t)K * V * sizeof(float));
    one_at_a_time(m, tokens, want);

    /* One step of K rows: every row's logits. */
    rk_seq s;
    rk_seq_reset(&s);
    CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK);
    CHECKF(rk_model_forward(m, &s, tokens + PROMPT, K) == RK_OK, "%s", rk_last_error());
    CHECK(s.n_past == PROMPT + K);
    double worst = 0;
    for (int r = 0; r < K; r++)
        worst = fmax(worst, rk_test_rel_diff(rk_model_logits(m, r), want + (size_t)r * V, V));
    printf("%s on %s: a step of %d rows against one-token steps: %.2e\n", method, ops->name, K,
           worst);
    CHECKF(worst <= tol, "%s: rows differ by %.2e", method, worst);

    /* Per-row argmax of the same step: the same kernels give the same
     * logits, so the device's argmax of each row is the host's. (Against
     * the one-token steps, fp16 rounding may flip a near tie.) */
    int32_t expect[K], ids[K];
    for (int r = 0; r < K; r++)
        expect[r] = rk_argmax(rk_model_logits(m, r), V);
    rk_seq_reset(&s);
    CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK);
    CHECK(rk_model_forward_argmax_rows(m, &s, tokens + PROMPT, K, ids) == RK_OK);
    CHECKF(memcmp(ids, expect, sizeof ids) == 0, "%s: row argmaxes differ", method);

    /* Keep 2 of the K rows, then go on: the next token's logits are those
     * of a run that saw only the kept ones. */
    CHECK(rk_seq_truncate(m, &s, PROMPT + 2) == RK_OK && s.n_past == PROMPT + 2);
    CHECK(rk_model_forward(m, &s, tokens + PROMPT + 2, 1) == RK_OK);
    CHECKF(rk_test_rel_diff(rk_model_logits(m, 0), want + 2 * (size_t)V, V) <= tol,
           "%s: after truncating, logits differ", method);
    CHECK(rk_seq_truncate(m, &s, s.n_past + 1) == RK_EINVAL);
    free(want);
    rk_model_free(m);
}

/* SnapKV's compressed prompt and the evicting methods' caches cannot be
 * rolled back into. */
static void refusals(void)
{
    rk_model *m = load("snapkv", 34);
    if (m) {
        int32_t tokens[PROMPT + 2] = {0};
        rk_seq s;
        rk_seq_reset(&s);
        CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK);
        CHECK(rk_model_forward(m, &s, tokens + PROMPT, 2) == RK_OK);
        CHECK(rk_seq_truncate(m, &s, PROMPT - 1) == RK_EINVAL &&
              strstr(rk_last_error(), "compressed prompt"));
        CHECK(s.n_past == PROMPT + 2);
        rk_model_free(m);
    }
    m = load("h2o", 24);
    if (m) {
        int32_t tokens[PROMPT + 1] = {0};
        rk_seq s;
        rk_seq_reset(&s);
        CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK);
        CHECK(rk_model_forward(m, &s, tokens + PROMPT, 1) == RK_OK);
        CHECK(rk_seq_truncate(m, &s, PROMPT) == RK_EINVAL && strstr(rk_last_error(), "evicts"));
        rk_model_free(m);
    }
}

/* Greedy runs decoded ahead (rk_model_decode_greedy, each step fed the
 * argmax the device left) give the ids of one-token steps fed from the
 * host: whole runs, which a target that records replays at once, one after
 * another (the second fed the first's last id), runs of fewer steps, and
 * from a call's middle. On a target without a device top-k both are the
 * host's argmax. */
static void greedy_runs(const char *method, int budget)
{
    /* Two whole runs and three steps in the first call, the rest of a run
     * in the second. */
    enum { GREEDY_NEW = 48, STEPS = GREEDY_NEW - 1, FIRST = 2 * RK_GREEDY_RUN + 3 };
    rk_model *m = load_planned(method, budget, PROMPT, GREEDY_NEW);
    if (!m)
        return;
    const int V = m->cfg.vocab;
    int32_t tokens[PROMPT], want[STEPS], got[STEPS];
    for (int i = 0; i < PROMPT; i++)
        tokens[i] = (int32_t)((i * 7919 + 13) % V);
    rk_seq s;
    rk_seq_reset(&s);
    CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK);
    const int32_t first = rk_argmax(rk_model_logits(m, m->n_logits - 1), V);
    int32_t next = first;
    for (int i = 0; i < STEPS; i++) {
        CHECK(rk_model_forward_argmax(m, &s, &next, 1, &next) == RK_OK);
        want[i] = next;
    }
    const rk_seq after = s;

    rk_seq_reset(&s);
    int32_t first_too = -1;
    CHECK(rk_model_prefill_argmax(m, &s, tokens, PROMPT, &first_too) == RK_OK);
    CHECKF(first_too == first, "%s: the prompt's argmax %d, from its logits %d", method,
           first_too, first);
    CHECKF(rk_model_decode_greedy(m, &s, first, FIRST, got) == RK_OK, "%s", rk_last_error());
    CHECKF(rk_model_decode_greedy(m, &s, got[FIRST - 1], STEPS - FIRST, got + FIRST) == RK_OK,
           "%s", rk_last_error());
    int same = 0;
    while (same < STEPS && got[same] == want[same])
        same++;
    printf("%s on %s: %d greedy steps in runs of %d, the same ids as one-token steps for %d\n",
           method, ops->name, STEPS, RK_GREEDY_RUN, same);
    CHECKF(same == STEPS, "%s: step %d's id differs (%d, one-token steps %d)", method, same,
           got[same < STEPS ? same : 0], want[same < STEPS ? same : 0]);
    CHECK(s.n_past == after.n_past && memcmp(s.rows, after.rows, sizeof s.rows) == 0);

    /* A whole run past the plan: the step that fits runs, then the error. */
    CHECK(rk_model_decode_greedy(m, &s, got[STEPS - 1], RK_GREEDY_RUN, got) == RK_ELIMIT);
    CHECK(s.n_past == PROMPT + GREEDY_NEW);
    rk_model_free(m);
}

/* A prompt in chunks: the argmax after its last token, found by the
 * target, is the host's of the last row of logits rk_model_prefill leaves,
 * at every chunk length. */
static void prompt_argmax_chunked(void)
{
    const int chunks[] = {PROMPT, 16, 20, 39};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        rk_model *m = load_planned("full", 0, chunks[c], NEW);
        if (!m)
            return;
        int32_t tokens[PROMPT];
        for (int i = 0; i < PROMPT; i++)
            tokens[i] = (int32_t)((i * 104729 + 7) % m->cfg.vocab);
        rk_seq s;
        rk_seq_reset(&s);
        CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK);
        const int32_t want = rk_argmax(rk_model_logits(m, m->n_logits - 1), m->cfg.vocab);
        int32_t got = -1;
        rk_seq_reset(&s);
        CHECKF(rk_model_prefill_argmax(m, &s, tokens, PROMPT, &got) == RK_OK, "%s",
               rk_last_error());
        CHECKF(got == want && s.n_past == PROMPT, "chunks of %d: argmax %d, want %d", chunks[c],
               got, want);
        rk_model_free(m);
    }
}

/* Past its attention the last layer runs on the logits' rows only: a
 * prompt's last rows of logits are those of a model that keeps every
 * row's, with one row (the one-row products on CUDA) and with K. */
static void last_layer_tail(double tol)
{
    rk_model *all = load_rows("full", 0, PROMPT, NEW, PROMPT);
    if (!all)
        return;
    const int V = all->cfg.vocab;
    int32_t tokens[PROMPT];
    for (int i = 0; i < PROMPT; i++)
        tokens[i] = (int32_t)((i * 7919 + 11) % V);
    rk_seq s;
    rk_seq_reset(&s);
    CHECK(rk_model_prefill(all, &s, tokens, PROMPT) == RK_OK && all->n_logits == PROMPT);
    const int rows[] = {1, K};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        rk_model *m = load_rows("full", 0, PROMPT, NEW, rows[r]);
        if (!m)
            break;
        rk_seq_reset(&s);
        CHECK(rk_model_prefill(m, &s, tokens, PROMPT) == RK_OK && m->n_logits == rows[r]);
        double worst = 0;
        for (int i = 0; i < m->n_logits; i++) {
            const float *got = rk_model_logits(m, i);
            const float *want = rk_model_logits(all, PROMPT - rows[r] + i);
            for (int v = 0; v < V; v++)
                worst = fmax(worst, fabs((double)got[v] - want[v]));
        }
        CHECKF(worst <= tol, "%d logits rows: max |diff| %.3g from every row's", rows[r], worst);
        rk_model_free(m);
    }
    rk_model_free(all);
}

int main(int argc, char **argv)
{
    ops = rk_test_require_target(argc > 1 ? argv[1] : "cpu");
    /* fp32 on the CPU: the k-row GEMMs sum in another order than the
     * one-row ones; fp16 activations on CUDA. */
    const double tol = strcmp(ops->name, "cpu") == 0 ? 1e-4 : 2e-2;
    steps_and_truncate("full", tol);
    steps_and_truncate("snapkv", tol);
    refusals();
    greedy_runs("full", 0);
    greedy_runs("snapkv", 34);
    greedy_runs("h2o", 24);
    greedy_runs("streamingllm", 24);
    prompt_argmax_chunked();
    last_layer_tail(tol);
    return rk_test_finish("test_sequence");
}
