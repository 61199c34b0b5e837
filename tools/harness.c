#include "harness.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "sampler.h"
#include "textio.h"

void harness_dataset_take(void *sets, const char *arg)
{
    harness_datasets *d = sets;
    if (d->n == HARNESS_MAX_DATASETS)
        cli_usage_error("at most %d datasets", HARNESS_MAX_DATASETS);
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        cli_usage_error("--dataset wants NAME=PATH, got '%s'", arg);
    /* A copy of the name: argv is recorded with the results as given. */
    d->set[d->n++] =
        (harness_dataset){.name = strndup(arg, (size_t)(eq - arg)), .path = cli_input(eq + 1)};
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Why the directory entry PATH is not a document, or NULL when it is one. */
static const char *not_a_document(const char *path)
{
    const size_t len = strlen(path);
    struct stat sb;
    if (len < 5 || strcmp(path + len - 4, ".txt") != 0)
        return "not a .txt file";
    if (stat(path, &sb) != 0)
        return rk_open_error(path, errno);
    if (!S_ISREG(sb.st_mode))
        return "not a regular file";
    if (access(path, R_OK) != 0)
        return strerror(errno);
    return NULL;
}

/* The documents of SET (malloc'd paths): its path, or the .txt files in
 * that directory sorted by name; *N their count. */
static char **list_documents(const harness_dataset *set, int *n)
{
    char **docs = NULL;
    int cap = 0;
    *n = 0;
    DIR *d = opendir(set->path);
    if (!d) {
        /* A file, or a path whose reader will say what is wrong with it. */
        if (!(docs = malloc(sizeof *docs)) || !(docs[0] = strdup(set->path))) {
            rk_fail(RK_ENOMEM, "out of memory");
            cli_die();
        }
        *n = 1;
        return docs;
    }
    cli_str path = {0};
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(docs, (size_t)cap * sizeof *docs);
            if (!grown) {
                rk_fail(RK_ENOMEM, "out of memory listing %s", set->path);
                cli_die();
            }
            docs = grown;
        }
        cli_str_clear(&path);
        cli_str_add(&path, "%s/%s", set->path, e->d_name);
        docs[(*n)++] = path.s;
        path = (cli_str){0};
    }
    closedir(d);
    /* readdir's order is the file system's; the promise is file-name order. */
    qsort(docs, (size_t)*n, sizeof *docs, by_name);
    int kept = 0;
    for (int i = 0; i < *n; i++) {
        const char *why = not_a_document(docs[i]);
        if (why) {
            fprintf(stderr, "[dataset %s] skipping %s: %s\n", set->name, docs[i], why);
            free(docs[i]);
        } else {
            docs[kept++] = docs[i];
        }
    }
    *n = kept;
    return docs;
}

/* One dataset's windows, as harness_load_datasets describes. */
static void load_windows(const rk_tokenizer *tok, harness_dataset *set, int context, int max)
{
    int n_docs;
    char **docs = list_documents(set, &n_docs);
    if (n_docs == 0) {
        rk_fail(RK_EIO, "dataset %s: no .txt documents in %s", set->name, set->path);
        cli_die();
    }
    set->windows = malloc((size_t)max * context * sizeof(int32_t));
    set->full_nll = calloc((size_t)max, sizeof(double));
    if (!set->windows || !set->full_nll) {
        rk_fail(RK_ENOMEM, "out of memory for %d windows", max);
        cli_die();
    }
    set->n_windows = 0;
    /* Windows come evenly from the documents, so that one long book does
     * not stand for the whole set. */
    const int per_doc = (max + n_docs - 1) / n_docs;
    for (int d = 0; d < n_docs; d++) {
        const int want = per_doc < max - set->n_windows ? per_doc : max - set->n_windows;
        int32_t *ids;
        size_t n;
        if (want > 0) {
            if (cli_tokenize_file(tok, docs[d], (size_t)want * context, &ids, &n) != RK_OK)
                cli_die();
            for (size_t w = 0; w + (size_t)context <= n && w / context < (size_t)want;
                 w += context)
                memcpy(set->windows + (size_t)set->n_windows++ * context, ids + w,
                       (size_t)context * sizeof(int32_t));
            free(ids);
        }
        free(docs[d]);
    }
    free(docs);
    if (set->n_windows == 0) {
        rk_fail(RK_EINVAL, "dataset %s has no document of %d tokens", set->name, context);
        cli_die();
    }
}

void harness_load_datasets(harness_datasets *sets, const char *model, int vocab, int context,
                           int max)
{
    if (!sets->n)
        return;
    rk_tokenizer *tok = cli_tokenizer(model, NULL, vocab);
    for (int s = 0; s < sets->n; s++)
        load_windows(tok, &sets->set[s], context, max);
    rk_tok_free(tok);
}

void harness_free_datasets(harness_datasets *sets)
{
    for (int s = 0; s < sets->n; s++) {
        free(sets->set[s].windows);
        free(sets->set[s].full_nll);
        free(sets->set[s].ref_logp);
        free((char *)sets->set[s].name);
    }
}

void harness_keep_distributions(harness_datasets *sets, int tail, int vocab)
{
    for (int s = 0; s < sets->n; s++) {
        const size_t n = (size_t)sets->set[s].n_windows * (size_t)tail * (size_t)vocab;
        if (!(sets->set[s].ref_logp = malloc(n * sizeof(float)))) {
            rk_fail(RK_ENOMEM, "out of memory for the reference's distributions of %s (%.0f MB)",
                    sets->set[s].name, harness_mb(n * sizeof(float)));
            cli_die();
        }
    }
}

void harness_check_tail(int tail, int context)
{
    if (tail >= context)
        cli_usage_error("--tail %d must be shorter than --context %d", tail, context);
}

cJSON *harness_record(int argc, char **argv, const char *model, const char *target, int context,
                      int tail)
{
    cJSON *j = cli_record_new(argc, argv, cli_base_name(model), target);
    cJSON_AddNumberToObject(j, "context", context);
    cJSON_AddNumberToObject(j, "tail", tail);
    return j;
}

/* A window's scored distributions against the reference's: the
 * reference row keeps its log-probabilities in REF (tail × vocab), a later
 * row sums its KL divergence from them. */
typedef struct {
    float *ref;
    int keep;
    double kl;
} window_kl;

static double log_sum_exp(const float *x, int n)
{
    double mx = x[0], sum = 0;
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++)
        sum += exp(x[i] - mx);
    return mx + log(sum);
}

/* rk_score_fn: scored token I's logits against the reference's. */
static void compare_distribution(void *user, int i, const float *logits, int vocab)
{
    window_kl *w = user;
    float *ref = w->ref + (size_t)i * vocab;
    const double lse = log_sum_exp(logits, vocab);
    if (w->keep) {
        for (int v = 0; v < vocab; v++)
            ref[v] = (float)(logits[v] - lse);
        return;
    }
    double kl = 0;
    for (int v = 0; v < vocab; v++)
        kl += exp((double)ref[v]) * ((double)ref[v] - (logits[v] - lse));
    w->kl += kl;
}

/* One window: prefill CONTEXT − TAIL tokens, then score TAIL tokens one
 * decode step at a time (the prefill's last logits predict the first),
 * each distribution against the reference's when KL is not NULL. Returns
 * the window's summed NLL and adds to T. */
static double score_window(rk_model *m, const int32_t *win, int context, int tail,
                           harness_tally *t, window_kl *kl)
{
    const int prompt = context - tail;
    rk_seq seq;
    rk_seq_reset(&seq);
    double t0 = rk_now();
    if (rk_model_prefill(m, &seq, win, prompt) != RK_OK)
        cli_die();
    double t1 = rk_now();
    double nll;
    rk_status st = rk_model_score_steps_each(m, &seq, win + prompt, tail, &nll,
                                             kl ? compare_distribution : NULL, kl);
    if (st != RK_OK) {
        rk_fail(st, "a window, after its prompt of %d tokens: %s", prompt, rk_last_error());
        cli_die();
    }
    t->prefill_s += t1 - t0;
    t->decode_s += rk_now() - t1;
    t->nll += nll;
    t->scored += tail;
    t->steps += tail - 1;
    t->windows++;
    return nll;
}

/* Mean and standard error over N windows of (A - B) / TAIL (B may be NULL:
 * A / TAIL), per-window sums made per-token means: with B the paired
 * difference of two rows on the same windows, whose noise the error is. */
static void per_token(const double *a, const double *b, int n, int tail, double *mean,
                      double *se)
{
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++)
        s += (a[i] - (b ? b[i] : 0)) / tail;
    *mean = s / n;
    for (int i = 0; i < n; i++) {
        const double d = (a[i] - (b ? b[i] : 0)) / tail - *mean;
        ss += d * d;
    }
    *se = n > 1 ? sqrt(ss / (n - 1) / n) : 0.0;
}

/* Below this a perplexity prints as 1.00 (harness.h). */
#define MIN_PPL 1.005

rk_status harness_ppl(const harness_tally *t, double *ppl)
{
    if (t->scored <= 0)
        return rk_fail(RK_EINVAL, "no token was scored (%ld windows)", t->windows);
    *ppl = exp(t->nll / t->scored);
    if (!isfinite(*ppl))
        return rk_fail(RK_EINVAL, "the perplexity of %ld scored tokens is %g", t->scored, *ppl);
    if (*ppl < MIN_PPL)
        return rk_fail(RK_EINVAL,
                       "perplexity %.6f over %ld tokens prints as 1.00: the tokens were not "
                       "really scored",
                       *ppl, t->scored);
    return RK_OK;
}

rk_status harness_ppl_check(double ppl, const char *what)
{
    if (!isfinite(ppl) || ppl < MIN_PPL)
        return rk_fail(RK_EINVAL,
                       "%s: perplexity %g is not one a run makes (finite, at least %.3f: below, "
                       "it prints as 1.00 and its tokens were not really scored)",
                       what, ppl, MIN_PPL);
    return RK_OK;
}

void harness_run_dataset(rk_model *m, harness_dataset *set, int context, int tail,
                         const char *label, double *row_nll, harness_row *out)
{
    const int L = m->cfg.n_layers;
    const int reference = !set->have_full && !rk_kv_compresses(&m->lim.kv);
    double *row_kl = NULL;
    if (set->ref_logp && (reference || set->have_full) &&
        !(row_kl = calloc((size_t)set->n_windows, sizeof *row_kl))) {
        rk_fail(RK_ENOMEM, "out of memory for %d windows", set->n_windows);
        cli_die();
    }
    memset(out, 0, sizeof *out);
    harness_tally *t = &out->t;
    for (int w = 0; w < set->n_windows; w++) {
        window_kl kl = {.keep = reference};
        if (row_kl)
            kl.ref = set->ref_logp + (size_t)w * tail * m->cfg.vocab;
        row_nll[w] = score_window(m, set->windows + (size_t)w * context, context, tail, t,
                                  row_kl ? &kl : NULL);
        if (row_kl)
            row_kl[w] = kl.kl;
        for (int l = 0; l < L; l++)
            out->mean_budget[l] += m->lim.kv.budget[l];
        fprintf(stderr, "\r%s %s window %ld/%d ppl %.4f", label, set->name, t->windows,
                set->n_windows, exp(t->nll / t->scored));
    }
    fputc('\n', stderr);
    if (harness_ppl(t, &out->ppl) != RK_OK) {
        rk_fail(RK_EINVAL, "%s %s: %s", label, set->name, rk_last_error());
        cli_die();
    }
    for (int l = 0; l < L; l++)
        out->mean_budget[l] /= set->n_windows;
    if (reference) {
        memcpy(set->full_nll, row_nll, (size_t)set->n_windows * sizeof(double));
        set->have_full = 1;
    } else if (set->have_full) {
        per_token(row_nll, set->full_nll, set->n_windows, tail, &out->d_mean, &out->d_se);
        out->have_diff = 1;
        if (row_kl)
            per_token(row_kl, NULL, set->n_windows, tail, &out->kl_mean, &out->kl_se);
        out->have_kl = row_kl != NULL;
    }
    free(row_kl);
}

/* One timed greedy generation: TTFT and the mean decode-step time. */
static void timed_run(rk_model *m, const int32_t *prompt, int n, int new_tokens, double *ttft,
                      double *tpot)
{
    rk_seq seq;
    rk_seq_reset(&seq);
    double t0 = rk_now();
    int32_t next;
    if (rk_model_prefill_argmax(m, &seq, prompt, n, &next) != RK_OK)
        cli_die();
    double t1 = rk_now();
    /* Runs as rankkv-generate decodes them (rankkv_generate). */
    int32_t run[RK_GREEDY_RUN];
    for (int left = new_tokens - 1; left > 0;) {
        const int k = left < RK_GREEDY_RUN ? left : RK_GREEDY_RUN;
        if (rk_model_decode_greedy(m, &seq, next, k, run) != RK_OK)
            cli_die();
        next = run[k - 1];
        left -= k;
    }
    double t2 = rk_now();
    *ttft = t1 - t0;
    *tpot = new_tokens > 1 ? (t2 - t1) / (new_tokens - 1) : 0.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

harness_timing harness_time(rk_model *m, const int32_t *prompt, int n, int new_tokens,
                            int repeats, const char *label)
{
    double first[HARNESS_MAX_REPEATS], step[HARNESS_MAX_REPEATS];
    timed_run(m, prompt, n, new_tokens, &first[0], &step[0]);
    for (int r = 0; r < repeats; r++) {
        fprintf(stderr, "\r%s run %d/%d", label, r + 1, repeats);
        timed_run(m, prompt, n, new_tokens, &first[r], &step[r]);
    }
    fputc('\n', stderr);
    harness_timing t = {.runs = repeats};
    for (int r = 0; r < repeats; r++) {
        t.ttft_runs_ms[r] = 1e3 * first[r];
        t.tpot_runs_ms[r] = 1e3 * step[r];
    }
    const double ttft = median(first, repeats), tpot = median(step, repeats);
    t.ttft_ms = 1e3 * ttft;
    t.tpot_ms = 1e3 * tpot;
    t.prefill_tok_s = n / ttft;
    t.decode_tok_s = tpot > 0 ? 1.0 / tpot : 0;
    t.e2e_tok_s = (n + new_tokens) / (ttft + (new_tokens - 1) * tpot);
    return t;
}

void harness_timing_json(cJSON *j, const harness_timing *t)
{
    cJSON_AddNumberToObject(j, "ttft_ms", t->ttft_ms);
    cJSON_AddNumberToObject(j, "tpot_ms", t->tpot_ms);
    cJSON_AddNumberToObject(j, "prefill_tok_s", t->prefill_tok_s);
    cJSON_AddNumberToObject(j, "decode_tok_s", t->decode_tok_s);
    cJSON_AddNumberToObject(j, "e2e_tok_s", t->e2e_tok_s);
    if (t->runs > 0) {
        cJSON_AddItemToObject(j, "ttft_ms_runs", cJSON_CreateDoubleArray(t->ttft_runs_ms, t->runs));
        cJSON_AddItemToObject(j, "tpot_ms_runs", cJSON_CreateDoubleArray(t->tpot_runs_ms, t->runs));
    }
}

double harness_mb(size_t bytes) { return (double)bytes / 1048576.0; }
