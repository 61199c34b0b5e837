/* The memory plan's phases. On synthetic plans: always regions overlap
 * nothing, prefill and decode regions share one range after them and
 * nothing else, the total is the always part plus the larger phase part,
 * a plan merged under a prefix keeps its layout and phases at its base,
 * misuse aborts, and the printed plan names the phases. On the committed
 * pythia-nano (CPU target): the model's offsets are the plan's, and the
 * regions it plans prefill-only are never read while decoding: filled with
 * NaN right after the prompt, the same tokens and logits follow. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model.h"
#include "plan.h"
#include "rank.h"
#include "rk_test.h"
#include "sampler.h"
#include "targets.h"

#define NANO RK_MODELS_DIR "/pythia-nano"

static size_t align_up(size_t n) { return (n + RK_PLAN_ALIGN - 1) / RK_PLAN_ALIGN * RK_PLAN_ALIGN; }

static size_t max_of(size_t a, size_t b) { return a > b ? a : b; }

static size_t end_of(const rk_region *r) { return r->offset + r->size; }

static int overlap(const rk_region *a, const rk_region *b)
{
    return a->offset < end_of(b) && b->offset < end_of(a);
}

/* Only a prefill region and a decode region are never live at once. */
static int may_share(rk_phase a, rk_phase b)
{
    return a != b && a != RK_PHASE_ALWAYS && b != RK_PHASE_ALWAYS;
}

static void check_layout(const rk_plan *p)
{
    for (int i = 0; i < p->n_regions; i++) {
        const rk_region *a = &p->regions[i];
        CHECKF(a->offset % RK_PLAN_ALIGN == 0, "%s at %zu", a->name, a->offset);
        CHECKF(end_of(a) <= p->total, "%s ends past the total", a->name);
        for (int j = i + 1; j < p->n_regions; j++)
            CHECKF(!overlap(a, &p->regions[j]) || may_share(a->phase, p->regions[j].phase),
                   "%s (%s) and %s (%s) overlap", a->name, rk_phase_name(a->phase),
                   p->regions[j].name, rk_phase_name(p->regions[j].phase));
    }
    CHECK(p->total ==
          max_of(rk_plan_peak(p, RK_PHASE_PREFILL), rk_plan_peak(p, RK_PHASE_DECODE)));
}

/* Always regions of 1000 and 3000 bytes, then prefill regions of PREFILL_A
 * and 700 bytes and decode regions of DECODE_A and 100, interleaved. */
static void phase_plan(rk_plan *p, size_t prefill_a, size_t decode_a)
{
    rk_plan_init(p, "synthetic");
    rk_plan_add(p, "activations", 1000);
    rk_plan_add(p, "kv_cache_k", 3000);
    rk_plan_add_phase(p, "prefill_layer_k", prefill_a, RK_PHASE_PREFILL);
    rk_plan_add_phase(p, "draft_tokens", decode_a, RK_PHASE_DECODE);
    rk_plan_add_phase(p, "prefill_layer_mass", 700, RK_PHASE_PREFILL);
    rk_plan_add_phase(p, "kv_scales", 100, RK_PHASE_DECODE);
}

static void test_phases(void)
{
    rk_plan p;
    phase_plan(&p, 5000, 2000);
    check_layout(&p);
    const size_t always = align_up(1024 + 3000);
    const size_t prefill = align_up(5000) + 700, decode = align_up(2000) + 100;
    CHECK(rk_plan_find(&p, "kv_cache_k")->offset == 1024);
    CHECK(rk_plan_find(&p, "prefill_layer_k")->offset == always);
    CHECK(rk_plan_find(&p, "draft_tokens")->offset == always);
    CHECK(overlap(rk_plan_find(&p, "prefill_layer_k"), rk_plan_find(&p, "draft_tokens")));
    CHECK(p.total == always + max_of(prefill, decode));
    CHECK(rk_plan_peak(&p, RK_PHASE_PREFILL) == always + prefill);
    CHECK(rk_plan_peak(&p, RK_PHASE_DECODE) == always + decode);
    CHECK(rk_plan_peak(&p, RK_PHASE_ALWAYS) == 1024 + 3000);

    const rk_region *mass = rk_plan_find(&p, "prefill_layer_mass");
    CHECK(mass && mass->phase == RK_PHASE_PREFILL && mass->size == 700);
    CHECK(mass && mass->offset == always + align_up(5000));
    CHECK(rk_plan_find(&p, "kv_scales")->phase == RK_PHASE_DECODE);
    CHECK(rk_plan_find(&p, "activations")->phase == RK_PHASE_ALWAYS);
    CHECK(rk_plan_find(&p, "kv_cache") == NULL);

    /* When decode needs more, the total follows it. */
    phase_plan(&p, 300, 9000);
    check_layout(&p);
    CHECK(p.total == always + align_up(9000) + 100);
    CHECK(rk_plan_peak(&p, RK_PHASE_PREFILL) == always + align_up(300) + 700);
}

/* A speculative decoder's arena: its own region, then the target's and the
 * draft's plans, each whole at its base. */
static void check_merged(const rk_plan *dst, const rk_plan *src, const char *prefix, size_t base)
{
    CHECK(base % RK_PLAN_ALIGN == 0);
    for (int i = 0; i < src->n_regions; i++) {
        const rk_region *r = &src->regions[i];
        char name[RK_PLAN_NAME_LEN];
        snprintf(name, sizeof name, "%s.%s", prefix, r->name);
        const rk_region *got = rk_plan_find(dst, name);
        CHECKF(got != NULL, "%s is not in the merged plan", name);
        if (!got)
            continue;
        CHECKF(got->offset == base + r->offset && got->size == r->size && got->phase == r->phase,
               "%s: %zu bytes at %zu (%s), not %zu at %zu + %zu (%s)", name, got->size,
               got->offset, rk_phase_name(got->phase), r->size, base, r->offset,
               rk_phase_name(r->phase));
    }
}

static void test_append(void)
{
    rk_plan target, draft, arena;
    phase_plan(&target, 5000, 2000);
    rk_plan_init(&draft, "draft");
    rk_plan_add(&draft, "kv_cache_k", 700);
    rk_plan_add_phase(&draft, "prefill_layer_k", 900, RK_PHASE_PREFILL);

    rk_plan_init(&arena, "speculative");
    CHECK(rk_plan_add(&arena, "accepted", 64) == 0);
    const size_t t = rk_plan_append(&arena, &target, "target");
    const size_t d = rk_plan_append(&arena, &draft, "draft");
    CHECK(t == RK_PLAN_ALIGN);
    CHECK(d == align_up(t + target.total));
    CHECK(arena.total == d + draft.total);
    CHECK(arena.n_regions == 1 + target.n_regions + draft.n_regions);
    check_merged(&arena, &target, "target", t);
    check_merged(&arena, &draft, "draft", d);
    check_layout(&arena);
    /* Inside a model's own plan its names are plain; merged, prefixed. */
    CHECK(rk_plan_find(&target, "kv_cache_k")->offset == 1024);
    CHECK(rk_plan_find(&arena, "kv_cache_k") == NULL);
    CHECK(rk_plan_peak(&arena, RK_PHASE_DECODE) == d + 700);
    CHECK(rk_plan_peak(&arena, RK_PHASE_PREFILL) == arena.total);
}

/* Whether FN aborts, in a child process (its message silenced). */
static int aborts(void (*fn)(void))
{
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr))
            _exit(2);
        fn();
        _exit(0);
    }
    int status = 0;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) &&
           WTERMSIG(status) == SIGABRT;
}

/* An always region after the phase regions would land inside their range. */
static void always_after_phase(void)
{
    rk_plan p;
    phase_plan(&p, 5000, 2000);
    rk_plan_add(&p, "late", 16);
}

static void append_after_phase(void)
{
    rk_plan p, q;
    phase_plan(&p, 5000, 2000);
    phase_plan(&q, 5000, 2000);
    rk_plan_append(&p, &q, "draft");
}

static void name_too_long(void)
{
    rk_plan p, q;
    char prefix[RK_PLAN_NAME_LEN];
    memset(prefix, 'x', sizeof prefix - 1);
    prefix[sizeof prefix - 1] = '\0';
    rk_plan_init(&p, "outer");
    phase_plan(&q, 5000, 2000);
    rk_plan_append(&p, &q, prefix);
}

static void too_many_regions(void)
{
    rk_plan p;
    rk_plan_init(&p, "full");
    for (int i = 0; i <= RK_PLAN_MAX_REGIONS; i++)
        rk_plan_add(&p, "r", 1);
}

static void test_misuse(void)
{
    CHECK(aborts(always_after_phase));
    CHECK(aborts(append_after_phase));
    CHECK(aborts(name_too_long));
    CHECK(aborts(too_many_regions));
}

/* The printed line of region NAME, or NULL. */
static const char *line_of(const char *text, const char *name)
{
    char key[RK_PLAN_NAME_LEN + 4];
    snprintf(key, sizeof key, "\n  %s ", name);
    const char *at = strstr(text, key);
    return at ? at + 1 : NULL;
}

/* Whether the line starting at LINE has WORD, space-delimited, before its end. */
static int line_has(const char *line, const char *word)
{
    char key[32];
    snprintf(key, sizeof key, " %s ", word);
    const char *at = line ? strstr(line, key) : NULL;
    const char *nl = line ? strchr(line, '\n') : NULL;
    return at && (!nl || at < nl);
}

static char *printed(const rk_plan *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    rk_plan_print(p, f);
    fclose(f);
    return buf;
}

static void test_print(void)
{
    rk_plan target, arena;
    phase_plan(&target, 5000, 2000);
    rk_plan_init(&arena, "speculative");
    rk_plan_add(&arena, "accepted", 64);
    rk_plan_append(&arena, &target, "target");
    char *text = printed(&arena);
    CHECK(line_has(line_of(text, "region"), "phase"));
    CHECK(line_has(line_of(text, "accepted"), "always"));
    CHECK(line_has(line_of(text, "target.prefill_layer_k"), "prefill"));
    CHECK(line_has(line_of(text, "target.draft_tokens"), "decode"));
    char total[32], prefill[32], decode[32];
    snprintf(total, sizeof total, "%zu", arena.total);
    snprintf(prefill, sizeof prefill, "%zu", rk_plan_peak(&arena, RK_PHASE_PREFILL));
    snprintf(decode, sizeof decode, "%zu", rk_plan_peak(&arena, RK_PHASE_DECODE));
    CHECK(line_has(line_of(text, "total"), total));
    CHECK(line_has(line_of(text, "prefill peak"), prefill));
    CHECK(line_has(line_of(text, "decode peak"), decode));
    free(text);

    /* A plan that lives whole in every phase has no peaks to tell. */
    rk_plan weights;
    rk_plan_init(&weights, "weights");
    rk_plan_add(&weights, "embed_in", 4096);
    text = printed(&weights);
    CHECK(line_has(line_of(text, "embed_in"), "always"));
    CHECK(strstr(text, "peak") == NULL);
    free(text);
}

/* ---- the model ---- */

enum { PROMPT = 96, NEW = 24, BUDGET = 32 };

static rk_model *load(const char *method)
{
    const int dynamic = strcmp(method, "rankkv-dynamic") == 0;
    rk_kv_options opt = {.method = method, .average = BUDGET, .window = 8};
    rk_limits lim = {.max_prompt = PROMPT, .max_new_tokens = NEW, .prefill_chunk = PROMPT,
                     .logits_rows = 1, .kv_format = RK_KV_FP32,
                     .rank = dynamic ? rk_cpu_rank_ops() : NULL, .rank_len = PROMPT};
    rk_model *m = NULL;
    CHECKF(rk_kv_policy_make(&opt, 4, &lim.kv) == RK_OK, "%s", rk_last_error());
    CHECKF(rk_model_load(NANO, rk_cpu_ops(), &lim, &m) == RK_OK, "%s: %s", method,
           rk_last_error());
    return m;
}

static void check_region(const rk_model *m, const char *name, size_t field, rk_phase phase)
{
    const rk_region *r = rk_plan_find(&m->plan, name);
    CHECKF(r && r->offset == field && r->phase == phase, "%s: the model's offset %zu, the plan's "
           "%zu (%s, expected %s)", name, field, r ? r->offset : 0,
           r ? rk_phase_name(r->phase) : "absent", rk_phase_name(phase));
}

/* What the model plans prefill-only, and that its fields hold the plan's
 * offsets. */
static void check_model_plan(const rk_model *m)
{
    check_layout(&m->plan);
    check_region(m, "prefill_layer_k", m->a_prefill_k, RK_PHASE_PREFILL);
    check_region(m, "prefill_layer_v", m->a_prefill_v, RK_PHASE_PREFILL);
    check_region(m, "prefill_layer_mass", m->a_mass, RK_PHASE_PREFILL);
    check_region(m, "kept_rows", m->a_keep, RK_PHASE_PREFILL);
    check_region(m, "kv_cache_k", m->cache.k, RK_PHASE_ALWAYS);
    check_region(m, "kv_row_positions", m->cache.pos, RK_PHASE_ALWAYS);
    check_region(m, "target_scratch", m->a_scratch, RK_PHASE_ALWAYS);
    if (m->cache.score)
        check_region(m, "kv_row_attention", m->cache.score, RK_PHASE_ALWAYS);
    if (m->lim.rank)
        check_region(m, "rank_scratch", m->a_rank_scratch, RK_PHASE_PREFILL);
}

/* 0xff bytes: a NaN in fp32 and fp16, -1 as a row index. */
static void fill(rk_model *m, const rk_region *r)
{
    memset((char *)m->base + r->offset, 0xff, r->size);
}

typedef int (*poison_fn)(rk_model *m);

static int poison_prefill(rk_model *m)
{
    int n = 0;
    for (int i = 0; i < m->plan.n_regions; i++)
        if (m->plan.regions[i].phase == RK_PHASE_PREFILL) {
            fill(m, &m->plan.regions[i]);
            n++;
        }
    return n;
}

static int poison_kv_cache(rk_model *m)
{
    fill(m, rk_plan_find(&m->plan, "kv_cache_k"));
    return 1;
}

/* Greedy decoding of NEW tokens after PROMPT, each step's logits into
 * LOGITS (NEW × vocab) and tokens into OUT; POISON (or NULL) runs between
 * the prompt and the first step. Returns the regions it poisoned. */
static int decode(rk_model *m, const int32_t *prompt, poison_fn poison, int32_t *out,
                  float *logits)
{
    const int V = m->cfg.vocab;
    rk_seq s;
    rk_seq_reset(&s);
    CHECK(rk_model_prefill(m, &s, prompt, PROMPT) == RK_OK);
    const int poisoned = poison ? poison(m) : 0;
    for (int i = 0; i < NEW; i++) {
        out[i] = rk_argmax(rk_model_logits(m, 0), V);
        CHECKF(rk_model_forward(m, &s, &out[i], 1) == RK_OK, "%s", rk_last_error());
        memcpy(logits + (size_t)i * V, rk_model_logits(m, 0), (size_t)V * sizeof(float));
    }
    return poisoned;
}

static void test_prefill_regions_unread(const char *method)
{
    rk_model *m = load(method);
    if (!m)
        return;
    check_model_plan(m);
    const size_t V = (size_t)m->cfg.vocab, bytes = NEW * V * sizeof(float);
    int32_t prompt[PROMPT], want[NEW], got[NEW];
    for (int i = 0; i < PROMPT; i++)
        prompt[i] = (int32_t)((i * 7919 + 11) % m->cfg.vocab);
    float *want_logits = malloc(bytes), *got_logits = malloc(bytes);

    decode(m, prompt, NULL, want, want_logits);
    const int poisoned = decode(m, prompt, poison_prefill, got, got_logits);
    CHECKF(poisoned >= 4, "%s: %d prefill regions", method, poisoned);
    const int same = memcmp(want_logits, got_logits, bytes) == 0;
    CHECKF(memcmp(want, got, sizeof want) == 0,
           "%s: tokens differ once the prefill regions are poisoned", method);
    CHECKF(same, "%s: logits differ once the prefill regions are poisoned", method);
    printf("%s: %d prefill regions poisoned after the prompt; %d decode steps' logits %s\n",
           method, poisoned, NEW, same ? "bit for bit the same" : "DIFFER");

    /* The check can fail: poisoning what decode does read shows. */
    decode(m, prompt, poison_kv_cache, got, got_logits);
    CHECKF(memcmp(want_logits, got_logits, bytes) != 0,
           "%s: a poisoned KV cache left the logits as they were", method);
    free(want_logits);
    free(got_logits);
    rk_model_free(m);
}

int main(void)
{
    test_phases();
    test_append();
    test_misuse();
    test_print();
    const char *methods[] = {"snapkv", "h2o", "streamingllm", "rankkv-dynamic"};
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        test_prefill_regions_unread(methods[i]);
    return rk_test_finish("test_plan");
}
