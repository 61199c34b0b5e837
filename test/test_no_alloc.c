/* After start-up the runtime must not allocate: this test interposes the
 * malloc family and mmap for the whole process (OpenBLAS included), runs a
 * prefill and a decode loop, and counts the calls made meanwhile. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "generate_loop.h"
#include "model.h"
#include "rk_test.h"
#include "rank.h"
#include "sampler.h"
#include "targets.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_int counting;
static atomic_long calls;

static void note(void)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&calls, 1);
}

void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
void *aligned_alloc(size_t al, size_t n) { note(); return __libc_memalign(al, n); }
void *memalign(size_t al, size_t n) { note(); return __libc_memalign(al, n); }
int posix_memalign(void **p, size_t al, size_t n)
{
    note();
    *p = __libc_memalign(al, n);
    return *p ? 0 : 12;
}
void free(void *p) { __libc_free(p); }
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    note();
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

int main(void)
{
    atomic_store(&counting, 1);
    free(malloc(16));
    atomic_store(&counting, 0);
    CHECKF(atomic_load(&calls) == 1, "the malloc hook is not active (%ld calls)", atomic_load(&calls));
    atomic_store(&calls, 0);

    rk_limits lim = {.max_prompt = 200, .max_new_tokens = 40, .prefill_chunk = 64,
                     .logits_rows = 1, .kv_format = RK_KV_FP32};
    rk_model *m;
    rk_status st = rk_model_load(RK_MODELS_DIR "/pythia-nano", rk_cpu_ops(), &lim, &m);
    CHECKF(st == RK_OK, "%s", rk_last_error());
    if (st != RK_OK)
        return rk_test_finish("test_no_alloc");
    rk_sampler s;
    rk_sampling cfg = {.temperature = 0.8f, .top_k = 40, .top_p = 0.9f, .seed = 1};
    CHECK(rk_sampler_init(&s, &cfg, m->cfg.vocab) == RK_OK);

    int32_t prompt[200];
    for (int i = 0; i < 200; i++)
        prompt[i] = (int32_t)((i * 7919) % m->cfg.vocab);
    /* A warm-up lets the BLAS library set up its thread pool and buffers. */
    CHECK(rk_test_generate(m, &s, prompt, 200, 40));

    atomic_store(&counting, 1);
    int ok = rk_test_generate(m, &s, prompt, 200, 40) && rk_test_generate(m, &s, prompt, 17, 40);
    atomic_store(&counting, 0);
    CHECK(ok);
    printf("allocations during 2 prefills + 80 decode steps: %ld\n", atomic_load(&calls));
    CHECK(atomic_load(&calls) == 0);
    rk_model_free(m);

    /* The compressing policies: scoring, selection, gather and eviction
     * work in the arena too, and so does the dynamic build's SVD of every
     * prompt (LAPACK with its workspace planned). */
    const char *methods[] = {"snapkv", "h2o", "streamingllm", "rankkv", "rankkv-dynamic"};
    rk_identity nano;
    CHECK(rk_identity_of(RK_MODELS_DIR "/pythia-nano", &nano) == RK_OK);
    for (int i = 0; i < 5; i++) {
        rk_kv_options o = {.method = methods[i], .average = 48, .window = 8,
                           .profile = rk_profile_find(&nano)};
        lim.prefill_chunk = lim.max_prompt;
        lim.rank = strcmp(methods[i], "rankkv-dynamic") == 0 ? rk_cpu_rank_ops() : NULL;
        lim.rank_len = lim.max_prompt;
        CHECK(rk_kv_policy_make(&o, 4, &lim.kv) == RK_OK);
        st = rk_model_load(RK_MODELS_DIR "/pythia-nano", rk_cpu_ops(), &lim, &m);
        CHECKF(st == RK_OK, "%s", rk_last_error());
        if (st != RK_OK)
            continue;
        CHECK(rk_test_generate(m, &s, prompt, 200, 40));
        atomic_store(&calls, 0);
        atomic_store(&counting, 1);
        ok = rk_test_generate(m, &s, prompt, 200, 40) && rk_test_generate(m, &s, prompt, 17, 40);
        atomic_store(&counting, 0);
        CHECK(ok);
        printf("%s: allocations during 2 prefills + 80 decode steps: %ld\n", methods[i],
               atomic_load(&calls));
        CHECK(atomic_load(&calls) == 0);
        rk_model_free(m);
    }
    rk_sampler_free(&s);
    return rk_test_finish("test_no_alloc");
}
