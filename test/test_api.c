/* The public API (include/rankkv.h) on the bundled pythia-nano, CPU target:
 * greedy generation equals the core's own greedy loop, the callback stops
 * it, two handles live in one process with their own errors, a text's
 * score equals a plain forward's NLL, a KV dtype shrinks the plan, and bad
 * calls are refused with a message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rankkv.h"
#include "rk_test.h"
#include "sampler.h"
#include "targets.h"
#include "tokenizer.h"

#define NANO RK_MODELS_DIR "/pythia-nano"
#define PROMPT "The ship sailed"
enum { NEW = 20 };

typedef struct {
    int32_t ids[64];
    int n, stop_after;
} collected;

static int collect(void *user, int32_t id, const char *bytes, size_t len)
{
    collected *c = user;
    (void)bytes;
    (void)len;
    c->ids[c->n++] = id;
    return c->stop_after && c->n == c->stop_after;
}

/* The core's greedy continuation of PROMPT, NEW tokens, into IDS. */
static void core_greedy(int32_t *ids)
{
    rk_limits lim = {.max_prompt = 64, .max_new_tokens = NEW, .prefill_chunk = 64,
                     .logits_rows = 1, .kv_format = RK_KV_FP32};
    rk_model *m;
    rk_tokenizer *tok;
    int32_t *prompt;
    size_t n;
    CHECK(rk_model_load(NANO, rk_cpu_ops(), &lim, &m) == RK_OK);
    CHECK(rk_tok_load(NANO "/tokenizer.json", &tok) == RK_OK);
    CHECK(rk_tok_encode(tok, PROMPT, strlen(PROMPT), &prompt, &n) == RK_OK);
    rk_seq s;
    rk_seq_reset(&s);
    CHECK(rk_model_prefill(m, &s, prompt, (int)n) == RK_OK);
    ids[0] = rk_argmax(rk_model_logits(m, 0), m->cfg.vocab);
    for (int i = 1; i < NEW; i++)
        CHECK(rk_model_forward_argmax(m, &s, &ids[i - 1], 1, &ids[i]) == RK_OK);
    free(prompt);
    rk_tok_free(tok);
    rk_model_free(m);
}

/* The NLL of every token of TEXT after its first, from one forward. */
static double core_nll(const char *text, long *scored)
{
    rk_tokenizer *tok;
    int32_t *ids;
    size_t n;
    CHECK(rk_tok_load(NANO "/tokenizer.json", &tok) == RK_OK);
    CHECK(rk_tok_encode(tok, text, strlen(text), &ids, &n) == RK_OK);
    rk_limits lim = {.max_prompt = (int)n, .max_new_tokens = 0, .prefill_chunk = (int)n,
                     .logits_rows = (int)n, .kv_format = RK_KV_FP32};
    rk_model *m;
    CHECK(rk_model_load(NANO, rk_cpu_ops(), &lim, &m) == RK_OK);
    rk_seq s;
    rk_seq_reset(&s);
    CHECK(rk_model_forward(m, &s, ids, (int)n) == RK_OK);
    double sum = 0, t = 0;
    for (size_t p = 0; p + 1 < n; p++) {
        CHECK(rk_nll(rk_model_logits(m, (int)p), m->cfg.vocab, ids[p + 1], &t) == RK_OK);
        sum += t;
    }
    *scored = (long)n - 1;
    rk_model_free(m);
    rk_tok_free(tok);
    free(ids);
    return sum;
}

int main(void)
{
    rankkv_options o;
    rankkv_options_default(&o);
    o.max_prompt = 64;
    o.max_new_tokens = 2 * NEW;

    size_t wb = 0, ab = 0;
    char err[256];
    CHECK(rankkv_plan(NANO, &o, NULL, &wb, &ab, err, sizeof err) == RANKKV_OK && wb > 0 && ab > 0);

    rankkv *a = NULL, *b = NULL;
    CHECKF(rankkv_open(NANO, &o, &a) == RANKKV_OK, "%s", rankkv_last_error(a));
    rankkv_options compressed = o;
    compressed.kv = "snapkv";
    compressed.kv_budget = 32;
    CHECKF(rankkv_open(NANO, &compressed, &b) == RANKKV_OK, "%s", rankkv_last_error(b));
    CHECK(rankkv_memory_bytes(a) >= wb + ab);

    /* Greedy: the core's tokens; a callback that returns non-zero stops. */
    int32_t want[NEW];
    core_greedy(want);
    collected c = {.n = 0};
    int made = 0;
    CHECK(rankkv_generate(a, PROMPT, strlen(PROMPT), NEW, NULL, collect, &c, &made) == RANKKV_OK);
    CHECK(made == NEW && c.n == NEW && memcmp(c.ids, want, sizeof want) == 0);
    collected stop = {.stop_after = 5};
    CHECK(rankkv_generate(b, PROMPT, strlen(PROMPT), NEW, NULL, collect, &stop, &made) ==
          RANKKV_OK);
    CHECK(made == 5 && stop.n == 5);

    /* Sampling repeats with its seed. */
    rankkv_sampling s;
    rankkv_sampling_default(&s);
    s.temperature = 0.8f;
    s.top_k = 40;
    s.seed = 7;
    collected s1 = {.n = 0}, s2 = {.n = 0};
    CHECK(rankkv_generate(a, PROMPT, strlen(PROMPT), NEW, &s, collect, &s1, NULL) == RANKKV_OK);
    CHECK(rankkv_generate(a, PROMPT, strlen(PROMPT), NEW, &s, collect, &s2, NULL) == RANKKV_OK);
    CHECK(s1.n == s2.n && memcmp(s1.ids, s2.ids, sizeof s1.ids) == 0);

    /* Errors stay with their handle. */
    CHECK(rankkv_generate(a, "", 0, NEW, NULL, NULL, NULL, NULL) == RANKKV_EINVAL);
    CHECK(strstr(rankkv_last_error(a), "empty") && rankkv_last_error(b)[0] == '\0');
    CHECK(rankkv_generate(b, PROMPT, strlen(PROMPT), 1000, NULL, NULL, NULL, NULL) ==
          RANKKV_ELIMIT);
    CHECK(strstr(rankkv_last_error(b), "plan allows") && strstr(rankkv_last_error(a), "empty"));
    s.top_p = 2.0f;
    CHECK(rankkv_generate(a, PROMPT, strlen(PROMPT), NEW, &s, NULL, NULL, NULL) == RANKKV_EINVAL);
    CHECK(rankkv_reset(a) == RANKKV_OK && rankkv_last_error(a)[0] == '\0');

    /* Score: the full cache's decode steps give a plain forward's NLL. */
    const char *text = "The ship sailed out of the harbour on the morning tide, and the crew "
                       "watched the coast grow small behind them.";
    long want_tokens, got_tokens = 0;
    const double want_nll = core_nll(text, &want_tokens);
    double got_nll = 0;
    CHECK(rankkv_score(a, text, strlen(text), &got_nll, &got_tokens) == RANKKV_OK);
    printf("score: %.6f over %ld tokens, plain forward %.6f over %ld\n", got_nll, got_tokens,
           want_nll, want_tokens);
    CHECK(got_tokens == want_tokens && fabs(got_nll - want_nll) <= 1e-4 * want_nll);
    CHECK(rankkv_score(a, "The", 3, &got_nll, &got_tokens) == RANKKV_EINVAL);

    /* A handle that did not open says why and refuses every call. */
    rankkv_options negative = o;
    negative.max_new_tokens = -3;
    CHECK(rankkv_plan(NANO, &negative, NULL, NULL, NULL, err, sizeof err) == RANKKV_ELIMIT &&
          strstr(err, "max_new_tokens -3"));

    rankkv *bad = NULL;
    CHECK(rankkv_open(RK_MODELS_DIR "/no-such-model", &o, &bad) != RANKKV_OK && bad);
    CHECK(strstr(rankkv_last_error(bad), "no-such-model") != NULL);
    CHECK(rankkv_generate(bad, PROMPT, strlen(PROMPT), 4, NULL, NULL, NULL, NULL) ==
          RANKKV_EINVAL);
    /* The KV dtype: int4 rows (60 B of 80 dims) in place of fp32's 320 B
     * shrink the arena by the difference; a group must divide head_dim. */
    rankkv_options int4 = o;
    int4.kv_dtype = "int4";
    size_t ab4 = 0;
    CHECK(rankkv_plan(NANO, &int4, NULL, NULL, &ab4, err, sizeof err) == RANKKV_OK);
    CHECKF(ab - ab4 >= 2 * 4 * 104 * 2 * (320 - 60), "arena %zu with fp32 rows, %zu with int4",
           ab, ab4);
    int4.kv_group = 7;
    CHECK(rankkv_plan(NANO, &int4, NULL, NULL, NULL, err, sizeof err) == RANKKV_EINVAL &&
          strstr(err, "does not divide head_dim 80"));
    int4.kv_dtype = "int3";
    CHECK(rankkv_plan(NANO, &int4, NULL, NULL, NULL, err, sizeof err) == RANKKV_EINVAL &&
          strstr(err, "unknown KV dtype 'int3'"));
    o.kv = "no-such-policy";
    CHECK(rankkv_plan(NANO, &o, NULL, NULL, NULL, err, sizeof err) == RANKKV_EINVAL &&
          strstr(err, "no-such-policy"));

    rankkv_close(bad);
    rankkv_close(a);
    rankkv_close(b);
    return rk_test_finish("test_api");
}
