/* After start-up the runtime must not allocate: this test interposes the
 * malloc family and mmap for the whole process (OpenBLAS included), runs a
 * prefill and a decode loop, and counts the calls made meanwhile. */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "alloc_count.h"
#include "generate_loop.h"
#include "model.h"
#include "rk_test.h"
#include "rank.h"
#include "sampler.h"
#include "targets.h"

/* Loads the model in DIR with LIM, warms up, and counts the allocator
 * calls during 2 prefills + 80 decode steps, which must be none. */
static void check_steady_state(const char *dir, const rk_limits *lim, rk_sampler *s,
                               const int32_t *prompt, const char *what)
{
    rk_model *m;
    rk_status st = rk_model_load(dir, rk_cpu_ops(), lim, &m);
    CHECKF(st == RK_OK, "%s: %s", what, rk_last_error());
    if (st != RK_OK)
        return;
    /* A warm-up lets the BLAS library set up its thread pool and buffers. */
    CHECK(rk_test_generate(m, s, prompt, 200, 40));
    atomic_store(&calls, 0);
    atomic_store(&counting, 1);
    const int ok =
        rk_test_generate(m, s, prompt, 200, 40) && rk_test_generate(m, s, prompt, 17, 40);
    atomic_store(&counting, 0);
    CHECK(ok);
    printf("%s: allocations during 2 prefills + 80 decode steps: %ld\n", what,
           atomic_load(&calls));
    CHECKF(atomic_load(&calls) == 0, "%s", what);
    rk_model_free(m);
}

int main(void)
{
    atomic_store(&counting, 1);
    free(malloc(16));
    atomic_store(&counting, 0);
    CHECKF(atomic_load(&calls) == 1, "the malloc hook is not active (%ld calls)", atomic_load(&calls));
    atomic_store(&calls, 0);

    rk_config nano_cfg;
    CHECK(rk_config_load(RK_MODELS_DIR "/pythia-nano/config.json", &nano_cfg) == RK_OK);
    rk_sampler s;
    rk_sampling cfg = {.temperature = 0.8f, .top_k = 40, .top_p = 0.9f, .seed = 1};
    CHECK(rk_sampler_init(&s, &cfg, nano_cfg.vocab) == RK_OK);
    int32_t prompt[200];
    for (int i = 0; i < 200; i++)
        prompt[i] = (int32_t)((i * 7919) % nano_cfg.vocab);

    /* The full cache, then the compressing policies: scoring, selection,
     * gather and eviction work in the arena too, and so does the dynamic
     * build's SVD of every prompt (LAPACK with its workspace planned);
     * each in every KV storage format (rank measurement reads fp32 keys
     * only), whose rows are quantized on append and read back a tile at a
     * time on the stack; KIVI's flushes and gathers too, and smartkv's
     * placement and demotions (its prompt passes in one call). */
    const char *methods[] = {"full", "snapkv", "h2o", "streamingllm", "rankkv", "rankkv-dynamic"};
    rk_identity nano;
    CHECK(rk_identity_of(RK_MODELS_DIR "/pythia-nano", &nano) == RK_OK);
    for (int f = 0; f < RK_KV_N_FORMATS; f++)
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
            const int dynamic = strcmp(methods[i], "rankkv-dynamic") == 0;
            if (dynamic && f != RK_KV_FP32)
                continue;
            const int full = strcmp(methods[i], "full") == 0;
            rk_limits lim = {.max_prompt = 200, .max_new_tokens = 40,
                             .prefill_chunk = full && f != RK_KV_SMART ? 64 : 200,
                             .logits_rows = 1,
                             .kv_format = (rk_kv_format)f,
                             .rank = dynamic ? rk_cpu_rank_ops() : NULL, .rank_len = 200};
            rk_kv_options o = {.method = methods[i], .average = full ? 0 : 48, .window = 8,
                               .profile = rk_profile_find(&nano)};
            CHECK(rk_kv_policy_make(&o, 4, &lim.kv) == RK_OK);
            if (rk_kv_policy_stores(&lim.kv, (rk_kv_format)f) != RK_OK)
                continue; /* h2o and streamingllm over KIVI and smartkv are refused */
            char what[64];
            snprintf(what, sizeof what, "%s, %s", methods[i], rk_kv_format_name((rk_kv_format)f));
            check_steady_state(RK_MODELS_DIR "/pythia-nano", &lim, &s, prompt, what);
        }
    /* Rank precision: layers in int2, int4 and int8 at once (pythia-mini's
     * ranks span more than a factor of two; pythia-nano's do not, and its
     * rank cache is uniform), a layer's rows through its own format. */
    const char *mini = RK_SHARED_DIR "/models/pythia-mini";
    rk_identity mini_id;
    if (access(mini, R_OK) != 0 || rk_identity_of(mini, &mini_id) != RK_OK) {
        printf("SKIP rank precision: %s is absent\n", mini);
    } else {
        for (int i = 0; i < 2; i++) {
            rk_limits lim = {.max_prompt = 200, .max_new_tokens = 40,
                             .prefill_chunk = i ? 200 : 64, .logits_rows = 1,
                             .kv_format = RK_KV_INT4, .kv_precision = RK_KV_RANK,
                             .kv_profile = rk_profile_find(&mini_id)};
            rk_kv_options o = {.method = i ? "snapkv" : "full", .average = i ? 48 : 0,
                               .window = 8};
            CHECK(rk_kv_policy_make(&o, 24, &lim.kv) == RK_OK);
            check_steady_state(mini, &lim, &s, prompt, i ? "snapkv, int4 rank" : "full, int4 rank");
        }
    }
    rk_sampler_free(&s);
    return rk_test_finish("test_no_alloc");
}
