/* The measurement harness the evaluation tools share: datasets cut into
 * windows, a window scored the way KV compression is judged (prefill, then
 * one decode step per scored token), paired differences between rows, and
 * timed generations. */
#ifndef RK_HARNESS_H
#define RK_HARNESS_H

#include <stdint.h>

#include "model.h"
#include "tokenizer.h"

enum { HARNESS_MAX_REPEATS = 50 };

typedef struct {
    const char *name, *path;
    int32_t *windows; /* n_windows × context token ids */
    int n_windows;
    double *full_nll; /* per window, from the full-cache row ... */
    int have_full;    /* ... once it has run */
} harness_dataset;

typedef struct {
    double nll, prefill_s, decode_s;
    long scored, windows, steps;
} harness_tally;

/* One row's result on one dataset. */
typedef struct {
    harness_tally t;
    double mean_budget[RK_MAX_LAYERS]; /* each layer's, over the windows */
    int have_diff;                     /* d_mean ± d_se: NLL per token minus the full cache's */
    double d_mean, d_se;
} harness_row;

/* Parses NAME=PATH (a text file, or a directory whose *.txt files are the
 * documents) and registers PATH as an input; a usage error otherwise. */
harness_dataset harness_dataset_arg(const char *arg);

/* Cuts the dataset's documents into non-overlapping windows of CONTEXT
 * tokens, up to MAX, taken evenly from the documents (at most
 * ceil(MAX / documents) each, in file-name order), tokenizing only what
 * those windows need. A directory's entries that are not readable .txt
 * files are named on stderr as skipped. */
void harness_load_windows(const rk_tokenizer *tok, harness_dataset *set, int context, int max);

/* Every window of SET through harness_score_window on M, progress on
 * stderr after LABEL; per-window NLLs to ROW_NLL. Dynamic budgets change
 * with every window, so each layer's is averaged. A full-cache row becomes
 * the dataset's reference; other rows get their paired difference from it
 * (mean and standard error over windows) once it has run. */
void harness_run_dataset(rk_model *m, harness_dataset *set, int context, int tail,
                         const char *label, double *row_nll, harness_row *out);

/* Splits a copy of the comma-separated LIST into at most MAX words; a usage
 * error naming FLAG when it is empty or longer. OUT[0] is the start of the
 * copy: free it when the words are no longer needed. */
int harness_split_list(const char *flag, const char *list, char **out, int max);

/* Greedy generation of NEW_TOKENS after PROMPT[0..n), one warm-up run and
 * REPEATS (≤ HARNESS_MAX_REPEATS) timed ones, progress after LABEL: the
 * median TTFT (prefill + first token) and the median of each run's mean
 * decode-step time, in seconds. */
void harness_time(rk_model *m, const int32_t *prompt, int n, int new_tokens, int repeats,
                  const char *label, double *ttft, double *tpot);

#endif
