#include "speculative.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "textio.h"
#include "tokenizer.h"

/* A tokenizer.json is a few MB at most (Pythia's is 2 MB); anything near
 * this is not one. */
#define RK_MAX_TOKENIZER_FILE ((size_t)256 << 20)

int rk_spec_max_k(const rk_model *target)
{
    const int k = target->lim.logits_rows - 1;
    return k < RK_SPEC_MAX_K ? k : RK_SPEC_MAX_K;
}

static rk_status check_policy(const rk_limits *lim, const char *which)
{
    if (rk_kv_hooks_of(&lim->kv)->after_decode_attention)
        return rk_fail(RK_EINVAL,
                       "speculative decoding rolls rejected tokens back, and the %s's KV policy "
                       "%s evicts rows as it decodes, which cannot be undone (full and the "
                       "prompt-compressing policies can)",
                       which, rk_kv_policy_name(&lim->kv));
    return RK_OK;
}

rk_status rk_spec_check_limits(const rk_limits *target, const rk_limits *draft, int k_max)
{
    if (k_max < 1 || k_max > RK_SPEC_MAX_K)
        return rk_fail(RK_ELIMIT, "%d proposals per round; a round verifies 1..%d", k_max,
                       RK_SPEC_MAX_K);
    if (target->logits_rows < k_max + 1)
        return rk_fail(RK_ELIMIT,
                       "verifying %d proposals needs %d logits rows; the target's plan has %d",
                       k_max, k_max + 1, target->logits_rows);
    rk_status st = check_policy(target, "target");
    return st == RK_OK ? check_policy(draft, "draft") : st;
}

/* DIR/tokenizer.json, parsed. */
static rk_status read_tokenizer(const char *dir, cJSON **out)
{
    char path[4096];
    char *text;
    size_t len;
    if (snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= (int)sizeof path)
        return rk_fail(RK_EINVAL, "the path %s/tokenizer.json is too long", dir);
    rk_status st = rk_read_file(path, RK_MAX_TOKENIZER_FILE, &text, &len);
    if (st != RK_OK)
        return st;
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    return *out ? RK_OK : rk_fail(RK_EFORMAT, "%s is not JSON", path);
}

static const cJSON *model_item(const cJSON *root, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), key);
}

/* A merge's two parts, from the legacy "a b" string or the newer ["a", "b"]
 * pair, which name the same rule: A is *ALEN bytes, B NUL-terminated. */
static int merge_parts(const cJSON *m, const char **a, size_t *alen, const char **b)
{
    if (cJSON_IsString(m)) {
        const char *space = strchr(m->valuestring, ' ');
        if (!space)
            return 0;
        *a = m->valuestring;
        *alen = (size_t)(space - m->valuestring);
        *b = space + 1;
        return 1;
    }
    const cJSON *x = cJSON_GetArrayItem(m, 0), *y = cJSON_GetArrayItem(m, 1);
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2 || !cJSON_IsString(x) || !cJSON_IsString(y))
        return 0;
    *a = x->valuestring;
    *alen = strlen(x->valuestring);
    *b = y->valuestring;
    return 1;
}

static rk_status same_vocab(const cJSON *t, const cJSON *d)
{
    if (!cJSON_IsObject(t) || !cJSON_IsObject(d))
        return rk_fail(RK_EFORMAT, "a tokenizer.json without a model.vocab object");
    if (cJSON_GetArraySize(t) != cJSON_GetArraySize(d))
        return rk_fail(RK_EINVAL, "the target's vocabulary has %d tokens, the draft's %d",
                       cJSON_GetArraySize(t), cJSON_GetArraySize(d));
    /* Two copies of one tokenizer list the tokens in the same order: walk
     * both together and look a token up (a linear search) only where they
     * part, which keeps Pythia's 50k tokens from costing 50k searches. */
    const cJSON *e, *same = d->child;
    cJSON_ArrayForEach(e, t)
    {
        const cJSON *o = same && strcmp(same->string, e->string) == 0
                             ? same
                             : cJSON_GetObjectItemCaseSensitive(d, e->string);
        same = same ? same->next : NULL;
        if (!o)
            return rk_fail(RK_EINVAL, "the target's token '%s' is not in the draft's vocabulary",
                           e->string);
        if (!cJSON_IsNumber(e) || !cJSON_IsNumber(o) || e->valuedouble != o->valuedouble)
            return rk_fail(RK_EINVAL, "token '%s' is id %g for the target, %g for the draft",
                           e->string, e->valuedouble, o->valuedouble);
    }
    return RK_OK;
}

static rk_status same_merges(const cJSON *t, const cJSON *d)
{
    if (!cJSON_IsArray(t) || !cJSON_IsArray(d))
        return rk_fail(RK_EFORMAT, "a tokenizer.json without a model.merges array");
    if (cJSON_GetArraySize(t) != cJSON_GetArraySize(d))
        return rk_fail(RK_EINVAL, "the target's tokenizer has %d merges, the draft's %d",
                       cJSON_GetArraySize(t), cJSON_GetArraySize(d));
    int i = 0;
    for (const cJSON *x = t->child, *y = d->child; x && y; x = x->next, y = y->next, i++) {
        const char *xa, *xb, *ya, *yb;
        size_t xn, yn;
        if (!merge_parts(x, &xa, &xn, &xb) || !merge_parts(y, &ya, &yn, &yb))
            return rk_fail(RK_EFORMAT, "merge %d of a tokenizer.json is not a pair", i);
        if (xn != yn || memcmp(xa, ya, xn) != 0 || strcmp(xb, yb) != 0)
            return rk_fail(RK_EINVAL, "merge %d is '%.*s %s' for the target, '%.*s %s' for the "
                                      "draft",
                           i, (int)xn, xa, xb, (int)yn, ya, yb);
    }
    return RK_OK;
}

/* Added tokens by id and content (their matching flags change how text
 * splits only around them). */
static rk_status same_added(const cJSON *t, const cJSON *d)
{
    if (cJSON_GetArraySize(t) != cJSON_GetArraySize(d))
        return rk_fail(RK_EINVAL, "the target's tokenizer has %d added tokens, the draft's %d",
                       cJSON_GetArraySize(t), cJSON_GetArraySize(d));
    for (const cJSON *x = t ? t->child : NULL, *y = d ? d->child : NULL; x && y;
         x = x->next, y = y->next) {
        const cJSON *xi = cJSON_GetObjectItemCaseSensitive(x, "id");
        const cJSON *yi = cJSON_GetObjectItemCaseSensitive(y, "id");
        const cJSON *xc = cJSON_GetObjectItemCaseSensitive(x, "content");
        const cJSON *yc = cJSON_GetObjectItemCaseSensitive(y, "content");
        if (!cJSON_Compare(xi, yi, 1) || !cJSON_Compare(xc, yc, 1))
            return rk_fail(RK_EINVAL, "added token '%s' (id %g) for the target is '%s' (id %g) "
                                      "for the draft",
                           cJSON_IsString(xc) ? xc->valuestring : "?", cJSON_GetNumberValue(xi),
                           cJSON_IsString(yc) ? yc->valuestring : "?", cJSON_GetNumberValue(yi));
    }
    return RK_OK;
}

rk_status rk_spec_check_tokenizers(const char *target_dir, const char *draft_dir,
                                   int target_vocab, int draft_vocab)
{
    cJSON *t = NULL, *d = NULL;
    rk_status st = read_tokenizer(target_dir, &t);
    if (st == RK_OK)
        st = read_tokenizer(draft_dir, &d);
    if (st == RK_OK && ((st = same_vocab(model_item(t, "vocab"), model_item(d, "vocab"))) != RK_OK ||
                        (st = same_merges(model_item(t, "merges"), model_item(d, "merges"))) != RK_OK ||
                        (st = same_added(cJSON_GetObjectItemCaseSensitive(t, "added_tokens"),
                                         cJSON_GetObjectItemCaseSensitive(d, "added_tokens"))) != RK_OK))
        st = rk_fail(st, "the draft %s and the target %s have different tokenizers: %s", draft_dir,
                     target_dir, rk_last_error());
    cJSON_Delete(t);
    cJSON_Delete(d);
    if (st != RK_OK)
        return st;
    /* Equal files: one tokenizer, whose ids must have a row in both
     * models' embeddings. */
    char path[4096];
    rk_tokenizer *tok;
    snprintf(path, sizeof path, "%s/tokenizer.json", target_dir);
    if ((st = rk_tok_load(path, &tok)) != RK_OK)
        return st;
    if ((st = rk_tok_check_vocab(tok, target_vocab)) != RK_OK ||
        (st = rk_tok_check_vocab(tok, draft_vocab)) != RK_OK)
        st = rk_fail(st, "%s (target vocab_size %d, draft %d)", rk_last_error(), target_vocab,
                     draft_vocab);
    rk_tok_free(tok);
    return st;
}

rk_status rk_spec_init(rk_spec *s, rk_model *target, rk_model *draft,
                       const rk_spec_observer *obs)
{
    memset(s, 0, sizeof *s);
    const int k_max = rk_spec_max_k(target);
    rk_status st = rk_spec_check_limits(&target->lim, &draft->lim, k_max < 1 ? 1 : k_max);
    if (st != RK_OK)
        return st;
    s->target = target;
    s->draft = draft;
    if (obs)
        s->obs = *obs;
    if (s->obs.needs_logits) {
        s->draft_logits = malloc((size_t)RK_SPEC_MAX_K * draft->cfg.vocab * sizeof(float));
        if (!s->draft_logits)
            return rk_fail(RK_ENOMEM, "out of host memory for %d rows of the draft's logits",
                           RK_SPEC_MAX_K);
    }
    return RK_OK;
}

void rk_spec_release(rk_spec *s)
{
    free(s->draft_logits);
    s->draft_logits = NULL;
}

/* A prompt and a generation length both plans hold. */
static rk_status check_run(const rk_spec *s, int n, const rk_spec_options *o)
{
    const rk_model *m[2] = {s->target, s->draft};
    if (o->max_new < 1)
        return rk_fail(RK_EINVAL, "%d new tokens; at least 1", o->max_new);
    for (int i = 0; i < 2 && m[i]; i++) {
        if (n < 1 || n > m[i]->lim.max_prompt)
            return rk_fail(RK_ELIMIT, "a prompt of %d tokens; the %s's plan allows 1..%d", n,
                           i ? "draft" : "target", m[i]->lim.max_prompt);
        if (o->max_new > m[i]->lim.max_new_tokens)
            return rk_fail(RK_ELIMIT, "%d new tokens; the %s's plan allows %d", o->max_new,
                           i ? "draft" : "target", m[i]->lim.max_new_tokens);
    }
    return RK_OK;
}

/* The prompt on M from position 0; *FORWARDS counts its chunks. */
static rk_status prefill(rk_model *m, rk_seq *seq, const int32_t *prompt, int n, int *forwards)
{
    rk_seq_reset(seq);
    *forwards += (n + m->lim.prefill_chunk - 1) / m->lim.prefill_chunk;
    return rk_model_prefill(m, seq, prompt, n);
}

/* The target's first token: the argmax of the prompt's last row. */
static int32_t first_token(const rk_model *m)
{
    return rk_argmax(rk_model_logits(m, m->n_logits - 1), m->cfg.vocab);
}

static int ends(const rk_model *target, const rk_spec_options *o, int32_t token)
{
    return !o->ignore_eos && token == target->cfg.eos_id;
}

/* A draft step of N tokens: *NEXT gets its argmax after the last, and ROW
 * (when not NULL) that row of logits. */
static rk_status draft_step(rk_spec *s, const int32_t *in, int n, int32_t *next, float *row)
{
    rk_model *d = s->draft;
    if (!row)
        return rk_model_forward_argmax(d, &s->draft_seq, in, n, next);
    rk_status st = rk_model_forward(d, &s->draft_seq, in, n);
    if (st == RK_OK) {
        const float *l = rk_model_logits(d, d->n_logits - 1);
        memcpy(row, l, (size_t)d->cfg.vocab * sizeof(float));
        *next = rk_argmax(l, d->cfg.vocab);
    }
    return st;
}

/* The target's step of N rows and its argmax after each. */
static rk_status verify(rk_spec *s, const int32_t *tokens, int n, int32_t *next)
{
    rk_model *t = s->target;
    if (!s->obs.needs_logits)
        return rk_model_forward_argmax_rows(t, &s->target_seq, tokens, n, next);
    rk_status st = rk_model_forward(t, &s->target_seq, tokens, n);
    for (int r = 0; r < n && st == RK_OK; r++)
        next[r] = rk_argmax(rk_model_logits(t, r), t->cfg.vocab);
    return st;
}

/* Proposals for a round of up to K after OUT[0..g), into TOKENS[1..]:
 * the draft first runs what it has not (the last token out, after the last
 * proposal of a round that kept all of them), then one step per proposal.
 * Returns how many it made; fewer than K where a proposal has no target id
 * (it could never be kept; the draft has run it all the same). */
static int propose(rk_spec *s, const int32_t *out, int g, int k, int32_t *tokens,
                   rk_spec_stats *stats, rk_status *st)
{
    const int behind = s->target_seq.n_past - s->draft_seq.n_past;
    const int32_t *in = out + g - 1 - behind;
    int made = 0;
    while (made < k && *st == RK_OK) {
        int32_t p;
        float *row = s->draft_logits ? s->draft_logits + (size_t)made * s->draft->cfg.vocab : NULL;
        *st = made == 0 ? draft_step(s, in, behind + 1, &p, row)
                        : draft_step(s, &tokens[made], 1, &p, row);
        stats->draft_steps++;
        if (*st != RK_OK || p >= s->target->cfg.vocab)
            break;
        tokens[++made] = p;
    }
    return made;
}

/* Whether the draft can read every token out that it has not run: the
 * target may emit an id past the draft's vocab_size, which only a model
 * that never learnt its tokenizer picks; the draft then proposes no more. */
static int draft_can_read(const rk_spec *s, const int32_t *out, int g)
{
    const int behind = s->target_seq.n_past - s->draft_seq.n_past;
    for (int i = g - 1 - behind; i < g; i++)
        if (out[i] >= s->draft->cfg.vocab)
            return 0;
    return 1;
}

rk_status rk_spec_generate(rk_spec *s, const int32_t *prompt, int n, const rk_spec_options *o,
                           int32_t *out, rk_spec_stats *stats)
{
    rk_model *t = s->target;
    const int k_max = rk_spec_max_k(t);
    memset(stats, 0, sizeof *stats);
    if (o->k < 1 || o->k > k_max)
        return rk_fail(o->k < 1 ? RK_EINVAL : RK_ELIMIT,
                       "%d proposals per round; the target's plan verifies 1..%d", o->k, k_max);
    rk_status st = check_run(s, n, o);
    if (st != RK_OK)
        return st;
    stats->prompt_tokens = n;
    const double t0 = rk_now();
    if ((st = prefill(t, &s->target_seq, prompt, n, &stats->target_forwards)) != RK_OK ||
        (st = prefill(s->draft, &s->draft_seq, prompt, n, &stats->draft_forwards)) != RK_OK)
        return st;
    out[0] = first_token(t);
    const double t1 = rk_now();

    int g = 1, k = o->k, drafting = 1;
    int32_t tokens[RK_SPEC_MAX_K + 1], next[RK_SPEC_MAX_K + 1];
    while (st == RK_OK && g < o->max_new && !ends(t, o, out[g - 1])) {
        const int pos = s->target_seq.n_past;
        /* A round yields at most k + 1 tokens: no more than remain. */
        const int want = k < o->max_new - g - 1 ? k : o->max_new - g - 1;
        drafting = drafting && draft_can_read(s, out, g);
        tokens[0] = out[g - 1];
        const int kr = want > 0 && drafting ? propose(s, out, g, want, tokens, stats, &st) : 0;
        /* Where the observer reads the draft's row of every proposal: the
         * last one runs now, since a rejected one would never run. */
        if (st == RK_OK && kr > 0 && s->obs.needs_draft_rows && s->draft_seq.n_past == pos + kr) {
            st = rk_model_forward(s->draft, &s->draft_seq, &tokens[kr], 1);
            stats->draft_steps++;
        }
        if (st != RK_OK || (st = verify(s, tokens, kr + 1, next)) != RK_OK)
            break;
        stats->rounds++;
        stats->target_forwards++;
        int a = 0;
        while (a < kr && tokens[a + 1] == next[a])
            a++;
        /* An end of text among the kept proposals ends the output there: the
         * proposals after it were never judged, and no rejection happened. */
        int judged = kr;
        for (int i = 1; i <= a; i++)
            if (ends(t, o, tokens[i])) {
                a = judged = i;
                break;
            }
        if (kr > 0) {
            stats->proposed += judged;
            stats->accepted += a;
            stats->accepted_hist[a]++;
        }
        /* Every round, a round without proposals too: an observer waiting
         * for the row the round's first token writes reads it there. */
        if (s->obs.on_round) {
            const rk_spec_round r = {
                .target = t, .draft = s->draft, .target_seq = &s->target_seq,
                .draft_seq = &s->draft_seq, .round = stats->rounds - 1, .pos = pos, .k = kr,
                .tokens = tokens, .target_next = next, .accepted = a,
                .first_rejected = a < judged ? pos + 1 + a : -1,
                .draft_logits = s->obs.needs_logits ? s->draft_logits : NULL,
                .target_logits = s->obs.needs_logits ? rk_model_logits(t, 0) : NULL};
            if ((st = s->obs.on_round(s->obs.user, &r)) != RK_OK)
                break;
        }
        /* The kept proposals and the target's own next token, up to an
         * end of text. */
        for (int i = 1; i <= a + 1; i++) {
            out[g++] = i <= a ? tokens[i] : next[a];
            if (ends(t, o, out[g - 1]))
                break;
        }
        /* Both sequences keep every token out but the last, which the next
         * round runs first; a draft that kept all its proposals has not run
         * the last of them (unless needs_draft_rows) and stays one behind. */
        const int keep = n + g - 1;
        st = rk_seq_truncate(t, &s->target_seq, keep);
        if (st == RK_OK && s->draft_seq.n_past > keep)
            st = rk_seq_truncate(s->draft, &s->draft_seq, keep);
        if (o->adaptive && kr > 0)
            k = a == kr ? (k < k_max ? k + 1 : k) : (k > 1 ? k - 1 : k);
    }
    stats->generated = g;
    stats->k_last = k;
    stats->draft_forwards += stats->draft_steps;
    stats->prefill_s = t1 - t0;
    stats->decode_s = rk_now() - t1;
    return st;
}

rk_status rk_spec_greedy(rk_spec *s, const int32_t *prompt, int n, const rk_spec_options *o,
                         int32_t *out, rk_spec_stats *stats)
{
    rk_model *t = s->target;
    const rk_spec target_only = {.target = t};
    memset(stats, 0, sizeof *stats);
    rk_status st = check_run(&target_only, n, o);
    if (st != RK_OK)
        return st;
    stats->prompt_tokens = n;
    const double t0 = rk_now();
    if ((st = prefill(t, &s->target_seq, prompt, n, &stats->target_forwards)) != RK_OK)
        return st;
    out[0] = first_token(t);
    const double t1 = rk_now();
    int g = 1;
    while (st == RK_OK && g < o->max_new && !ends(t, o, out[g - 1])) {
        st = rk_model_forward_argmax(t, &s->target_seq, &out[g - 1], 1, &out[g]);
        g += st == RK_OK;
        stats->rounds++;
        stats->target_forwards++;
    }
    stats->generated = g;
    stats->prefill_s = t1 - t0;
    stats->decode_s = rk_now() - t1;
    return st;
}

double rk_spec_expected_tokens(double a, int k)
{
    return a >= 1.0 ? k + 1.0 : (1.0 - pow(a, k + 1)) / (1.0 - a);
}

double rk_spec_speedup(double a, int k, double t_draft, double t_verify, double t_target)
{
    return rk_spec_expected_tokens(a, k) * t_target / (k * t_draft + t_verify);
}
