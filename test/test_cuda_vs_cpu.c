/* The CUDA target (fp16) against the CPU target (fp32) on the Pythia-2.8B
 * shape with random weights: the last-position logits of a 256-token prompt
 * agree to a relative L2 error of 1e-2, and 16 greedy steps pick the same
 * tokens. usage: test_cuda_vs_cpu MODEL_DIR; the checkpoint is written there
 * with rankkv-make-random-model when the directory has none (5.6 GB). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "sampler.h"
#include "target_test.h"

enum { PROMPT = 256, STEPS = 16 };

static double rel_l2(const float *ref, const float *x, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double d = (double)x[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_cuda_vs_cpu MODEL_DIR\n");
        return 2;
    }
    const rk_ops *gpu = rk_test_require_target("cuda");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    if (access(path, R_OK) != 0) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s/rankkv-make-random-model' --preset pythia-2.8b --out '%s'",
                 RK_BIN_DIR, argv[1]);
        printf("%s\n", cmd);
        fflush(stdout);
        CHECKF(system(cmd) == 0, "%s failed", cmd);
    }
    rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = STEPS, .prefill_chunk = PROMPT,
                     .logits_rows = 1};
    rk_model *ref = NULL, *dev = NULL;
    lim.kv_format = rk_cpu_ops()->kv_format;
    rk_status st = rk_model_load(argv[1], rk_cpu_ops(), &lim, &ref);
    CHECKF(st == RK_OK, "cpu: %s", rk_last_error());
    lim.kv_format = gpu->kv_format;
    if (st == RK_OK) {
        st = rk_model_load(argv[1], gpu, &lim, &dev);
        CHECKF(st == RK_OK, "cuda: %s", rk_last_error());
    }
    if (st != RK_OK) {
        rk_model_free(ref);
        return rk_test_finish("test_cuda_vs_cpu");
    }

    const int V = ref->cfg.vocab;
    int32_t prompt[PROMPT];
    for (int i = 0; i < PROMPT; i++)
        prompt[i] = (int32_t)((i * 7919 + 13) % V);
    rk_seq seq_ref, seq_dev;
    rk_seq_reset(&seq_ref);
    rk_seq_reset(&seq_dev);
    CHECK(rk_model_prefill(ref, &seq_ref, prompt, PROMPT) == RK_OK);
    CHECK(rk_model_prefill(dev, &seq_dev, prompt, PROMPT) == RK_OK);
    double err = rel_l2(rk_model_logits(ref, 0), rk_model_logits(dev, 0), V);
    printf("prompt of %d tokens: relative L2 error of the last logits %.3e\n", PROMPT, err);
    CHECKF(err <= 1e-2, "relative L2 %.3e", err);

    int same = 0;
    double worst = 0;
    for (int t = 0; t < STEPS; t++) {
        int32_t a = rk_argmax(rk_model_logits(ref, 0), V);
        int32_t b = rk_argmax(rk_model_logits(dev, 0), V);
        if (a != b)
            break;
        same++;
        if (t + 1 < STEPS) {
            if (rk_model_forward(ref, &seq_ref, &a, 1) != RK_OK || rk_model_forward(dev, &seq_dev, &b, 1) != RK_OK)
                break;
            double e = rel_l2(rk_model_logits(ref, 0), rk_model_logits(dev, 0), V);
            worst = e > worst ? e : worst;
        }
    }
    printf("greedy: %d/%d steps identical, worst relative L2 error while decoding %.3e\n", same,
           STEPS, worst);
    CHECK(same == STEPS);
    CHECKF(worst <= 1e-2, "relative L2 while decoding %.3e", worst);
    rk_model_free(dev);
    rk_model_free(ref);
    return rk_test_finish("test_cuda_vs_cpu");
}
