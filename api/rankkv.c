/* The public API (include/rankkv.h) over core: a handle is a model, its
 * tokenizer, a sampler and one sequence. */
#include "rankkv.h"

#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "profile.h"
#include "sampler.h"
#include "targets.h"
#include "tokenizer.h"

struct rankkv {
    rk_model *m;
    rk_tokenizer *tok;
    rk_sampler sampler;
    rk_seq seq;
    char error[1024];
};

/* The core's codes are the API's, value for value. */
_Static_assert(RANKKV_EDEVICE == (int)RK_EDEVICE && RANKKV_EINVAL == (int)RK_EINVAL,
               "rankkv_status mirrors rk_status");

static rankkv_status failed(rankkv *r, rk_status st)
{
    if (r && st != RK_OK)
        snprintf(r->error, sizeof r->error, "%s", rk_last_error());
    return (rankkv_status)st;
}

static rankkv_status done(rankkv *r, rk_status st)
{
    if (st == RK_OK)
        r->error[0] = '\0';
    return failed(r, st);
}

void rankkv_options_default(rankkv_options *o)
{
    *o = (rankkv_options){.target = "cpu", .max_new_tokens = 64, .prefill_chunk = 256,
                          .kv = "full"};
}

void rankkv_sampling_default(rankkv_sampling *s)
{
    *s = (rankkv_sampling){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
}

/* The target (*OPS), the KV policy and the limits O asks for on the model in
 * DIR of config CFG. */
static rk_status limits_for(const char *dir, const rankkv_options *o, const rk_config *cfg,
                            const rk_ops **ops_out, rk_limits *lim)
{
    const char *target = o->target ? o->target : "cpu";
    const rk_ops *ops = *ops_out = rk_target_find(target);
    /* A target this build or machine lacks is a device failure, an unknown
     * name a bad argument; rk_target_find's message says which. */
    if (!ops)
        return strcmp(target, "cpu") == 0 || strcmp(target, "cuda") == 0 ? RK_EDEVICE : RK_EINVAL;
    rk_kv_options kv = {.method = o->kv,
                        .average = o->kv_budget,
                        .budgets = o->kv_budgets,
                        .n_budgets = o->kv_layers,
                        .window = o->kv_window,
                        .pool = o->kv_pool,
                        .sinks = o->kv_sinks,
                        .recent = o->kv_recent,
                        .beta = o->pyramid_beta,
                        .profile = o->profile,
                        .rank = {.temperature = o->rank_temperature, .power = o->rank_power,
                                 .tiers = o->rank_tiers, .seed = o->rank_seed}};
    rk_status st;
    if (o->rank_strategy && (st = rk_rank_strategy_parse(o->rank_strategy, &kv.rank.strategy)) != RK_OK)
        return st;
    if ((st = rk_kv_options_find_profile(&kv, dir)) != RK_OK)
        return st;
    if (o->max_new_tokens < 0 || o->max_prompt < 0)
        return rk_fail(RK_ELIMIT, "max_prompt %d and max_new_tokens %d must not be negative",
                       o->max_prompt, o->max_new_tokens);
    int max_prompt = o->max_prompt;
    if (max_prompt == 0) {
        const int ctx = cfg->max_pos < 2048 ? cfg->max_pos : 2048;
        if (o->max_new_tokens >= ctx)
            return rk_fail(RK_ELIMIT, "%d new tokens leave no room for a prompt in a context of %d",
                           o->max_new_tokens, ctx);
        max_prompt = ctx - o->max_new_tokens;
    }
    kv.max_rows = max_prompt;
    *lim = (rk_limits){.max_prompt = max_prompt, .max_new_tokens = o->max_new_tokens,
                       .logits_rows = 1, .kv_format = ops->kv_format, .kv_group = o->kv_group,
                       .kv_residual = o->kv_residual, .kv_bits_avg = o->kv_bits_avg};
    if (o->kv_dtype && (st = rk_kv_format_parse(o->kv_dtype, &lim->kv_format)) != RK_OK)
        return st;
    if (o->kv_precision &&
        (st = rk_kv_precision_parse(o->kv_precision, &lim->kv_precision)) != RK_OK)
        return st;
    /* A profile the options name or the rankkv policy found serves rank
     * precision too. */
    if (lim->kv_precision == RK_KV_RANK && !(lim->kv_profile = kv.profile) &&
        (st = rk_profile_for(dir, &lim->kv_profile)) != RK_OK)
        return st;
    if ((st = rk_kv_policy_make(&kv, cfg->n_layers, &lim->kv)) != RK_OK)
        return st;
    lim->prefill_chunk = rk_limits_prompt_passes(lim) || o->prefill_chunk > max_prompt
                             ? max_prompt
                             : o->prefill_chunk;
    return RK_OK;
}

static rk_status read_config(const char *dir, rk_config *cfg)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/config.json", dir) >= sizeof path)
        return rk_fail(RK_EINVAL, "model directory path too long");
    return rk_config_load(path, cfg);
}

rankkv_status rankkv_plan(const char *model_dir, const rankkv_options *o, FILE *print,
                          size_t *weights_bytes, size_t *arena_bytes, char *err, size_t err_len)
{
    rk_config cfg;
    rk_limits lim;
    const rk_ops *ops;
    rk_model *m = calloc(1, sizeof *m);
    rk_status st = m ? RK_OK : rk_fail(RK_ENOMEM, "out of memory for the plan");
    if (st == RK_OK && (st = read_config(model_dir, &cfg)) == RK_OK &&
        (st = limits_for(model_dir, o, &cfg, &ops, &lim)) == RK_OK)
        st = rk_model_plan(&cfg, ops, &lim, m);
    if (st == RK_OK) {
        if (print)
            rk_model_print_plan(m, print);
        if (weights_bytes)
            *weights_bytes = m->wplan.total;
        if (arena_bytes)
            *arena_bytes = m->plan.total;
    } else if (err && err_len) {
        snprintf(err, err_len, "%s", rk_last_error());
    }
    free(m);
    return (rankkv_status)st;
}

rankkv_status rankkv_open(const char *model_dir, const rankkv_options *o, rankkv **out)
{
    rankkv *r = *out = calloc(1, sizeof *r);
    if (!r)
        return RANKKV_ENOMEM;
    rk_config cfg;
    rk_limits lim;
    char path[4096];
    rk_status st;
    const rk_sampling greedy = {.top_p = 1.0f};
    const rk_ops *ops;
    if ((st = read_config(model_dir, &cfg)) != RK_OK ||
        (st = limits_for(model_dir, o, &cfg, &ops, &lim)) != RK_OK ||
        (st = rk_model_load(model_dir, ops, &lim, &r->m)) != RK_OK)
        return failed(r, st);
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    if ((st = rk_tok_load(path, &r->tok)) != RK_OK ||
        (st = rk_tok_check_vocab(r->tok, r->m->cfg.vocab)) != RK_OK ||
        (st = rk_sampler_init(&r->sampler, &greedy, r->m->cfg.vocab)) != RK_OK)
        return failed(r, st);
    rk_seq_reset(&r->seq);
    return RANKKV_OK;
}

void rankkv_close(rankkv *r)
{
    if (!r)
        return;
    rk_sampler_free(&r->sampler);
    rk_tok_free(r->tok);
    rk_model_free(r->m);
    free(r);
}

const char *rankkv_last_error(const rankkv *r) { return r ? r->error : "no handle"; }

/* A call on a handle whose rankkv_open failed. */
static rk_status unusable(const rankkv *r)
{
    return r->m && r->tok ? RK_OK
                          : rk_fail(RK_EINVAL, "the handle did not open (%s)", r->error);
}

rankkv_status rankkv_print_plan(rankkv *r, FILE *f)
{
    rk_status st = unusable(r);
    if (st == RK_OK)
        rk_model_print_plan(r->m, f);
    return done(r, st);
}

size_t rankkv_memory_bytes(const rankkv *r) { return r->m ? rk_model_memory_bytes(r->m) : 0; }

rankkv_status rankkv_reset(rankkv *r)
{
    rk_seq_reset(&r->seq);
    return done(r, RK_OK);
}

/* The ids (malloc'd) of TEXT, of which at most LIMIT (0: any number) are
 * wanted: a longer text is refused before all of it is tokenized. */
static rk_status encode(rankkv *r, const char *text, size_t len, size_t limit, int32_t **ids,
                        size_t *n)
{
    rk_status st = rk_tok_encode_prefix(r->tok, text, len, limit ? limit + 1 : 0, ids, n);
    if (st == RK_OK && *n == 0)
        st = rk_fail(RK_EINVAL, "the text is empty");
    else if (st == RK_OK && limit && *n > limit)
        st = rk_fail(RK_ELIMIT, "the prompt has more than %zu tokens; the plan allows %zu", limit,
                     limit);
    if (st != RK_OK) {
        free(*ids);
        *ids = NULL;
    }
    return st;
}

rankkv_status rankkv_tokenize(rankkv *r, const char *text, size_t len, int32_t *ids, int cap,
                              int *n)
{
    int32_t *all = NULL;
    size_t made = 0;
    rk_status st = unusable(r);
    if (st == RK_OK && cap < 0)
        st = rk_fail(RK_EINVAL, "room for %d ids", cap);
    if (st == RK_OK)
        st = rk_tok_encode_prefix(r->tok, text, len, (size_t)cap + 1, &all, &made);
    if (st == RK_OK) {
        memcpy(ids, all, (made < (size_t)cap ? made : (size_t)cap) * sizeof *ids);
        *n = made > (size_t)cap ? cap + 1 : (int)made;
    }
    free(all);
    return done(r, st);
}

/* The next token after a one-token step of TOKEN, sampled: top-k needs
 * only the largest logits, which a target may find without copying the
 * logits back. */
static rk_status step(rankkv *r, int32_t token, int32_t *next)
{
    rk_model *m = r->m;
    const rk_sampling *s = &r->sampler.cfg;
    if (m->ops->top_k && s->top_k >= 1 && s->top_k <= RK_TOP_K_MAX && s->top_k <= m->cfg.vocab) {
        float vals[RK_TOP_K_MAX];
        int32_t ids[RK_TOP_K_MAX];
        rk_status st = rk_model_forward_top_k(m, &r->seq, &token, 1, s->top_k, vals, ids);
        if (st == RK_OK)
            *next = rk_sample_top_k(&r->sampler, vals, ids, s->top_k);
        return st;
    }
    rk_status st = rk_model_forward(m, &r->seq, &token, 1);
    if (st == RK_OK)
        *next = rk_sample(&r->sampler, rk_model_logits(m, 0));
    return st;
}

rankkv_status rankkv_generate(rankkv *r, const char *prompt, size_t len, int max_new_tokens,
                              const rankkv_sampling *s, rankkv_token_fn fn, void *user,
                              int *n_generated)
{
    rankkv_sampling greedy;
    rankkv_sampling_default(&greedy);
    const rankkv_sampling *cfg = s ? s : &greedy;
    const rk_sampling sampling = {.temperature = cfg->temperature, .top_k = cfg->top_k,
                                  .top_p = cfg->top_p, .seed = cfg->seed};
    int32_t *ids = NULL;
    size_t n = 0;
    int made = 0;
    rk_status st = unusable(r);
    if (st == RK_OK && (max_new_tokens < 1 || max_new_tokens > r->m->lim.max_new_tokens))
        st = rk_fail(RK_ELIMIT, "%d new tokens; the plan allows 1..%d", max_new_tokens,
                     r->m->lim.max_new_tokens);
    if (st == RK_OK)
        st = rk_sampler_configure(&r->sampler, &sampling);
    if (st == RK_OK)
        st = encode(r, prompt, len, (size_t)r->m->lim.max_prompt, &ids, &n);
    int32_t next = 0;
    if (st == RK_OK) {
        rk_seq_reset(&r->seq);
        if (cfg->temperature == 0.0f)
            st = rk_model_prefill_argmax(r->m, &r->seq, ids, (int)n, &next);
        else if ((st = rk_model_prefill(r->m, &r->seq, ids, (int)n)) == RK_OK)
            next = rk_sample(&r->sampler, rk_model_logits(r->m, 0));
    }
    /* Greedy tokens come in runs decoded ahead on the device; what follows
     * the end of the text in a run is dropped. */
    int32_t run[RK_GREEDY_RUN];
    int in_run = 0, taken = 0;
    while (st == RK_OK) {
        made++;
        const char *bytes;
        const size_t nb = rk_tok_token_bytes(r->tok, next, &bytes);
        if ((fn && fn(user, next, bytes, nb) != 0) || made == max_new_tokens ||
            (next == r->m->cfg.eos_id && !cfg->ignore_eos))
            break;
        if (cfg->temperature != 0.0f) {
            st = step(r, next, &next);
            continue;
        }
        if (taken == in_run) {
            const int left = max_new_tokens - made;
            in_run = left < RK_GREEDY_RUN ? left : RK_GREEDY_RUN;
            taken = 0;
            st = rk_model_decode_greedy(r->m, &r->seq, next, in_run, run);
        }
        if (st == RK_OK)
            next = run[taken++];
    }
    free(ids);
    if (n_generated)
        *n_generated = made;
    return done(r, st);
}

rankkv_status rankkv_score(rankkv *r, const char *text, size_t len, double *nll, long *tokens)
{
    int32_t *ids = NULL;
    size_t n = 0;
    double sum = 0;
    long scored = 0;
    rk_status st = unusable(r);
    if (st == RK_OK)
        st = encode(r, text, len, 0, &ids, &n);
    rk_model *m = st == RK_OK ? r->m : NULL;
    /* Windows of the planned context, each a prompt whose last logits
     * predict the next token, then one decode step per scored token. The
     * full cache's prompt is the window's first token, so every other token
     * is scored; a compressing policy's is all but the last max_new tokens,
     * so that it is judged after compressing, as rankkv-eval judges it. */
    const size_t window = m ? (size_t)m->cap : 0;
    for (size_t at = 0; st == RK_OK && at + 1 < n; at += window) {
        const int w = (int)(n - at < window ? n - at : window);
        const int tail = m->lim.max_new_tokens < w - 1 ? m->lim.max_new_tokens : w - 1;
        const int prompt = rk_limits_prompt_passes(&m->lim) ? w - tail : 1;
        const int32_t *win = ids + at;
        double t = 0;
        rk_seq_reset(&r->seq);
        if ((st = rk_model_prefill(m, &r->seq, win, prompt)) == RK_OK &&
            (st = rk_model_score_steps(m, &r->seq, win + prompt, w - prompt, &t)) == RK_OK) {
            sum += t;
            scored += w - prompt;
        }
    }
    if (st == RK_OK && scored == 0)
        st = rk_fail(RK_EINVAL, "the text has %zu token(s): nothing to score", n);
    free(ids);
    if (st == RK_OK) {
        *nll = sum;
        *tokens = scored;
    }
    return done(r, st);
}
