/* The measurement harness the evaluation tools share: datasets cut into
 * windows, a window scored the way KV compression is judged (prefill, then
 * one decode step per scored token), paired differences between rows, and
 * timed generations. */
#ifndef RK_HARNESS_H
#define RK_HARNESS_H

#include <stdint.h>

#include "cli.h"
#include "model.h"
#include "tokenizer.h"

enum { HARNESS_MAX_REPEATS = 50, HARNESS_MAX_DATASETS = 8 };

typedef struct {
    const char *name, *path;
    int32_t *windows; /* n_windows × context token ids */
    int n_windows;
    double *full_nll; /* per window, from the reference row (the first full-cache row) ... */
    int have_full;    /* ... once it has run */
    /* With harness_keep_distributions: the reference row's log-probabilities
     * of every scored token (n_windows × tail × vocab); NULL otherwise. */
    float *ref_logp;
} harness_dataset;

typedef struct {
    double nll, prefill_s, decode_s;
    long scored, windows, steps;
} harness_tally;

/* One row's result on one dataset. */
typedef struct {
    harness_tally t;
    double ppl;                        /* checked by harness_ppl */
    double mean_budget[RK_MAX_LAYERS]; /* each layer's, over the windows */
    int have_diff;                     /* d_mean ± d_se: NLL per token minus the reference's */
    double d_mean, d_se;
    int have_kl; /* kl_mean ± kl_se: KL(reference ‖ row) per scored token, in nats */
    double kl_mean, kl_se;
} harness_row;

/* The --dataset options of a run. */
typedef struct {
    harness_dataset set[HARNESS_MAX_DATASETS];
    int n;
} harness_datasets;

/* --dataset NAME=PATH (a text file, or a directory whose *.txt files are
 * the documents), as a CLI_CALL option takes it into a harness_datasets:
 * PATH is registered as an input; a usage error otherwise. */
void harness_dataset_take(void *sets, const char *arg);

/* Every dataset cut into non-overlapping windows of CONTEXT tokens, up to
 * MAX, taken evenly from its documents (at most ceil(MAX / documents) each,
 * in file-name order), tokenizing only what those windows need, with
 * MODEL's tokenizer checked against VOCAB; a directory's entries that are
 * not readable .txt files are named on stderr as skipped. Nothing is read
 * without datasets. */
void harness_load_datasets(harness_datasets *sets, const char *model, int vocab, int context,
                           int max);
void harness_free_datasets(harness_datasets *sets);

/* Has the reference row keep the distribution of every token it scores in
 * every dataset of SETS (windows × TAIL × VOCAB floats each), so that the
 * rows after it get the mean KL divergence of theirs from it. After
 * harness_load_datasets. */
void harness_keep_distributions(harness_datasets *sets, int tail, int vocab);

/* The usage error of eval and compare for TAIL not shorter than CONTEXT. */
void harness_check_tail(int tail, int context);

/* The record of a run over windows: cli_record_new with its context and
 * tail. */
struct cJSON *harness_record(int argc, char **argv, const char *model, const char *target,
                             int context, int tail);

/* The perplexity of T, exp(nll / scored); an error for a tally that
 * scored no token, a non-finite NLL, or a perplexity that prints as 1.00
 * (below 1.005: no model predicts text that well, so the tokens were never
 * really scored; the published table's PG-19 column was all 1.00). */
rk_status harness_ppl(const harness_tally *t, double *ppl);

/* The same check of a perplexity read back (a record shown again): an
 * error naming WHAT unless PPL is finite and at least 1.005. */
rk_status harness_ppl_check(double ppl, const char *what);

/* Every window of SET through harness_score_window on M, progress on
 * stderr after LABEL; per-window NLLs to ROW_NLL, the perplexity checked by
 * harness_ppl (an error exit naming LABEL and the dataset otherwise). Dynamic budgets change
 * with every window, so each layer's is averaged. The first full-cache row
 * becomes the dataset's reference; the rows after it get their paired
 * difference from it (mean and standard error over windows) and, with
 * harness_keep_distributions, their KL divergence from it. */
void harness_run_dataset(rk_model *m, harness_dataset *set, int context, int tail,
                         const char *label, double *row_nll, harness_row *out);

/* Medians of timed greedy generations, in the records' units, and each
 * timed run's TTFT and mean decode step in the order they ran: the spread
 * that a median hides, which a 1-2 % difference has to stand out from.
 * RUNS is 0 for a timing read back from a record (rankkv-compare
 * --from-json shows the medians only). */
typedef struct {
    double ttft_ms, tpot_ms, prefill_tok_s, decode_tok_s;
    double e2e_tok_s; /* prompt and generated tokens over TTFT + the decode steps */
    int runs;
    double ttft_runs_ms[HARNESS_MAX_REPEATS], tpot_runs_ms[HARNESS_MAX_REPEATS];
} harness_timing;

/* Greedy generation of NEW_TOKENS after PROMPT[0..n), one warm-up run and
 * REPEATS (≤ HARNESS_MAX_REPEATS) timed ones, progress after LABEL: the
 * median TTFT (prefill + first token) and the median of each run's mean
 * decode-step time, and the speeds they make: prefill, decode (1 / TPOT) and
 * end to end, (n + new_tokens) / (TTFT + (new_tokens − 1) · TPOT). */
harness_timing harness_time(rk_model *m, const int32_t *prompt, int n, int new_tokens,
                            int repeats, const char *label);

/* --repeats of the timing tools: timed runs per PER (a word). */
#define HARNESS_REPEATS_OPT(to_, per_)                                                        \
    CLI_NUM("--repeats", to_, 1, HARNESS_MAX_REPEATS, "N", "timed runs per " per_ " (default 3)")

/* T's medians and speeds under their own names, and its runs, when it has
 * them, as ttft_ms_runs and tpot_ms_runs, into the JSON object J. */
void harness_timing_json(struct cJSON *j, const harness_timing *t);

/* MB (2^20 bytes), the unit of the records' memory figures. */
double harness_mb(size_t bytes);

#endif
