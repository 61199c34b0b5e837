/* The harness refuses a row's perplexity that cannot be a measurement: no
 * token scored, a non-finite NLL, or a perplexity that prints as 1.00 (the
 * published table's PG-19 column, a harness that never compared its
 * tokens). Before the guard an empty dataset made a row of NaN perplexity
 * with exit status 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "rk_test.h"
#include "targets.h"

#define NANO RK_MODELS_DIR "/pythia-nano"

enum { CONTEXT = 64, TAIL = 8 };

static void tallies(void)
{
    double ppl = 0;
    harness_tally t = {.nll = 8 * log(50.0), .scored = 8, .windows = 1};
    CHECK(harness_ppl(&t, &ppl) == RK_OK && fabs(ppl - 50) < 1e-9);
    t = (harness_tally){.windows = 0};
    CHECK(harness_ppl(&t, &ppl) == RK_EINVAL && strstr(rk_last_error(), "no token was scored"));
    t = (harness_tally){.nll = NAN, .scored = 8, .windows = 1};
    CHECK(harness_ppl(&t, &ppl) == RK_EINVAL && strstr(rk_last_error(), "perplexity"));
    t = (harness_tally){.nll = INFINITY, .scored = 8, .windows = 1};
    CHECK(harness_ppl(&t, &ppl) == RK_EINVAL);
    t = (harness_tally){.nll = 0, .scored = 256, .windows = 1};
    CHECK(harness_ppl(&t, &ppl) == RK_EINVAL && strstr(rk_last_error(), "prints as 1.00"));
    t = (harness_tally){.nll = 256 * 0.004, .scored = 256, .windows = 1};
    CHECK(harness_ppl(&t, &ppl) == RK_EINVAL);
}

/* Scores SET on M in a child; its exit status, its stderr into ERR. */
static int run_child(rk_model *m, harness_dataset *set, char *err, size_t len)
{
    char path[] = "/tmp/rankkv-harness-XXXXXX";
    const int fd = mkstemp(path);
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 2);
        cli_init("test_eval_harness");
        double nll[4];
        harness_row row;
        harness_run_dataset(m, set, CONTEXT, TAIL, "[test]", nll, &row);
        exit(0);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    const ssize_t n = pread(fd, err, len - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The harness itself: a dataset of real windows scores a finite perplexity
 * above 1; one that gives the harness no window to score is an error exit
 * that names the row and the dataset. */
static void harness_rows(void)
{
    rk_limits lim = {.max_prompt = CONTEXT, .max_new_tokens = TAIL, .prefill_chunk = CONTEXT,
                     .logits_rows = 1, .kv_format = RK_KV_FP32};
    rk_model *m;
    CHECKF(rk_model_load(NANO, rk_cpu_ops(), &lim, &m) == RK_OK, "%s", rk_last_error());
    int32_t windows[2 * CONTEXT];
    for (int i = 0; i < 2 * CONTEXT; i++)
        windows[i] = (i * 7919 + 13) % m->cfg.vocab;
    double full[2], nll[2];
    harness_dataset set = {.name = "ids", .windows = windows, .n_windows = 2, .full_nll = full};
    harness_row row;
    harness_run_dataset(m, &set, CONTEXT, TAIL, "[test]", nll, &row);
    CHECKF(isfinite(row.ppl) && row.ppl > 1.005 && row.t.scored == 2 * TAIL, "ppl %g", row.ppl);
    CHECK(fabs(row.ppl - exp((nll[0] + nll[1]) / (2 * TAIL))) < 1e-9 * row.ppl);

    char err[4096];
    harness_dataset empty = {.name = "empty", .windows = windows, .n_windows = 0, .full_nll = full};
    const int st = run_child(m, &empty, err, sizeof err);
    CHECKF(st == 1 && strstr(err, "[test] empty: no token was scored"), "exit %d, stderr: %s", st,
           err);
    rk_model_free(m);
}

int main(void)
{
    tallies();
    harness_rows();
    return rk_test_finish("test_eval_harness");
}
