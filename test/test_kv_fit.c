/* --kv-memory's chooser (core/kv_fit.c) on pythia-nano's shape (4 layers,
 * 2 heads, head_dim 80; rows of fp32 320 B, fp16 160, int8 100, int4 60),
 * prompts of 448 tokens and 64 new: the rule's choice on each side of every
 * boundary, to the byte, each equal to the plan rk_model_plan makes of it;
 * the chosen budget the largest that fits; the refusals; and the sizes
 * rk_bytes_parse reads. */
#include <stdlib.h>

#include "kv_fit.h"
#include "model.h"
#include "rk_test.h"
#include "targets.h"

#define NANO RK_MODELS_DIR "/pythia-nano"

enum { P = 448, NEW = 64 };

static rk_config cfg;
static const unsigned all_formats = RK_KV_FORMAT_BIT(RK_KV_FP32) | RK_KV_FORMAT_BIT(RK_KV_FP16) |
                                    RK_KV_FORMAT_BIT(RK_KV_INT8) | RK_KV_FORMAT_BIT(RK_KV_INT4);

/* The limits of a choice, planned: the plan's KV bytes are the choice's. */
static size_t planned_bytes(const rk_kv_options *opt, const rk_kv_fit *fit)
{
    rk_limits lim = {.max_prompt = P, .max_new_tokens = NEW, .prefill_chunk = P,
                     .logits_rows = 1, .kv_format = fit->format};
    rk_kv_options o = *opt;
    o.average = fit->average;
    o.max_rows = P;
    CHECKF(rk_kv_policy_make(&o, cfg.n_layers, &lim.kv) == RK_OK, "%s", rk_last_error());
    rk_model *m = malloc(sizeof *m);
    CHECKF(rk_model_plan(&cfg, rk_cpu_ops(), &lim, m) == RK_OK, "%s", rk_last_error());
    const size_t bytes = m->kv_bytes;
    free(m);
    return bytes;
}

/* MEMORY under OPT in FORMATS chooses FORMAT at AVERAGE, BYTES, keeping the
 * whole prompt or not; the plan agrees. */
static void chooses(const rk_kv_options *opt, unsigned formats, size_t memory, rk_kv_format format,
                    int average, int whole, size_t bytes)
{
    rk_kv_fit fit;
    rk_status st = rk_kv_fit_memory(&cfg, formats, 0, opt, P, NEW, memory, &fit);
    CHECKF(st == RK_OK, "%zu bytes: %s", memory, rk_last_error());
    if (st != RK_OK)
        return;
    CHECKF(fit.format == format && fit.average == average && fit.whole == whole &&
               fit.bytes == bytes,
           "%s, %zu bytes: %s average %d whole %d, %zu bytes; want %s %d %d %zu",
           opt->method ? opt->method : "full", memory, rk_kv_format_name(fit.format),
           fit.average, fit.whole, fit.bytes, rk_kv_format_name(format), average, whole, bytes);
    CHECK(fit.bytes <= memory);
    CHECK(planned_bytes(opt, &fit) == fit.bytes);
}

static void refuses(const rk_kv_options *opt, unsigned formats, size_t memory, rk_status want)
{
    rk_kv_fit fit;
    CHECKF(rk_kv_fit_memory(&cfg, formats, 0, opt, P, NEW, memory, &fit) == want,
           "%zu bytes accepted or refused otherwise", memory);
}

/* The full cache: 4 layers x 512 positions x 2 heads x 2 (K, V) = 8192
 * rows; the most bits that fit, refused below int4's. */
static void test_full(void)
{
    const rk_kv_options full = {0};
    chooses(&full, all_formats, (size_t)1 << 40, RK_KV_FP32, 0, 1, 2621440);
    chooses(&full, all_formats, 2621440, RK_KV_FP32, 0, 1, 2621440);
    chooses(&full, all_formats, 2621439, RK_KV_FP16, 0, 1, 1310720);
    chooses(&full, all_formats, 1310719, RK_KV_INT8, 0, 1, 819200);
    chooses(&full, all_formats, 819199, RK_KV_INT4, 0, 1, 491520);
    chooses(&full, all_formats, 491520, RK_KV_INT4, 0, 1, 491520);
    refuses(&full, all_formats, 491519, RK_ELIMIT);
    /* A target of fp16 only (CUDA today). */
    const unsigned fp16 = RK_KV_FORMAT_BIT(RK_KV_FP16);
    chooses(&full, fp16, 2621440, RK_KV_FP16, 0, 1, 1310720);
    refuses(&full, fp16, 1310719, RK_ELIMIT);
}

/* SnapKV (window 32): a layer holds min(budget, 448) + 64 rows, 16 x that
 * rows in all: 5120 B per position at fp32, 1600 at int8, 960 at int4. The
 * whole prompt at the most bits that hold it; then int8's largest budget;
 * int4's only when int8 holds not even the window. */
static void test_snapkv(void)
{
    const rk_kv_options snap = {.method = "snapkv"};
    chooses(&snap, all_formats, 2621440, RK_KV_FP32, P, 1, 2621440);
    chooses(&snap, all_formats, 2621439, RK_KV_FP16, P, 1, 1310720);
    chooses(&snap, all_formats, 491520, RK_KV_INT4, P, 1, 491520);
    /* 491519 / 1600 = 307 rows a layer: 243 above the 64 new. */
    chooses(&snap, all_formats, 491519, RK_KV_INT8, 243, 0, 1600 * 307);
    chooses(&snap, all_formats, 1600 * 97, RK_KV_INT8, 33, 0, 1600 * 97);
    chooses(&snap, all_formats, 1600 * 97 - 1, RK_KV_INT8, 32, 0, 1600 * 96);
    chooses(&snap, all_formats, 1600 * 96, RK_KV_INT8, 32, 0, 1600 * 96);
    /* 153599 / 960 = 159 rows a layer. */
    chooses(&snap, all_formats, 1600 * 96 - 1, RK_KV_INT4, 95, 0, 960 * 159);
    chooses(&snap, all_formats, 960 * 96, RK_KV_INT4, 32, 0, 960 * 96);
    refuses(&snap, all_formats, 960 * 96 - 1, RK_ELIMIT);
    /* Without int8 the compressed cache keeps fp16's bits before int4's. */
    const unsigned no_int8 = all_formats & ~RK_KV_FORMAT_BIT(RK_KV_INT8);
    /* 491519 / 2560 = 191 rows a layer. */
    chooses(&snap, no_int8, 491519, RK_KV_FP16, 127, 0, 2560 * 191);
    /* A budget is the user's or the memory's, not both. */
    const rk_kv_options given = {.method = "snapkv", .average = 64};
    refuses(&given, all_formats, 1 << 20, RK_EINVAL);
}

/* The schedules and the evicting methods: the chosen budget fits and the
 * next does not, and the plan agrees. */
static void test_largest(const char *method, size_t memory)
{
    const rk_kv_options opt = {.method = method};
    rk_kv_fit fit;
    CHECKF(rk_kv_fit_memory(&cfg, all_formats, 0, &opt, P, NEW, memory, &fit) == RK_OK, "%s: %s",
           method, rk_last_error());
    CHECKF(!fit.whole && fit.format == RK_KV_INT8, "%s: %s", method,
           rk_kv_format_name(fit.format));
    CHECK(planned_bytes(&opt, &fit) == fit.bytes && fit.bytes <= memory);
    rk_kv_policy next;
    rk_kv_options o = opt;
    o.average = fit.average + 1;
    o.max_rows = P;
    CHECK(rk_kv_policy_make(&o, cfg.n_layers, &next) == RK_OK);
    CHECKF(rk_kv_fit_bytes(&cfg, &next, fit.format, 0, P, NEW) > memory,
           "%s: average %d fits %zu bytes too", method, fit.average + 1, memory);
}

static void test_parse(void)
{
    static const struct {
        const char *s;
        size_t bytes;
    } good[] = {{"123456789", 123456789}, {"7B", 7},
                {"200MB", 200000000},     {"1.5GiB", 1610612736},
                {"1kB", 1000},            {"1KB", 1000},
                {"1KiB", 1024},           {"0.3GB", 300000000},
                {"2TiB", (size_t)2 << 40}, {"2.5MiB", 2621440}, {"3mB", 3000000}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t got = 0;
        CHECKF(rk_bytes_parse(good[i].s, &got) == RK_OK && got == good[i].bytes,
               "'%s': %zu, want %zu", good[i].s, got, good[i].bytes);
    }
    static const char *const bad[] = {"", "0", "0.1", "1.5G", "abc", "1e3", "-5", "1.5 GB",
                                      "12MiBx", "MB", "1Mb", "9999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t got;
        CHECKF(rk_bytes_parse(bad[i], &got) == RK_EINVAL, "'%s' accepted", bad[i]);
    }
}

int main(void)
{
    CHECKF(rk_config_load(NANO "/config.json", &cfg) == RK_OK, "%s", rk_last_error());
    CHECK(cfg.n_layers == 4 && cfg.n_heads == 2 && cfg.head_dim == 80);
    test_full();
    test_snapkv();
    test_largest("pyramidkv", 300000);
    test_largest("h2o", 300000);
    test_largest("streamingllm", 300000);
    test_parse();
    return rk_test_finish("test_kv_fit");
}
