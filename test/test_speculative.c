/* Speculative decoding (core/speculative.h) is the target's own greedy
 * decoding, token for token, whatever the draft proposes: a draft that is
 * the target (everything accepted), a smaller trained one, and a draft of
 * random weights (almost nothing accepted); after a round that rejected,
 * both caches are as if it never ran; a SnapKV target rolls back after its
 * compressed prompt; the observer sees each round before the rollback; the
 * ReKV observer records, for every rejected proposal, the rows and scalars a
 * fresh run of the same tokens gives (its truth row a round later); the
 * loop allocates nothing; and what cannot work is refused: different
 * tokenizers, K outside the plan, evicting KV policies. The bundled
 * pythia-nano always runs (as target and draft); pythia-mini's cases need
 * ../shared. usage: test_speculative cpu|cuda */
#define _GNU_SOURCE /* syscall, for the interposed mmap */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "golden.h"
#include "model.h"
#include "rekv_spec.h"
#include "rk_test.h"
#include "sampler.h"
#include "speculative.h"
#include "target_test.h"

#ifdef RK_SPEC_COUNT_ALLOCS
#include "alloc_count.h"
#endif

#define NANO RK_MODELS_DIR "/pythia-nano"
#define MINI RK_SHARED_DIR "/models/pythia-mini"

enum { MAX_PROMPT = 64, MAX_NEW = 48 };

static const rk_ops *ops;
static int cpu;
static char tmp[] = "/tmp/rk_spec_XXXXXX";
static char random_dir[64];

/* DIR's model with LOGITS_ROWS, under the KV policy METHOD (full: none). */
static rk_model *load(const char *dir, int logits_rows, const char *method, int budget)
{
    rk_limits lim = {.max_prompt = MAX_PROMPT, .max_new_tokens = MAX_NEW,
                     .prefill_chunk = MAX_PROMPT, .logits_rows = logits_rows,
                     .kv_format = ops->kv_format};
    char path[256];
    rk_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(rk_config_load(path, &cfg) == RK_OK);
    if (strcmp(method, "full") != 0) {
        rk_kv_options opt = {.method = method, .average = budget};
        CHECKF(rk_kv_policy_make(&opt, cfg.n_layers, &lim.kv) == RK_OK, "%s", rk_last_error());
    }
    rk_model *m = NULL;
    CHECKF(rk_model_load(dir, ops, &lim, &m) == RK_OK, "%s: %s", dir, rk_last_error());
    return m;
}

static rk_model *load_target(const char *dir) { return load(dir, RK_SPEC_MAX_K + 1, "full", 0); }
static rk_model *load_draft(const char *dir) { return load(dir, 2, "full", 0); }

static int same(const int32_t *a, int na, const int32_t *b, int nb)
{
    return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

/* Whether the speculative output GOT equals the target's greedy output WANT
 * after PROMPT[0..np). On CUDA a step of K + 1 rows rounds its fp16 sums
 * otherwise than a one-row step, which may turn a near tie: a first
 * difference is accepted there when the target's two best logits at that
 * point are the two tokens and lie within 2e-2 of the largest logit. */
static int agrees(rk_model *target, const int32_t *prompt, int np, const int32_t *want, int nw,
                  const int32_t *got, int ng)
{
    if (same(got, ng, want, nw))
        return 1;
    int j = 0;
    while (j < nw && j < ng && got[j] == want[j])
        j++;
    if (cpu || j == nw || j == ng || np + j > MAX_PROMPT)
        return 0;
    int32_t context[MAX_PROMPT];
    memcpy(context, prompt, (size_t)np * sizeof *prompt);
    memcpy(context + np, want, (size_t)j * sizeof *want);
    rk_seq fresh;
    rk_seq_reset(&fresh);
    if (rk_model_prefill(target, &fresh, context, np + j) != RK_OK)
        return 0;
    const float *row = rk_model_logits(target, target->n_logits - 1);
    double mx = 0;
    for (int i = 0; i < target->cfg.vocab; i++)
        mx = fmax(mx, fabs((double)row[i]));
    const double a = row[want[j]], b = row[got[j]];
    int above = 0;
    for (int i = 0; i < target->cfg.vocab; i++)
        above += row[i] > fmin(a, b);
    const int tie = above <= 1 && fabs(a - b) <= 2e-2 * mx;
    printf("  token %d: %d against %d, logits %.5f and %.5f: %s\n", j, want[j], got[j], a, b,
           tie ? "a near tie, accepted" : "not a tie");
    return tie;
}

/* The runs every case makes: fixed K of 1, 4 and 8, and adaptive from 2. */
static const rk_spec_options runs[] = {
    {.k = 1, .ignore_eos = 1}, {.k = 4, .ignore_eos = 1}, {.k = 8, .ignore_eos = 1},
    {.k = 2, .adaptive = 1, .ignore_eos = 1}};
enum { N_RUNS = sizeof runs / sizeof runs[0] };

typedef enum { ACCEPT_ALL, ACCEPT_SOME, ACCEPT_FEW } acceptance;

/* TARGET's golden greedy prompts (GOLDEN_DIR's goldens.json) through
 * speculative decoding with DRAFT: the output equals the target alone's,
 * and on the fp32 CPU target the goldens' too (the CUDA target's fp16
 * matches HF's fp32 greedy only most of the way: parity_*_cuda). */
static void exact_on_goldens(rk_model *target, rk_model *draft, const char *golden_dir,
                             const char *label, acceptance want_acceptance)
{
    if (!target || !draft)
        return;
    cJSON *g = golden_load(golden_dir);
    CHECKF(g, "no goldens in %s", golden_dir);
    rk_spec s;
    CHECKF(rk_spec_init(&s, target, draft, NULL) == RK_OK, "%s", rk_last_error());
    long proposed = 0, accepted = 0;
    int cases = 0, exact = 0, runs_done = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(g, "greedy"))
    {
        int np, nw;
        int32_t *prompt = golden_ints(cJSON_GetObjectItem(e, "prompt_ids"), &np);
        int32_t *want = golden_ints(cJSON_GetObjectItem(e, "output_ids"), &nw);
        int32_t base[MAX_NEW], out[MAX_NEW];
        rk_spec_stats bst, st;
        rk_spec_options o = {.max_new = nw, .ignore_eos = 1};
        CHECKF(rk_spec_greedy(&s, prompt, np, &o, base, &bst) == RK_OK, "%s", rk_last_error());
        if (cpu)
            CHECKF(same(base, bst.generated, want, nw), "%s: the target's greedy output is not "
                                                        "the golden one", label);
        for (int r = 0; r < N_RUNS; r++) {
            o = runs[r];
            o.max_new = nw;
            CHECKF(rk_spec_generate(&s, prompt, np, &o, out, &st) == RK_OK, "%s",
                   rk_last_error());
            const int ok = agrees(target, prompt, np, base, bst.generated, out, st.generated);
            CHECKF(ok, "%s, K %d%s: speculative output differs from the target's greedy", label,
                   o.k, o.adaptive ? " adaptive" : "");
            exact += ok;
            runs_done++;
            proposed += st.proposed;
            accepted += st.accepted;
            CHECK(st.generated == nw && st.target_forwards == st.rounds + 1);
            CHECK(st.draft_forwards == st.draft_steps + 1);
            long hist_rounds = 0, hist_kept = 0;
            for (int a = 0; a <= RK_SPEC_MAX_K; a++) {
                hist_rounds += st.accepted_hist[a];
                hist_kept += (long)a * st.accepted_hist[a];
            }
            CHECK(hist_kept == st.accepted && hist_rounds <= st.rounds);
            /* Every round yields its kept proposals and one token more. */
            CHECK(st.accepted + st.rounds == st.generated - 1);
            if (!o.adaptive && want_acceptance == ACCEPT_ALL)
                CHECK(st.k_last == o.k);
        }
        cases++;
        free(prompt);
        free(want);
    }
    const double rate = proposed ? (double)accepted / proposed : 0;
    printf("%s on %s: %d/%d runs identical, acceptance %.3f (%ld of %ld)\n", label, ops->name,
           exact, runs_done, rate, accepted, proposed);
    CHECK(cases == 3);
    switch (want_acceptance) {
    /* A draft that is the target agrees everywhere but where a near tie
     * rounds otherwise in its one-row steps (fp16 on CUDA). */
    case ACCEPT_ALL:
        CHECKF(proposed > 0 && (cpu ? accepted == proposed : rate >= 0.95), "%s: %.3f", label,
               rate);
        break;
    case ACCEPT_SOME: CHECKF(rate > 0.05 && rate < 0.95, "%s: %.3f", label, rate); break;
    case ACCEPT_FEW: CHECKF(rate < 0.2, "%s: %.3f", label, rate); break;
    }
    rk_spec_release(&s);
    cJSON_Delete(g);
}


/* After speculative decoding, M's sequence S holds the first S.n_past of
 * TOKENS[0..n) (the prompt and the output but its last token): running the
 * rest gives the logits a fresh sequence gives for all of them. */
static double continue_vs_fresh(rk_model *m, rk_seq *s, const int32_t *tokens, int n)
{
    const int V = m->cfg.vocab;
    static float cont[8192 * 2];
    CHECK(V <= 8192 && n - s->n_past >= 1 && n - s->n_past <= 2);
    CHECKF(rk_model_forward(m, s, tokens + s->n_past, n - s->n_past) == RK_OK, "%s",
           rk_last_error());
    memcpy(cont, rk_model_logits(m, m->n_logits - 1), (size_t)V * sizeof(float));
    rk_seq fresh;
    rk_seq_reset(&fresh);
    CHECK(rk_model_prefill(m, &fresh, tokens, n - 1) == RK_OK);
    CHECK(rk_model_forward(m, &fresh, tokens + n - 1, 1) == RK_OK);
    return rk_test_rel_diff(cont, rk_model_logits(m, 0), V);
}

typedef struct {
    int rounds, rejected, last_rejected, bad;
    int logits_checked;
} watch;

/* The observer's view, checked round by round: positions before the
 * rollback, the target's argmax per row, and (with logits) the rows they
 * came from. */
static rk_status on_round(void *user, const rk_spec_round *r)
{
    watch *w = user;
    w->rounds++;
    w->last_rejected = r->first_rejected >= 0;
    w->rejected += w->last_rejected;
    int bad = r->target_seq->n_past != r->pos + r->k + 1 ||
              (r->k > 0 && r->draft_seq->n_past != r->pos + r->k &&
               r->draft_seq->n_past != r->pos + r->k + 1) ||
              (r->first_rejected >= 0 &&
               (r->first_rejected != r->pos + 1 + r->accepted || r->accepted == r->k)) ||
              r->first_rejected < -1 || r->k < 0 || r->accepted < 0 || r->accepted > r->k;
    for (int i = 0; i < r->accepted; i++)
        bad |= r->tokens[i + 1] != r->target_next[i];
    if (r->first_rejected >= 0)
        bad |= r->tokens[r->accepted + 1] == r->target_next[r->accepted];
    if (r->draft_logits) {
        for (int i = 0; i < r->k; i++)
            bad |= rk_argmax(r->draft_logits + (size_t)i * r->draft->cfg.vocab,
                             r->draft->cfg.vocab) != r->tokens[i + 1];
        for (int i = 0; i <= r->k; i++)
            bad |= rk_argmax(r->target_logits + (size_t)i * r->target->cfg.vocab,
                             r->target->cfg.vocab) != r->target_next[i];
        w->logits_checked++;
    }
    w->bad += bad;
    return RK_OK;
}

static int32_t prompt_ids[] = {564, 2247, 396, 2075}; /* "The ship sailed" */
enum { N_PROMPT = sizeof prompt_ids / sizeof prompt_ids[0] };

/* A draft of random weights rejects nearly every proposal: after rounds
 * that ended in a rejection, both sequences continue as fresh ones do; the
 * observer saw every round before the rollback, with and without logits
 * (and the draft's rows of every proposal); outputs are the same either
 * way. */
static void rollback_and_observer(rk_model *target, rk_model *draft)
{
    if (!target || !draft)
        return;
    const double tol = cpu ? 1e-4 : 2e-2;
    int32_t base[MAX_NEW], out[MAX_NEW], tokens[MAX_PROMPT];
    rk_spec_stats bst, st;
    for (int logits = 0; logits < 2; logits++) {
        watch w = {0};
        const rk_spec_observer obs = {.user = &w, .needs_logits = logits,
                                      .needs_draft_rows = logits, .on_round = on_round};
        rk_spec s;
        CHECKF(rk_spec_init(&s, target, draft, &obs) == RK_OK, "%s", rk_last_error());
        const int lengths[] = {6, 11, 20};
        for (int i = 0; i < 3; i++) {
            const rk_spec_options o = {.k = 3, .max_new = lengths[i], .ignore_eos = 1};
            CHECK(rk_spec_greedy(&s, prompt_ids, N_PROMPT, &o, base, &bst) == RK_OK);
            w = (watch){0};
            CHECKF(rk_spec_generate(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_OK, "%s",
                   rk_last_error());
            CHECK(agrees(target, prompt_ids, N_PROMPT, base, bst.generated, out, st.generated));
            CHECKF(w.bad == 0, "%d rounds seen wrong", w.bad);
            CHECK(w.rounds >= st.rounds - 1 && w.rounds <= st.rounds && w.rejected > 0);
            CHECK(!logits || w.logits_checked == w.rounds);
            const int n = N_PROMPT + st.generated;
            memcpy(tokens, prompt_ids, sizeof prompt_ids);
            memcpy(tokens + N_PROMPT, out, (size_t)st.generated * sizeof *out);
            CHECK(s.target_seq.n_past == n - 1);
            if (!w.last_rejected)
                continue;
            const double dt = continue_vs_fresh(target, &s.target_seq, tokens, n);
            const double dd = continue_vs_fresh(draft, &s.draft_seq, tokens, n);
            printf("after a rejected round (%d tokens out, logits %s): target %.2e, draft "
                   "%.2e from fresh sequences\n",
                   st.generated, logits ? "on" : "off", dt, dd);
            CHECKF(dt <= tol && dd <= tol, "rolled-back caches differ: %.2e %.2e", dt, dd);
        }
        rk_spec_release(&s);
    }
}

/* What the ReKV observer handed rk_rekv_add, event by event: the wrapper
 * copies the rows out of the observer as each event is made pending (the
 * rejected token's rows) and as it is added (the truth rows). */
enum { MAX_EVENTS = 48 };
typedef struct {
    rk_rekv_observer obs;
    int rejections;  /* rounds that rejected, counted here */
    size_t tsize, dsize; /* floats of one event's target rows and draft rows */
    int window_pos[MAX_EVENTS], position[MAX_EVENTS];
    int32_t draft_token[MAX_EVENTS], target_token[MAX_EVENTS];
    /* MAX_EVENTS x tsize (or dsize) each */
    float *truth_k, *truth_v, *rejected_k, *rejected_v, *draft_k, *draft_v;
} rekv_watch;

static void copy_rows(float *to, const float *from, size_t n, int e)
{
    if (e < MAX_EVENTS)
        memcpy(to + (size_t)e * n, from, n * sizeof *from);
}

/* The truth rows of the event just added (the observer's rows keep them
 * until the next event is resolved). */
static void take_truth(rekv_watch *w)
{
    const int e = w->obs.acc->n - 1;
    copy_rows(w->truth_k, w->obs.rows.truth_k, w->tsize, e);
    copy_rows(w->truth_v, w->obs.rows.truth_v, w->tsize, e);
}

static rk_status rekv_round(void *user, const rk_spec_round *r)
{
    rekv_watch *w = user;
    const int was_pending = w->obs.pending, added = w->obs.acc->n;
    const rk_status st = rk_rekv_observer_round(&w->obs, r);
    if (st != RK_OK)
        return st;
    if (was_pending && w->obs.acc->n == added + 1)
        take_truth(w);
    w->rejections += r->accepted < r->k;
    /* A new rejection: its index once added is the count so far. */
    const int e = w->obs.acc->n;
    if (w->obs.pending && e < MAX_EVENTS) {
        const rk_rekv_rows *rows = &w->obs.rows;
        w->window_pos[e] = rows->window_pos;
        w->position[e] = rows->position;
        w->draft_token[e] = rows->draft_token;
        w->target_token[e] = rows->target_token;
        copy_rows(w->rejected_k, rows->rejected_k, w->tsize, e);
        copy_rows(w->rejected_v, rows->rejected_v, w->tsize, e);
        copy_rows(w->draft_k, rows->draft_k, w->dsize, e);
        copy_rows(w->draft_v, rows->draft_v, w->dsize, e);
    }
    return RK_OK;
}

/* M's K and V at position P after a fresh prefill of TOKENS[0..p) and
 * TOKEN at p, every layer; and the logits row that predicted p. */
static const float *fresh_rows(rk_model *m, const int32_t *tokens, int p, int32_t token,
                               float *k, float *v)
{
    static int32_t ids[MAX_PROMPT];
    static float before[8192];
    CHECK(p + 1 <= MAX_PROMPT && m->cfg.vocab <= 8192);
    memcpy(ids, tokens, (size_t)p * sizeof *ids);
    ids[p] = token;
    rk_seq s;
    rk_seq_reset(&s);
    CHECKF(rk_model_prefill(m, &s, ids, p) == RK_OK, "%s", rk_last_error());
    memcpy(before, rk_model_logits(m, m->n_logits - 1), (size_t)m->cfg.vocab * sizeof(float));
    CHECKF(rk_model_forward(m, &s, ids + p, 1) == RK_OK, "%s", rk_last_error());
    const size_t layer = (size_t)m->cfg.n_heads * m->cfg.head_dim;
    for (int l = 0; l < m->cfg.n_layers; l++)
        CHECK(rk_model_kv_row(m, &s, l, p, k + l * layer, v + l * layer) == RK_OK);
    return before;
}

/* The ranks TOKEN may have under LOGITS when every logit may be off by REL
 * of the largest: 1 + those surely above it, to 1 + those that may be. */
static void rank_range(const float *logits, int vocab, int32_t token, double rel, int *lo,
                       int *hi)
{
    double mx = 0;
    for (int i = 0; i < vocab; i++)
        mx = fmax(mx, fabs((double)logits[i]));
    const double x = logits[token], eps = 2 * rel * mx;
    *lo = *hi = 1;
    for (int i = 0; i < vocab; i++) {
        *lo += i != token && logits[i] > x + eps;
        *hi += i != token && logits[i] >= x - eps;
    }
}

/* Every event of one generation (PROMPT, then OUT) against fresh runs of
 * the same tokens: the truth rows are the target's rows of its own token at
 * p, the rejected rows its rows of the draft's token there, the draft's rows
 * the draft's of that token; the confidence and the rank come from the rows
 * that predicted p. Returns the largest relative difference. */
static double check_events(rk_model *target, rk_model *draft, const rekv_watch *w,
                           const rk_rekv *acc, const int32_t *prompt, int np,
                           const int32_t *out, int n_out)
{
    static int32_t tokens[MAX_PROMPT];
    static float k[16384], v[16384];
    CHECK(np + n_out <= MAX_PROMPT && w->tsize <= 16384 && w->dsize <= 16384);
    memcpy(tokens, prompt, (size_t)np * sizeof *prompt);
    memcpy(tokens + np, out, (size_t)n_out * sizeof *out);
    double worst = 0;
    for (int e = 0; e < acc->n && e < MAX_EVENTS; e++) {
        const rk_rekv_event *ev = &acc->events[e];
        const int p = w->position[e];
        CHECK(ev->position == p && ev->window_pos == w->window_pos[e] &&
              ev->draft_token == w->draft_token[e] && ev->target_token == w->target_token[e]);
        CHECKF(p >= np && p < np + n_out && tokens[p] == ev->target_token &&
                   ev->draft_token != ev->target_token,
               "event %d at %d: the target's token %d is not the output's", e, p,
               (int)ev->target_token);
        const float *tl = fresh_rows(target, tokens, p, ev->target_token, k, v);
        const double truth = fmax(rk_test_rel_diff(w->truth_k + e * w->tsize, k, (int)w->tsize),
                                  rk_test_rel_diff(w->truth_v + e * w->tsize, v, (int)w->tsize));
        /* The truth differs from the rejected rows it is compared with. */
        CHECK(rk_test_rel_diff(w->rejected_k + e * w->tsize, k, (int)w->tsize) > 1e-3);
        /* A rank moves only past near ties, which a K + 1-row step may
         * round otherwise than a prefill. */
        int lo, hi;
        rank_range(tl, target->cfg.vocab, ev->draft_token, cpu ? 1e-4 : 2e-2, &lo, &hi);
        CHECKF(ev->target_rank >= lo && ev->target_rank <= hi,
               "event %d: target rank %d, fresh %d..%d within rounding", e, ev->target_rank, lo,
               hi);
        fresh_rows(target, tokens, p, ev->draft_token, k, v);
        const double rejected = fmax(rk_test_rel_diff(w->rejected_k + e * w->tsize, k, (int)w->tsize),
                                     rk_test_rel_diff(w->rejected_v + e * w->tsize, v, (int)w->tsize));
        const float *dl = fresh_rows(draft, tokens, p, ev->draft_token, k, v);
        const double drafted = fmax(rk_test_rel_diff(w->draft_k + e * w->dsize, k, (int)w->dsize),
                                    rk_test_rel_diff(w->draft_v + e * w->dsize, v, (int)w->dsize));
        const double prob = rk_rekv_prob(dl, draft->cfg.vocab, ev->draft_token);
        CHECKF(fabs(prob - ev->draft_prob) <= (cpu ? 1e-4 : 2e-2) * fmax(prob, 1e-3),
               "event %d: draft probability %g, fresh %g", e, ev->draft_prob, prob);
        worst = fmax(worst, fmax(truth, fmax(rejected, drafted)));
    }
    return worst;
}

/* The ReKV observer on TARGET and DRAFT: each K of 1 (every rejection at
 * the window's last place, whose draft row only needs_draft_rows gives) and
 * 3, and K 3 again ended by an end-of-text token the target chose after a
 * rejection (the last truth row from one target step more). Every rejection
 * becomes an event, and its rows are a fresh run's. */
static void rekv_protocol(rk_model *target, rk_model *draft, const char *label)
{
    if (!target || !draft)
        return;
    const double tol = cpu ? 1e-4 : 2e-2;
    rekv_watch *w = calloc(1, sizeof *w);
    CHECK(w && rk_rekv_observer_init(&w->obs, &draft->cfg, &target->cfg) == RK_OK);
    w->tsize = (size_t)target->cfg.n_layers * target->cfg.n_heads * target->cfg.head_dim;
    w->dsize = (size_t)draft->cfg.n_layers * draft->cfg.n_heads * draft->cfg.head_dim;
    float *rows = malloc((4 * w->tsize + 2 * w->dsize) * MAX_EVENTS * sizeof *rows);
    CHECK(rows != NULL);
    w->truth_k = rows;
    w->truth_v = w->truth_k + MAX_EVENTS * w->tsize;
    w->rejected_k = w->truth_v + MAX_EVENTS * w->tsize;
    w->rejected_v = w->rejected_k + MAX_EVENTS * w->tsize;
    w->draft_k = w->rejected_v + MAX_EVENTS * w->tsize;
    w->draft_v = w->draft_k + MAX_EVENTS * w->dsize;
    const rk_spec_observer obs = {.user = w, .needs_logits = 1, .needs_draft_rows = 1,
                                  .on_round = rekv_round};
    rk_spec s;
    CHECKF(rk_spec_init(&s, target, draft, &obs) == RK_OK, "%s", rk_last_error());

    int32_t base[MAX_NEW], out[MAX_NEW];
    rk_spec_stats bst, st;
    rk_spec_options o = {.max_new = MAX_NEW, .ignore_eos = 1};
    CHECK(rk_spec_greedy(&s, prompt_ids, N_PROMPT, &o, base, &bst) == RK_OK);
    const int eos = target->cfg.eos_id;
    int stop = -1; /* where the last run ends: index into the output */
    long truth_steps = 0;
    for (int run = 0; run < 3; run++) {
        o.k = run == 0 ? 1 : 3;
        /* The last run repeats the second up to a token the target chose
         * after a rejection, the first of its kind, taken as the end of
         * text. */
        o.ignore_eos = run < 2;
        if (run == 2 && stop < 0)
            break;
        if (run == 2)
            target->cfg.eos_id = out[stop];
        rk_rekv *acc = NULL;
        CHECK(rk_rekv_new(&draft->cfg, &target->cfg, o.k, &acc) == RK_OK);
        w->rejections = 0;
        const long steps = w->obs.truth_steps;
        CHECKF(rk_rekv_generate(&s, &w->obs, acc, prompt_ids, N_PROMPT, &o, out, &st) == RK_OK,
               "%s", rk_last_error());
        /* The last event's truth rows, where rk_rekv_generate resolved it. */
        if (acc->n)
            take_truth(w);
        truth_steps += w->obs.truth_steps - steps;
        CHECK(agrees(target, prompt_ids, N_PROMPT, base, run < 2 ? bst.generated : st.generated,
                     out, st.generated));
        CHECK(run < 2 || st.generated == stop + 1);
        CHECKF(acc->n == w->rejections, "%s: %d rejections, %d events", label, w->rejections,
               acc->n);
        int at_k = 0;
        for (int e = 0; e < acc->n; e++)
            at_k += acc->events[e].window_pos == o.k;
        const double worst = check_events(target, draft, w, acc, prompt_ids, N_PROMPT, out,
                                          st.generated);
        printf("%s, K %d%s: %d events (%d at window position K), rows against fresh runs "
               "%.2e\n",
               label, o.k, run == 2 ? ", ended by an end of text" : "", acc->n, at_k, worst);
        CHECKF(worst <= tol, "%s: the observer's rows differ from fresh runs' by %.2e", label,
               worst);
        CHECK(acc->n > 0 && (run != 0 || at_k == acc->n));
        for (int e = acc->n - 1; run == 1 && e >= 0 && stop < 0; e--) {
            const int i = acc->events[e].position - N_PROMPT;
            int first = 0;
            while (out[first] != out[i])
                first++;
            stop = first == i ? i : -1;
        }
        CHECK(run != 1 || stop >= 0);
        rk_rekv_free(acc);
    }
    target->cfg.eos_id = eos;
    printf("%s: %ld truth row(s) from a target step after the last round\n", label, truth_steps);
    CHECK(truth_steps >= 1);
    rk_spec_release(&s);
    rk_rekv_observer_release(&w->obs);
    free(rows);
    free(w);
}

/* The target's end-of-text token ends speculative decoding where it ends
 * greedy decoding, also inside a round's kept proposals. Uses the 10th
 * token of the greedy output as the end of text. */
static void stops_at_eos(rk_model *target, rk_model *draft)
{
    if (!target || !draft)
        return;
    rk_spec s;
    CHECK(rk_spec_init(&s, target, draft, NULL) == RK_OK);
    int32_t base[MAX_NEW], out[MAX_NEW];
    rk_spec_stats bst, st;
    rk_spec_options o = {.k = 4, .max_new = 32, .ignore_eos = 1};
    CHECK(rk_spec_greedy(&s, prompt_ids, N_PROMPT, &o, base, &bst) == RK_OK);
    int first = 0;
    while (first < bst.generated && base[first] != base[9])
        first++;
    const int eos = target->cfg.eos_id;
    target->cfg.eos_id = base[9];
    o.ignore_eos = 0;
    CHECK(rk_spec_greedy(&s, prompt_ids, N_PROMPT, &o, base, &bst) == RK_OK);
    CHECK(bst.generated == first + 1);
    for (int k = 1; k <= 8; k++) {
        o.k = k;
        CHECK(rk_spec_generate(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_OK);
        CHECKF(agrees(target, prompt_ids, N_PROMPT, base, bst.generated, out, st.generated),
               "K %d: %d tokens, want %d", k,
               st.generated, bst.generated);
    }
    target->cfg.eos_id = eos;
    rk_spec_release(&s);
}

/* The ReKV analysis when an end of text ends a round: each of the first
 * tokens of the greedy output in turn is taken as the end of text, so some
 * of them are kept proposals of a round that rejected a later one (that
 * rejection never happened, as far as the output goes). Every run ends
 * where greedy decoding ends, and the analysis accepts it. */
static void rekv_eos_in_round(rk_model *target, rk_model *draft)
{
    rk_rekv_observer obs;
    CHECK(rk_rekv_observer_init(&obs, &draft->cfg, &target->cfg) == RK_OK);
    const rk_spec_observer hooks = rk_rekv_observer_hooks(&obs);
    rk_spec s;
    CHECK(rk_spec_init(&s, target, draft, &hooks) == RK_OK);
    int32_t base[MAX_NEW], want[MAX_NEW], out[MAX_NEW];
    rk_spec_stats bst, st;
    rk_spec_options o = {.k = 4, .max_new = 32, .ignore_eos = 1};
    CHECK(rk_spec_greedy(&s, prompt_ids, N_PROMPT, &o, base, &bst) == RK_OK);
    const int eos = target->cfg.eos_id;
    o.ignore_eos = 0;
    int tried = 0, failed = 0;
    for (int i = 1; i < 24 && i < bst.generated; i++) {
        target->cfg.eos_id = base[i];
        rk_spec_stats wst;
        rk_rekv *acc = NULL;
        CHECK(rk_rekv_new(&draft->cfg, &target->cfg, o.k, &acc) == RK_OK);
        CHECK(rk_spec_greedy(&s, prompt_ids, N_PROMPT, &o, want, &wst) == RK_OK);
        const rk_status r = rk_rekv_generate(&s, &obs, acc, prompt_ids, N_PROMPT, &o, out, &st);
        failed += r != RK_OK || !agrees(target, prompt_ids, N_PROMPT, want, wst.generated, out,
                                        st.generated);
        if (r != RK_OK)
            printf("end of text %d: %s\n", (int)base[i], rk_last_error());
        tried++;
        rk_rekv_free(acc);
    }
    target->cfg.eos_id = eos;
    CHECKF(failed == 0, "%d of %d runs ended by an end of text failed", failed, tried);
    rk_spec_release(&s);
    rk_rekv_observer_release(&obs);
}

/* SnapKV compresses the target's prompt; rejected rows come after it and
 * roll back. */
static void snapkv_target(rk_model *draft)
{
    rk_model *target = load(NANO, 9, "snapkv", 34);
    if (!target || !draft) {
        rk_model_free(target);
        return;
    }
    int32_t prompt[40], base[MAX_NEW], out[MAX_NEW];
    for (int i = 0; i < 40; i++)
        prompt[i] = (int32_t)((i * 7919 + 13) % target->cfg.vocab);
    rk_spec s;
    CHECKF(rk_spec_init(&s, target, draft, NULL) == RK_OK, "%s", rk_last_error());
    rk_spec_stats bst, st;
    rk_spec_options o = {.k = 4, .max_new = 32, .ignore_eos = 1};
    CHECK(rk_spec_greedy(&s, prompt, 40, &o, base, &bst) == RK_OK);
    for (int k = 1; k <= 8; k++) {
        o.k = k;
        CHECKF(rk_spec_generate(&s, prompt, 40, &o, out, &st) == RK_OK, "%s", rk_last_error());
        CHECKF(same(out, st.generated, base, bst.generated), "snapkv, K %d differs", k);
        CHECK(st.accepted < st.proposed);
    }
    CHECK(s.target_seq.prompt == 40);
    rk_spec_release(&s);
    rk_model_free(target);
}

/* What cannot work is refused with a message. */
static void refusals(rk_model *target, rk_model *draft)
{
    if (!target || !draft)
        return;
    rk_spec s;
    int32_t out[MAX_NEW];
    rk_spec_stats st;
    CHECK(rk_spec_init(&s, target, draft, NULL) == RK_OK);
    CHECK(rk_spec_max_k(target) == RK_SPEC_MAX_K && RK_SPEC_MAX_K == 15);
    rk_spec_options o = {.k = 0, .max_new = 8};
    CHECK(rk_spec_generate(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_EINVAL);
    o.k = RK_SPEC_MAX_K + 1;
    CHECK(rk_spec_generate(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_ELIMIT &&
          strstr(rk_last_error(), "1..15"));
    o.k = 4;
    o.max_new = MAX_NEW + 1;
    CHECK(rk_spec_generate(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_ELIMIT);
    o.max_new = 8;
    int32_t long_prompt[MAX_PROMPT + 1] = {0};
    CHECK(rk_spec_generate(&s, long_prompt, MAX_PROMPT + 1, &o, out, &st) == RK_ELIMIT);
    rk_spec_release(&s);

    /* K beyond the plan: a target of 4 logits rows verifies up to 3. */
    rk_model *small = load(NANO, 4, "full", 0);
    if (small) {
        CHECK(rk_spec_max_k(small) == 3);
        CHECK(rk_spec_init(&s, small, draft, NULL) == RK_OK);
        o.k = 4;
        CHECK(rk_spec_generate(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_ELIMIT &&
              strstr(rk_last_error(), "1..3"));
        o.k = 3;
        CHECK(rk_spec_generate(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_OK);
        rk_spec_release(&s);
        rk_model_free(small);
    }
    /* A target of one logits row cannot verify at all. */
    rk_model *one = load(NANO, 1, "full", 0);
    if (one) {
        CHECK(rk_spec_init(&s, one, draft, NULL) == RK_ELIMIT &&
              strstr(rk_last_error(), "logits rows"));
        rk_model_free(one);
    }
    rk_limits tl = target->lim, dl = draft->lim;
    CHECK(rk_spec_check_limits(&tl, &dl, 0) == RK_ELIMIT);
    CHECK(rk_spec_check_limits(&tl, &dl, RK_SPEC_MAX_K + 1) == RK_ELIMIT);
    CHECK(rk_spec_check_limits(&tl, &dl, RK_SPEC_MAX_K) == RK_OK);
    /* Evicting policies cannot undo a rejected row. */
    const char *evicting[] = {"h2o", "streamingllm"};
    for (int i = 0; i < 2; i++) {
        rk_model *ev = load(NANO, 9, evicting[i], 24);
        if (ev) {
            CHECK(rk_spec_init(&s, ev, draft, NULL) == RK_EINVAL &&
                  strstr(rk_last_error(), "evicts"));
            CHECK(rk_spec_init(&s, target, ev, NULL) == RK_EINVAL &&
                  strstr(rk_last_error(), "draft"));
            rk_model_free(ev);
        }
    }
}

/* Writes DIR/tokenizer.json: nano's, with CHANGE applied. */
static void write_tokenizer(const char *dir, void (*change)(cJSON *root))
{
    char *text;
    size_t len;
    CHECK(rk_read_file(NANO "/tokenizer.json", SIZE_MAX, &text, &len) == RK_OK);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    change(root);
    char *json = cJSON_PrintUnformatted(root);
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(json, f) >= 0 && fclose(f) == 0);
    free(json);
    cJSON_Delete(root);
}

static cJSON *model_key(cJSON *root, const char *key)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), key);
}

static void swap_two_ids(cJSON *root)
{
    cJSON *vocab = model_key(root, "vocab");
    cJSON *a = cJSON_GetObjectItem(vocab, "the"), *b = cJSON_GetObjectItem(vocab, "and");
    CHECK(a && b);
    const double t = a->valuedouble;
    cJSON_SetNumberValue(a, b->valuedouble);
    cJSON_SetNumberValue(b, t);
}

static void drop_last_merge(cJSON *root)
{
    cJSON *merges = model_key(root, "merges");
    cJSON_DeleteItemFromArray(merges, cJSON_GetArraySize(merges) - 1);
}

static void reorder_merges(cJSON *root)
{
    cJSON *merges = model_key(root, "merges");
    cJSON *first = cJSON_DetachItemFromArray(merges, 0);
    cJSON_AddItemToArray(merges, first);
}

/* The legacy form of the same merges: "a b" strings instead of pairs. */
static void legacy_merges(cJSON *root)
{
    cJSON *merges = model_key(root, "merges");
    char text[256];
    for (int i = 0; i < cJSON_GetArraySize(merges); i++) {
        const cJSON *pair = cJSON_GetArrayItem(merges, i);
        snprintf(text, sizeof text, "%s %s", cJSON_GetArrayItem(pair, 0)->valuestring,
                 cJSON_GetArrayItem(pair, 1)->valuestring);
        cJSON_ReplaceItemInArray(merges, i, cJSON_CreateString(text));
    }
}

static void tokenizers(void)
{
    CHECKF(rk_spec_check_tokenizers(NANO, NANO, 8192, 8192) == RK_OK, "%s", rk_last_error());
    CHECK(rk_spec_check_tokenizers(NANO, NANO, 8192, 1000) != RK_OK);
    char dir[96];
    snprintf(dir, sizeof dir, "%s/other-tokenizer", tmp);
    CHECK(mkdir(dir, 0700) == 0);
    const struct {
        void (*change)(cJSON *);
        const char *says;
    } cases[] = {{swap_two_ids, "token 'and' is id"},
                 {drop_last_merge, "merges"},
                 {reorder_merges, "merge 0 is"}};
    for (int i = 0; i < 3; i++) {
        write_tokenizer(dir, cases[i].change);
        CHECK(rk_spec_check_tokenizers(NANO, dir, 8192, 8192) == RK_EINVAL);
        printf("refused: %s\n", rk_last_error());
        CHECKF(strstr(rk_last_error(), "different tokenizers") &&
                   strstr(rk_last_error(), cases[i].says),
               "%s", rk_last_error());
    }
    write_tokenizer(dir, legacy_merges);
    CHECKF(rk_spec_check_tokenizers(NANO, dir, 8192, 8192) == RK_OK, "legacy merges: %s",
           rk_last_error());
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    rmdir(dir);
    if (access(MINI "/tokenizer.json", R_OK) == 0)
        CHECKF(rk_spec_check_tokenizers(MINI, NANO, 8192, 8192) == RK_OK, "%s", rk_last_error());
}

/* After start-up nothing allocates: speculative rounds, with and without
 * an observer that needs logits, and the baseline. */
static void no_allocations(rk_model *target, rk_model *draft)
{
#ifdef RK_SPEC_COUNT_ALLOCS
    if (!target || !draft)
        return;
    atomic_store(&counting, 1);
    free(malloc(16));
    atomic_store(&counting, 0);
    CHECKF(atomic_load(&calls) == 1, "the malloc hook is not active (%ld calls)",
           atomic_load(&calls));
    int32_t out[MAX_NEW];
    rk_spec_stats st;
    watch w = {0};
    const rk_spec_observer obs = {.user = &w, .needs_logits = 1, .on_round = on_round};
    for (int logits = 0; logits < 2; logits++) {
        rk_spec s;
        CHECK(rk_spec_init(&s, target, draft, logits ? &obs : NULL) == RK_OK);
        const rk_spec_options o = {.k = 5, .max_new = MAX_NEW, .ignore_eos = 1};
        CHECK(rk_spec_generate(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_OK);
        atomic_store(&calls, 0);
        atomic_store(&counting, 1);
        int ok = rk_spec_generate(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_OK &&
                 rk_spec_greedy(&s, prompt_ids, N_PROMPT, &o, out, &st) == RK_OK;
        atomic_store(&counting, 0);
        CHECK(ok);
        printf("allocations during speculative decoding (observer %s): %ld\n",
               logits ? "with logits" : "none", atomic_load(&calls));
        CHECK(atomic_load(&calls) == 0);
        rk_spec_release(&s);
    }
#else
    (void)target;
    (void)draft;
    printf("allocations: not counted in a sanitized build\n");
#endif
}

static void formula(void)
{
    CHECK(fabs(rk_spec_expected_tokens(0.5, 1) - 1.5) < 1e-12);
    CHECK(fabs(rk_spec_expected_tokens(0.9, 8) - (1 - pow(0.9, 9)) / 0.1) < 1e-12);
    CHECK(rk_spec_expected_tokens(1.0, 4) == 5.0);
    CHECK(rk_spec_expected_tokens(0.0, 4) == 1.0);
    /* Free drafts and a verification as cheap as a step: the tokens per round. */
    CHECK(fabs(rk_spec_speedup(0.7, 3, 0.0, 1.0, 1.0) - rk_spec_expected_tokens(0.7, 3)) < 1e-12);
    CHECK(fabs(rk_spec_speedup(0.5, 2, 0.1, 1.2, 1.0) - 1.75 / 1.4) < 1e-12);
}

/* A random-weight draft of pythia-nano's shape and vocabulary, written by
 * rankkv-make-random-model. */
static int make_random_draft(void)
{
    snprintf(random_dir, sizeof random_dir, "%s/random-nano", tmp);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "'%s/rankkv-make-random-model' --preset pythia-nano-shape --seed 7 --out '%s' "
             ">/dev/null 2>&1",
             RK_BIN_DIR, random_dir);
    const int ok = system(cmd) == 0;
    CHECKF(ok, "%s failed", cmd);
    return ok;
}

static void remove_random_draft(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", random_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", random_dir);
    unlink(path);
    rmdir(random_dir);
    rmdir(tmp);
}

int main(int argc, char **argv)
{
    ops = rk_test_require_target(argc > 1 ? argv[1] : "cpu");
    cpu = strcmp(ops->name, "cpu") == 0;
    CHECK(mkdtemp(tmp) != NULL);
    formula();
    tokenizers();
    const int have_random = make_random_draft();

    rk_model *nano = load_target(NANO), *nano_draft = load_draft(NANO);
    rk_model *random = have_random ? load_draft(random_dir) : NULL;
    exact_on_goldens(nano, nano_draft, NANO, "nano -> nano", ACCEPT_ALL);
    exact_on_goldens(nano, random, NANO, "random -> nano", ACCEPT_FEW);
    rollback_and_observer(nano, random);
    rekv_protocol(nano, random, "random -> nano");
    stops_at_eos(nano, nano_draft);
    stops_at_eos(nano, random);
    snapkv_target(random);
    refusals(nano, nano_draft);
    if (cpu)
        no_allocations(nano, random);

    if (access(MINI "/model.safetensors", R_OK) == 0) {
        rk_model *mini = load_target(MINI), *mini_draft = load_draft(MINI);
        exact_on_goldens(mini, nano_draft, MINI, "nano -> mini", ACCEPT_SOME);
        exact_on_goldens(mini, mini_draft, MINI, "mini -> mini", ACCEPT_ALL);
        exact_on_goldens(mini, random, MINI, "random -> mini", ACCEPT_FEW);
        rollback_and_observer(mini, nano_draft);
        rekv_protocol(mini, nano_draft, "nano -> mini");
        rekv_eos_in_round(mini, nano_draft);
        rk_model_free(mini);
        rk_model_free(mini_draft);
    } else {
        printf("SKIP (part): %s is absent; the pythia-mini cases did not run\n", MINI);
    }
    rk_model_free(nano);
    rk_model_free(nano_draft);
    rk_model_free(random);
    if (have_random)
        remove_random_draft();
    else
        rmdir(tmp);
    return rk_test_finish("test_speculative");
}
