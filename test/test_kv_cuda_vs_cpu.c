/* CPU and CUDA select the same cache rows on pythia-mini: the same prompt
 * (the first 1024 tokens of WikiText-2 test) compressed by SnapKV,
 * PyramidKV and H2O at an average budget of 128 on both targets, over
 * the fp16 cache and over quantized ones, whose keys both targets score
 * as read back from the same codes; per layer
 * and head, the share of the CPU's kept rows that CUDA keeps too. The
 * targets' scores differ in rounding (fp32 against fp16 activations), so
 * rows near the cut-off can swap; the test requires 95 % agreement and
 * prints the measured rate. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rk_test.h"
#include "target_test.h"
#include "textio.h"
#include "tokenizer.h"

#define MINI RK_SHARED_DIR "/models/pythia-mini"
#define WIKI RK_SHARED_DIR "/data/wikitext-2/wiki.test.raw"

enum { PROMPT = 1024, AVERAGE = 128 };

static rk_model *load(const rk_ops *ops, const char *method, rk_kv_format format)
{
    rk_kv_options o = {.method = method, .average = AVERAGE};
    rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = 1, .prefill_chunk = PROMPT,
                     .logits_rows = 1, .kv_format = format};
    rk_model *m = NULL;
    if (rk_kv_policy_make(&o, 24, &lim.kv) != RK_OK ||
        rk_model_load(MINI, ops, &lim, &m) != RK_OK)
        fprintf(stderr, "%s\n", rk_last_error());
    return m;
}

static int cmp(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

int main(void)
{
    const rk_ops *cuda = rk_test_require_target("cuda");
    rk_test_require_path(MINI "/model.safetensors");
    rk_test_require_path(WIKI);
    rk_tokenizer *tok;
    char *text;
    size_t len, n;
    int32_t *ids;
    CHECK(rk_tok_load(MINI "/tokenizer.json", &tok) == RK_OK);
    CHECK(rk_read_file(WIKI, (size_t)64 << 20, &text, &len) == RK_OK);
    len = rk_text_universal_newlines(text, len < 100000 ? len : 100000);
    CHECK(rk_tok_encode(tok, text, len, &ids, &n) == RK_OK && n >= PROMPT);

    const struct {
        const char *method;
        rk_kv_format format;
    } runs[] = {{"snapkv", RK_KV_FP16}, {"pyramidkv", RK_KV_FP16}, {"h2o", RK_KV_FP16},
                {"snapkv", RK_KV_INT8}, {"h2o", RK_KV_INT4}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        const char *method = runs[i].method;
        rk_model *a = load(rk_cpu_ops(), method, runs[i].format),
                 *b = load(cuda, method, runs[i].format);
        CHECK(a && b);
        if (!a || !b)
            continue;
        rk_seq seq_a, seq_b;
        rk_seq_reset(&seq_a);
        rk_seq_reset(&seq_b);
        CHECK(rk_model_prefill(a, &seq_a, ids, PROMPT) == RK_OK);
        CHECK(rk_model_prefill(b, &seq_b, ids, PROMPT) == RK_OK);
        const int H = a->cfg.n_heads;
        long same = 0, all = 0;
        double worst = 1.0;
        int32_t *pa = malloc((size_t)H * PROMPT * sizeof *pa), *pb = malloc((size_t)H * PROMPT * sizeof *pb);
        for (int l = 0; l < a->cfg.n_layers; l++) {
            const int rows = seq_a.rows[l];
            CHECK(seq_b.rows[l] == rows);
            CHECK(rk_model_kept_positions(a, &seq_a, l, pa) == RK_OK);
            CHECK(rk_model_kept_positions(b, &seq_b, l, pb) == RK_OK);
            for (int h = 0; h < H; h++) {
                const int32_t *x = pa + (size_t)h * rows;
                int32_t *y = pb + (size_t)h * rows;
                qsort(y, (size_t)rows, sizeof *y, cmp);
                long hit = 0;
                for (int j = 0; j < rows; j++)
                    hit += bsearch(&x[j], y, (size_t)rows, sizeof *y, cmp) != NULL;
                same += hit;
                all += rows;
                if ((double)hit / rows < worst)
                    worst = (double)hit / rows;
            }
        }
        const double rate = (double)same / (double)all;
        printf("%-10s %-4s budget %d: CUDA keeps %.4f of the CPU's rows (%ld of %ld; worst head "
               "%.4f)\n",
               method, rk_kv_format_name(runs[i].format), AVERAGE, rate, same, all, worst);
        CHECK(rate >= 0.95);
        free(pa);
        free(pb);
        rk_model_free(a);
        rk_model_free(b);
    }
    free(ids);
    free(text);
    rk_tok_free(tok);
    return rk_test_finish("test_kv_cuda_vs_cpu");
}
