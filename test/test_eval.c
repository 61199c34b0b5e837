/* rankkv-eval with the full cache equals a plain forward over the same
 * tokens: each window's last T tokens scored through the decode step give the
 * perplexity that one prefill of the whole window gives for them (relative
 * difference < 1e-4 on the CPU target). The document is this repository's
 * README, so the test always runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "model.h"
#include "rk_test.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

enum { CONTEXT = 384, TAIL = 64, WINDOWS = 4 };

#define NANO RK_MODELS_DIR "/pythia-nano"
#define DOC RK_SOURCE_DIR "/README.md"

/* Mean NLL of tokens [C - T, C) of the first WINDOWS windows, each window
 * one prefill that keeps every row's logits. */
static double reference_nll(void)
{
    rk_tokenizer *tok;
    char *text;
    size_t len, n;
    int32_t *ids;
    CHECK(rk_tok_load(NANO "/tokenizer.json", &tok) == RK_OK);
    CHECK(rk_read_file(DOC, SIZE_MAX, &text, &len) == RK_OK);
    len = rk_text_universal_newlines(text, len);
    CHECK(rk_tok_encode(tok, text, len, &ids, &n) == RK_OK);
    CHECKF(n >= (size_t)CONTEXT * WINDOWS, "README has %zu tokens", n);
    rk_limits lim = {.max_prompt = CONTEXT, .max_new_tokens = 0, .prefill_chunk = CONTEXT,
                     .logits_rows = CONTEXT, .kv_format = RK_KV_FP32};
    rk_model *m;
    CHECK(rk_model_load(NANO, rk_cpu_ops(), &lim, &m) == RK_OK);
    double nll = 0;
    for (int w = 0; w < WINDOWS; w++) {
        const int32_t *win = ids + (size_t)w * CONTEXT;
        rk_seq seq;
        rk_seq_reset(&seq);
        CHECK(rk_model_forward(m, &seq, win, CONTEXT) == RK_OK);
        for (int p = CONTEXT - TAIL - 1; p < CONTEXT - 1; p++) {
            double t = NAN;
            CHECK(rk_nll(rk_model_logits(m, p), m->cfg.vocab, win[p + 1], &t) == RK_OK);
            nll += t;
        }
    }
    rk_model_free(m);
    rk_tok_free(tok);
    free(text);
    free(ids);
    return nll / (WINDOWS * TAIL);
}

/* A scored id is never fed to the model, so rk_nll itself must refuse one
 * outside the vocabulary (it read past the row) and non-finite logits (the
 * perplexity became NaN with exit status 0). */
static void nll_refuses_bad_input(void)
{
    float row[4] = {0.5f, -1.0f, 2.0f, 0.0f};
    double nll = NAN;
    CHECK(rk_nll(row, 4, 2, &nll) == RK_OK);
    const double want = log(exp(0.5) + exp(-1.0) + exp(2.0) + exp(0.0)) - 2.0;
    CHECKF(fabs(nll - want) < 1e-12, "nll %.15g, want %.15g", nll, want);
    CHECK(rk_nll(row, 4, 4, &nll) == RK_EINVAL && strstr(rk_last_error(), "vocabulary"));
    CHECK(rk_nll(row, 4, -1, &nll) == RK_EINVAL);
    CHECK(rk_nll(row, 4, 1 << 30, &nll) == RK_EINVAL);
    row[3] = NAN;
    CHECK(rk_nll(row, 4, 2, &nll) == RK_EINVAL && strstr(rk_last_error(), "not finite"));
    row[3] = INFINITY;
    CHECK(rk_nll(row, 4, 2, &nll) == RK_EINVAL);

    rk_tokenizer *tok;
    CHECK(rk_tok_load(NANO "/tokenizer.json", &tok) == RK_OK);
    const int n = rk_tok_vocab_size(tok);
    CHECK(rk_tok_check_vocab(tok, n) == RK_OK);
    CHECK(rk_tok_check_vocab(tok, n - 1) == RK_ECONFIG && strstr(rk_last_error(), "vocab_size"));
    rk_tok_free(tok);
}

int main(void)
{
    nll_refuses_bad_input();
    const double want = reference_nll();
    char json[] = "/tmp/rk_test_eval_XXXXXX";
    int fd = mkstemp(json);
    CHECK(fd >= 0);
    close(fd);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "'%s/rankkv-eval' --model '%s' --dataset readme='%s' --context %d --tail %d "
             "--max-windows %d --json '%s'",
             RK_BIN_DIR, NANO, DOC, CONTEXT, TAIL, WINDOWS, json);
    printf("%s\n", cmd);
    fflush(stdout);
    CHECK(system(cmd) == 0);
    char *text;
    size_t len;
    cJSON *j = NULL;
    if (rk_read_file(json, SIZE_MAX, &text, &len) == RK_OK) {
        j = cJSON_Parse(text);
        free(text);
    }
    unlink(json);
    const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0);
    CHECKF(r != NULL, "no results in the JSON");
    if (r) {
        const double got = cJSON_GetObjectItem(r, "mean_nll")->valuedouble;
        const double rel = fabs(exp(got) - exp(want)) / exp(want);
        printf("harness ppl %.6f, plain forward %.6f, relative difference %.2e\n", exp(got),
               exp(want), rel);
        CHECK(cJSON_GetObjectItem(r, "tokens_scored")->valueint == WINDOWS * TAIL);
        CHECK(rel < 1e-4);
        CHECK(cJSON_GetObjectItem(r, "kv_cache_mb")->valuedouble > 0);
    }
    cJSON_Delete(j);
    return rk_test_finish("test_eval");
}
