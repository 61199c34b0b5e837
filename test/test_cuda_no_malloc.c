/* The CUDA target's device memory is two allocations made at start-up (the
 * weights block and the arena) and nothing afterwards: this test interposes
 * the CUDA runtime's allocators, counts the calls during load and during
 * prefills and decode steps, and checks with cudaMemGetInfo that the device's
 * free memory does not move while generating (which also covers allocations
 * that libraries make without going through these entry points). */
#define _GNU_SOURCE
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdint.h>

#include "generate_loop.h"
#include "model.h"
#include "rank.h"
#include "sampler.h"
#include "target_test.h"

static atomic_long allocs, frees;

#define FORWARD(name, ...)                                                       \
    static __typeof__(name) *real;                                               \
    if (!real)                                                                   \
        *(void **)&real = dlsym(RTLD_NEXT, #name);                               \
    if (!real)                                                                   \
        return cudaErrorUnknown;                                                 \
    return real(__VA_ARGS__)

cudaError_t cudaMalloc(void **p, size_t n)
{
    atomic_fetch_add(&allocs, 1);
    FORWARD(cudaMalloc, p, n);
}
cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t s)
{
    atomic_fetch_add(&allocs, 1);
    FORWARD(cudaMallocAsync, p, n, s);
}
cudaError_t cudaMallocManaged(void **p, size_t n, unsigned flags)
{
    atomic_fetch_add(&allocs, 1);
    FORWARD(cudaMallocManaged, p, n, flags);
}
cudaError_t cudaMallocHost(void **p, size_t n)
{
    atomic_fetch_add(&allocs, 1);
    FORWARD(cudaMallocHost, p, n);
}
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned flags)
{
    atomic_fetch_add(&allocs, 1);
    FORWARD(cudaHostAlloc, p, n, flags);
}
cudaError_t cudaMallocPitch(void **p, size_t *pitch, size_t w, size_t h)
{
    atomic_fetch_add(&allocs, 1);
    FORWARD(cudaMallocPitch, p, pitch, w, h);
}
cudaError_t cudaFree(void *p)
{
    atomic_fetch_add(&frees, 1);
    FORWARD(cudaFree, p);
}
cudaError_t cudaFreeAsync(void *p, cudaStream_t s)
{
    atomic_fetch_add(&frees, 1);
    FORWARD(cudaFreeAsync, p, s);
}

static size_t device_free(void)
{
    size_t free_b = 0, total = 0;
    cudaMemGetInfo(&free_b, &total);
    return free_b;
}

int main(void)
{
    const rk_ops *ops = rk_test_require_target("cuda");
    rk_limits lim = {.max_prompt = 300, .max_new_tokens = 48, .prefill_chunk = 128,
                     .logits_rows = 1, .kv_format = ops->kv_format};
    atomic_store(&allocs, 0);
    rk_model *m;
    rk_status st = rk_model_load(RK_MODELS_DIR "/pythia-nano", ops, &lim, &m);
    CHECKF(st == RK_OK, "%s", rk_last_error());
    if (st != RK_OK)
        return rk_test_finish("test_cuda_no_malloc");
    printf("device allocations during load: %ld (weights %zu B, arena %zu B)\n",
           atomic_load(&allocs), m->wplan.total, m->plan.total);
    CHECK(atomic_load(&allocs) == 2);

    rk_sampler s;
    rk_sampling cfg = {.temperature = 0.8f, .top_k = 40, .top_p = 0.9f, .seed = 1};
    CHECK(rk_sampler_init(&s, &cfg, m->cfg.vocab) == RK_OK);
    int32_t prompt[300];
    for (int i = 0; i < 300; i++)
        prompt[i] = (int32_t)((i * 7919) % m->cfg.vocab);
    CHECK(rk_test_generate(m, &s, prompt, 300, 48));

    atomic_store(&allocs, 0);
    atomic_store(&frees, 0);
    size_t before = device_free();
    /* Prompts of other lengths run other GEMM row buckets and chunk tails. */
    int ok = rk_test_generate(m, &s, prompt, 300, 48) && rk_test_generate(m, &s, prompt, 17, 40) && rk_test_generate(m, &s, prompt, 1, 8);
    size_t after = device_free();
    CHECK(ok);
    printf("during 3 prefills + 96 decode steps: %ld allocations, %ld frees, device free "
           "memory %zu -> %zu bytes\n",
           atomic_load(&allocs), atomic_load(&frees), before, after);
    CHECK(atomic_load(&allocs) == 0 && atomic_load(&frees) == 0);
    CHECK(before == after);

    rk_model_free(m);
    CHECK(atomic_load(&frees) == 2);

    /* rankkv-dynamic (the dynamic build's prefill): the rank measurement's
     * device buffers are arena slices and its cuSOLVER and cuBLAS handles
     * are made at load, so measuring every prompt allocates nothing either. */
    rk_kv_options dyn = {.method = "rankkv-dynamic", .average = 64};
    lim.prefill_chunk = lim.max_prompt;
    lim.rank = rk_rank_find("cuda");
    lim.rank_len = lim.max_prompt;
    CHECK(lim.rank != NULL && rk_kv_policy_make(&dyn, 4, &lim.kv) == RK_OK);
    atomic_store(&allocs, 0);
    st = rk_model_load(RK_MODELS_DIR "/pythia-nano", ops, &lim, &m);
    CHECKF(st == RK_OK, "%s", rk_last_error());
    if (st != RK_OK)
        return rk_test_finish("test_cuda_no_malloc");
    printf("rankkv-dynamic: device allocations during load: %ld\n", atomic_load(&allocs));
    atomic_store(&allocs, 0);
    atomic_store(&frees, 0);
    before = device_free();
    ok = rk_test_generate(m, &s, prompt, 300, 48) && rk_test_generate(m, &s, prompt, 17, 40);
    after = device_free();
    CHECK(ok);
    printf("rankkv-dynamic: during 2 measured prefills + 88 decode steps: %ld allocations, %ld "
           "frees, device free memory %zu -> %zu bytes\n",
           atomic_load(&allocs), atomic_load(&frees), before, after);
    CHECK(atomic_load(&allocs) == 0 && atomic_load(&frees) == 0);
    CHECK(before == after);
    rk_model_free(m);

    rk_sampler_free(&s);
    return rk_test_finish("test_cuda_no_malloc");
}
