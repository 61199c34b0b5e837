/* The CUDA target (fp16) against the CPU target (fp32) at head sizes its
 * attention kernels are not built for and run padded to the next built
 * size (kernels/attention.h): random-weight models of two layers with
 * head_dim 24, 40, 72 and 136 (multiples of 8) and 50 and 250 (not, so rows
 * start only 4-byte aligned), written with rankkv-make-random-model under
 * DIR. For the full cache, SnapKV and H2O: the last-position logits of a
 * 200-token prompt agree to a relative L2 error of 1e-2, and 8 greedy steps
 * pick the same tokens, each step's logits as close. A quantized cache at
 * such a size is refused when the plan is made. usage: test_cuda_head_dims DIR */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "greedy_compare.h"
#include "kv_policy.h"
#include "model.h"
#include "target_test.h"

enum { PROMPT = 200, STEPS = 8, BUDGET = 96 };

/* GROUP: channels per scale of a quantized cache (0: the default). */
static rk_status load(const char *dir, const rk_ops *ops, const char *method, rk_kv_format format,
                      int group, rk_model **m)
{
    rk_kv_options o = {.method = method, .average = strcmp(method, "full") ? BUDGET : 0};
    rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = STEPS, .prefill_chunk = PROMPT,
                     .logits_rows = 1, .kv_format = format, .kv_group = group};
    rk_status st = rk_kv_policy_make(&o, 2, &lim.kv);
    return st == RK_OK ? rk_model_load(dir, ops, &lim, m) : st;
}

/* The two targets on the model in DIR under METHOD's fp16 cache. */
static void compare(const char *dir, int head_dim, const rk_ops *gpu, const char *method)
{
    rk_model *ref = NULL, *dev = NULL;
    rk_status st = load(dir, rk_cpu_ops(), method, rk_cpu_ops()->kv_format, 0, &ref);
    CHECKF(st == RK_OK, "head_dim %d %s, cpu: %s", head_dim, method, rk_last_error());
    if (st == RK_OK) {
        st = load(dir, gpu, method, gpu->kv_format, 0, &dev);
        CHECKF(st == RK_OK, "head_dim %d %s, cuda: %s", head_dim, method, rk_last_error());
    }
    if (st != RK_OK) {
        rk_model_free(ref);
        return;
    }
    int32_t prompt[PROMPT];
    for (int i = 0; i < PROMPT; i++)
        prompt[i] = (int32_t)((i * 7919 + 13 * head_dim) % ref->cfg.vocab);
    const rk_greedy_agreement r = rk_greedy_compare(ref, dev, prompt, PROMPT, STEPS);
    printf("head_dim %3d %-6s: prompt logits relative L2 %.3e; %d/%d greedy steps identical, "
           "worst relative L2 %.3e\n",
           head_dim, method, r.prompt_err, r.same, STEPS, r.worst);
    CHECKF(r.prompt_err <= 1e-2, "head_dim %d %s: prompt logits relative L2 %.3e", head_dim,
           method, r.prompt_err);
    CHECKF(r.same == STEPS, "head_dim %d %s: greedy tokens differ at step %d", head_dim, method,
           r.same);
    CHECKF(r.worst <= 1e-2, "head_dim %d %s: decode logits relative L2 %.3e", head_dim, method,
           r.worst);
    rk_model_free(dev);
    rk_model_free(ref);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_cuda_head_dims DIR\n");
        return 2;
    }
    const rk_ops *gpu = rk_test_require_target("cuda");
    static const struct {
        int head_dim, heads;
    } shapes[] = {{24, 4}, {40, 4}, {50, 4}, {72, 4}, {136, 2}, {250, 4}};
    static const char *const methods[] = {"full", "snapkv", "h2o"};
    mkdir(argv[1], 0777);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int d = shapes[i].head_dim, hidden = d * shapes[i].heads;
        char dir[4096], cmd[8192];
        snprintf(dir, sizeof dir, "%s/head-dim-%d", argv[1], d);
        snprintf(cmd, sizeof cmd,
                 "'%s/rankkv-make-random-model' --preset pythia-nano-shape --layers 2 "
                 "--hidden %d --heads %d --ffn %d --vocab 512 --max-pos 512 --seed %d "
                 "--out '%s' > /dev/null",
                 RK_BIN_DIR, hidden, shapes[i].heads, 4 * hidden, d, dir);
        if (system(cmd) != 0) {
            CHECKF(0, "%s failed", cmd);
            continue;
        }
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++)
            compare(dir, d, gpu, methods[m]);
        /* Groups of 2 channels divide every even head_dim: only the
         * kernels' sizes refuse it. */
        rk_model *q = NULL;
        const rk_status st = load(dir, gpu, "full", RK_KV_INT8, 2, &q);
        CHECKF(st == RK_ECONFIG && strstr(rk_last_error(), "fp16 cache"),
               "head_dim %d: an int8 cache on CUDA gave %d (%s)", d, (int)st,
               st == RK_OK ? "loaded" : rk_last_error());
        rk_model_free(q);
    }
    return rk_test_finish("test_cuda_head_dims");
}
