/* The CUDA target (fp16) against the CPU target (fp32) on the Pythia-2.8B
 * shape with random weights: the last-position logits of a 256-token prompt
 * agree to a relative L2 error of 1e-2, and 16 greedy steps pick the same
 * tokens. usage: test_cuda_vs_cpu MODEL_DIR; the checkpoint is written there
 * with rankkv-make-random-model when the directory has none (5.6 GB). */
#include <stdlib.h>
#include <string.h>

#include "greedy_compare.h"
#include "model.h"
#include "target_test.h"

enum { PROMPT = 256, STEPS = 16 };

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
    const rk_greedy_agreement r = rk_greedy_compare(ref, dev, prompt, PROMPT, STEPS);
    printf("prompt of %d tokens: relative L2 error of the last logits %.3e\n", PROMPT,
           r.prompt_err);
    CHECKF(r.prompt_err <= 1e-2, "relative L2 %.3e", r.prompt_err);
    printf("greedy: %d/%d steps identical, worst relative L2 error while decoding %.3e\n", r.same,
           STEPS, r.worst);
    CHECK(r.same == STEPS);
    CHECKF(r.worst <= 1e-2, "relative L2 while decoding %.3e", r.worst);
    rk_model_free(dev);
    rk_model_free(ref);
    return rk_test_finish("test_cuda_vs_cpu");
}
