/* The measurement harness the evaluation tools share: datasets cut into
 * windows, a window scored the way KV compression is judged (prefill, then
 * one decode step per scored token), paired differences between rows, and
 * timed generations. */
#ifndef RK_HARNESS_H
#define RK_HARNESS_H

#include <stdint.h>

#include "model.h"
#include "tokenizer.h"

enum { HARNESS_MAX_DOCS = 256 };

typedef struct {
    const char *name, *path;
    int32_t *windows; /* n_windows × context token ids */
    int n_windows;
    double *full_nll; /* per window, from the full-cache row when it ran */
} harness_dataset;

typedef struct {
    double nll, prefill_s, decode_s;
    long scored, windows, steps;
} harness_tally;

/* Parses NAME=PATH (a text file, or a directory whose *.txt files are the
 * documents); a usage error otherwise. */
harness_dataset harness_dataset_arg(const char *arg);

/* Cuts the dataset's documents into non-overlapping windows of CONTEXT
 * tokens, up to MAX, taken evenly from the documents (at most
 * ceil(MAX / documents) each, in file-name order). */
void harness_load_windows(const rk_tokenizer *tok, harness_dataset *set, int context, int max);

/* One window: prefill CONTEXT − TAIL tokens, then score TAIL tokens one
 * decode step at a time (the prefill's last logits predict the first).
 * Returns the window's summed NLL and adds to T. */
double harness_score_window(rk_model *m, const int32_t *win, int context, int tail,
                            harness_tally *t);

/* Mean and standard error over N windows of the paired difference in mean
 * NLL per token between A and B: the noise of comparing two rows on the
 * same windows. */
void harness_paired(const double *a, const double *b, int n, int tail, double *mean, double *se);

/* Splits a comma-separated LIST (modified) into at most MAX words; a usage
 * error naming FLAG when it is empty or longer. */
int harness_split_list(const char *flag, char *list, char **out, int max);

/* One timed greedy generation: TTFT (prefill + first token) and the mean
 * time of the decode steps that follow, in seconds. */
void harness_timed_run(rk_model *m, const int32_t *prompt, int n, int new_tokens, double *ttft,
                       double *tpot);

double harness_median(double *v, int n);

#endif
