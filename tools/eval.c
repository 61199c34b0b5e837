/* rankkv-eval: perplexity under the conditions of KV-cache compression. Each
 * window of C tokens is prefilled up to C - T, then its last T tokens are
 * teacher-forced one at a time through the decode step, and their NLL is
 * scored: the cache the decode steps read is the one a compression method
 * leaves behind after prefill. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

static const char usage[] =
    "usage: rankkv-eval --dataset NAME=PATH [--dataset ...] [options]\n"
    "Perplexity of the last T tokens of each C-token window, scored one token at\n"
    "a time through the decode step after a prefill of the first C - T. PATH is a\n"
    "text file or a directory whose *.txt files are the documents; each document\n"
    "is cut into non-overlapping windows.\n"
    "\n"
    "  --model DIR          model directory (default: " RK_DEFAULT_MODEL ")\n"
    "  --dataset NAME=PATH  a dataset (repeatable, up to 8)\n"
    "  --context C          window length (default 2048)\n"
    "  --tail T             scored tokens at the end of each window (default 256)\n"
    "  --max-windows N      windows per dataset (default 16)\n"
    "  --method full        KV-cache policy (default full; the compression methods\n"
    "                       of issue #5 plug in here)\n"
    "  --target cpu|cuda    where to run (default cpu)\n"
    "  --json FILE          also write the results as JSON\n"
    "  -h, --help           this text\n"
    "Progress goes to stderr; the table to stdout.\n";

enum { MAX_DATASETS = 8, MAX_DOCS = 256 };

typedef struct {
    const char *name, *path;
} dataset;

typedef struct {
    double nll, prefill_s, decode_s;
    long scored, windows, steps;
} tally;

static int by_name(const void *a, const void *b) { return strcmp(a, b); }

/* The documents of a dataset: PATH itself, or the sorted *.txt files in it. */
static int list_documents(const char *path, char docs[][4096])
{
    DIR *d = opendir(path);
    if (!d) {
        snprintf(docs[0], 4096, "%s", path);
        return 1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_DOCS) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".txt") == 0)
            snprintf(docs[n++], 4096, "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(docs, (size_t)n, sizeof docs[0], by_name);
    return n;
}

/* One window: prefill C - T tokens, then score T tokens one decode step at a
 * time (the prefill's last logits predict the first of them). */
static void score_window(rk_model *m, const int32_t *win, int context, int tail, tally *t)
{
    const int prompt = context - tail, V = m->cfg.vocab;
    rk_model_reset(m);
    double t0 = rk_now();
    if (rk_model_prefill(m, win, prompt) != RK_OK)
        cli_die();
    double t1 = rk_now();
    for (int i = 0; i < tail; i++) {
        t->nll += rk_nll(rk_model_logits(m, 0), V, win[prompt + i]);
        if (i + 1 < tail && rk_model_forward(m, &win[prompt + i], 1) != RK_OK)
            cli_die();
    }
    t->prefill_s += t1 - t0;
    t->decode_s += rk_now() - t1;
    t->scored += tail;
    t->steps += tail - 1;
    t->windows++;
}

int main(int argc, char **argv)
{
    cli_init("rankkv-eval");
    const char *model = RK_DEFAULT_MODEL, *target = "cpu", *json_path = NULL, *method = "full";
    int context = 2048, tail = 256, max_windows = 16, n_sets = 0;
    dataset sets[MAX_DATASETS];
    enum { MODEL = 256, DATASET, CONTEXT, TAIL, MAXW, METHOD, TARGET, JSON };
    static const struct option longopts[] = {{"model", required_argument, 0, MODEL},
                                             {"dataset", required_argument, 0, DATASET},
                                             {"context", required_argument, 0, CONTEXT},
                                             {"tail", required_argument, 0, TAIL},
                                             {"max-windows", required_argument, 0, MAXW},
                                             {"method", required_argument, 0, METHOD},
                                             {"target", required_argument, 0, TARGET},
                                             {"json", required_argument, 0, JSON},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case MODEL: model = optarg; break;
        case DATASET: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1])
                cli_usage_error("--dataset wants NAME=PATH, got '%s'", optarg);
            if (n_sets == MAX_DATASETS)
                cli_usage_error("at most %d datasets", MAX_DATASETS);
            *eq = '\0';
            sets[n_sets++] = (dataset){optarg, eq + 1};
            break;
        }
        case CONTEXT: context = (int)cli_int("--context", optarg, 2, 1 << 20); break;
        case TAIL: tail = (int)cli_int("--tail", optarg, 1, 1 << 20); break;
        case MAXW: max_windows = (int)cli_int("--max-windows", optarg, 1, 1 << 20); break;
        case METHOD: method = optarg; break;
        case TARGET: target = optarg; break;
        case JSON: json_path = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: cli_usage_error("unknown option");
        }
    }
    if (optind < argc)
        cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (n_sets == 0)
        cli_usage_error("give at least one --dataset NAME=PATH");
    if (tail >= context)
        cli_usage_error("--tail %d must be shorter than --context %d", tail, context);
    if (strcmp(method, "full") != 0)
        cli_usage_error("unknown --method '%s' (this build has: full)", method);
    const rk_ops *ops = rk_target_find(target);
    if (!ops)
        cli_die();

    char path[4096];
    rk_tokenizer *tok;
    snprintf(path, sizeof path, "%s/tokenizer.json", model);
    if (rk_tok_load(path, &tok) != RK_OK)
        cli_die();
    rk_limits lim = {.max_prompt = context - tail, .max_new_tokens = tail,
                     .prefill_chunk = context - tail < 512 ? context - tail : 512,
                     .logits_rows = 1, .kv_dtype = ops->kv_dtype};
    rk_model *m;
    if (rk_model_load(model, ops, &lim, &m) != RK_OK)
        cli_die();
    const rk_region *k = rk_plan_find(&m->plan, "kv_cache_k");
    const double kv_mb = 2.0 * (double)k->size / 1048576.0;

    static char docs[MAX_DOCS][4096];
    cJSON *results = cJSON_CreateArray();
    printf("%-12s %-8s %8s %8s %9s %9s %9s %9s\n", "dataset", "method", "windows", "tokens",
           "ppl", "kv_MB", "ttft_ms", "tpot_ms");
    for (int s = 0; s < n_sets; s++) {
        tally t = {0};
        const int n_docs = list_documents(sets[s].path, docs);
        if (n_docs == 0) {
            rk_fail(RK_EIO, "dataset %s: no .txt documents in %s", sets[s].name, sets[s].path);
            cli_die();
        }
        for (int d = 0; d < n_docs && t.windows < max_windows; d++) {
            int32_t *ids;
            size_t n;
            if (cli_tokenize_file(tok, docs[d], &ids, &n) != RK_OK)
                cli_die();
            for (size_t w = 0; w + (size_t)context <= n && t.windows < max_windows; w += context) {
                score_window(m, ids + w, context, tail, &t);
                fprintf(stderr, "\r[eval] %s window %ld/%d  ppl %.4f", sets[s].name, t.windows,
                        max_windows, exp(t.nll / t.scored));
            }
            free(ids);
        }
        fputc('\n', stderr);
        if (t.windows == 0) {
            rk_fail(RK_EINVAL, "dataset %s has no document of %d tokens", sets[s].name, context);
            cli_die();
        }
        const double ppl = exp(t.nll / t.scored), ttft = 1e3 * t.prefill_s / t.windows,
                     tpot = 1e3 * t.decode_s / (t.steps ? t.steps : 1);
        printf("%-12s %-8s %8ld %8ld %9.4f %9.2f %9.2f %9.3f\n", sets[s].name, method, t.windows,
               t.scored, ppl, kv_mb, ttft, tpot);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "dataset", sets[s].name);
        cJSON_AddStringToObject(r, "method", method);
        cJSON_AddNumberToObject(r, "ppl", ppl);
        cJSON_AddNumberToObject(r, "mean_nll", t.nll / t.scored);
        cJSON_AddNumberToObject(r, "tokens_scored", (double)t.scored);
        cJSON_AddNumberToObject(r, "windows", (double)t.windows);
        cJSON_AddNumberToObject(r, "kv_cache_mb", kv_mb);
        cJSON_AddNumberToObject(r, "ttft_ms", ttft);
        cJSON_AddNumberToObject(r, "tpot_ms", tpot);
        cJSON_AddItemToArray(results, r);
    }

    if (json_path) {
        char commit[96], command[4096], date[32];
        cli_git_commit(commit, sizeof commit);
        cli_command_line(argc, argv, command, sizeof command);
        time_t now = time(NULL);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        char device[256];
        ops->device_name(m->ctx, device, sizeof device);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", cli_base_name(model));
        cJSON_AddStringToObject(j, "device", device);
        cJSON_AddStringToObject(j, "target", ops->name);
        cJSON_AddStringToObject(j, "commit", commit);
        cJSON_AddStringToObject(j, "command", command);
        cJSON_AddStringToObject(j, "date", date);
        cJSON_AddNumberToObject(j, "context", context);
        cJSON_AddNumberToObject(j, "tail", tail);
        cJSON_AddItemToObject(j, "results", results);
        char *text = cJSON_Print(j);
        FILE *f = fopen(json_path, "w");
        if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
            rk_fail(RK_EIO, "cannot write %s", json_path);
            cli_die();
        }
        free(text);
        cJSON_Delete(j);
    } else {
        cJSON_Delete(results);
    }
    rk_model_free(m);
    rk_tok_free(tok);
    return 0;
}
