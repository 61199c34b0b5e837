/* rankkv-ppl: perplexity of a text file over non-overlapping windows. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

static const char usage[] =
    "usage: rankkv-ppl --text FILE [options]\n"
    "Perplexity of FILE: the file is tokenized (as far as --max-windows needs) and\n"
    "cut into non-overlapping windows; each window of W tokens predicts the W\n"
    "tokens that follow each of its positions (as goldens.json's ppl_full_cache\n"
    "does). Line ends are read as Python's text mode reads them: CRLF and CR\n"
    "become LF.\n"
    "\n"
    "  --model DIR         model directory (default: " RK_DEFAULT_MODEL ")\n"
    "  --text FILE         text to score (required)\n"
    "  --window W          tokens per window (default 1024)\n"
    "  --max-windows N     score at most N windows (default: all; the JSON's\n"
    "                      text_tokens then counts the tokens read for them)\n"
    "  --chunk N           prefill chunk (default 256)\n"
    "  --target cpu|cuda   where to run (default cpu)\n"
    "  --json              last stdout line is one JSON object\n"
    "  --print-plan        print the memory plan and exit (reads only config.json)\n"
    "  -h, --help          this text\n"
    "Progress goes to stderr.\n";

int main(int argc, char **argv)
{
    cli_init("rankkv-ppl");
    const char *model = RK_DEFAULT_MODEL, *text = NULL, *target = "cpu";
    int window = 1024, max_windows = 0, chunk = 256, json = 0, print_plan = 0;
    enum { MODEL = 256, TEXT, WINDOW, MAXW, CHUNK, TARGET, JSON, PLAN };
    static const struct option longopts[] = {{"model", required_argument, 0, MODEL},
                                             {"text", required_argument, 0, TEXT},
                                             {"window", required_argument, 0, WINDOW},
                                             {"max-windows", required_argument, 0, MAXW},
                                             {"chunk", required_argument, 0, CHUNK},
                                             {"target", required_argument, 0, TARGET},
                                             {"json", no_argument, 0, JSON},
                                             {"print-plan", no_argument, 0, PLAN},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int c;
    while ((c = cli_getopt(argc, argv, longopts)) != -1) {
        switch (c) {
        case MODEL: model = optarg; break;
        case TEXT: text = cli_input(optarg); break;
        case WINDOW: window = (int)cli_int("--window", optarg, 1, 1 << 20); break;
        case MAXW: max_windows = (int)cli_int("--max-windows", optarg, 1, 1 << 30); break;
        case CHUNK: chunk = (int)cli_int("--chunk", optarg, 1, 1 << 16); break;
        case TARGET: target = optarg; break;
        case JSON: json = 1; break;
        case PLAN: print_plan = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        }
    }
    if (optind < argc)
        cli_usage_error("unexpected argument '%s'", argv[optind]);
    const rk_ops *ops = cli_target(target);
    /* Every position of a window is scored, so every row keeps its logits. */
    rk_limits lim = {.max_prompt = window, .max_new_tokens = 0,
                     .prefill_chunk = chunk < window ? chunk : window, .kv_dtype = ops->kv_dtype};
    lim.logits_rows = lim.prefill_chunk;
    if (print_plan)
        cli_print_plan(model, ops, &lim);
    if (!text)
        cli_usage_error("--text FILE is required");
    cli_check_paths(model);

    char path[4096];
    rk_tokenizer *tok;
    cli_fmt(path, sizeof path, "%s/tokenizer.json", model);
    if (rk_tok_load(path, &tok) != RK_OK)
        cli_die();
    int32_t *ids;
    size_t n_ids;
    /* A window needs one token past its end for its last target. */
    if (cli_tokenize_file(tok, text, max_windows ? (size_t)max_windows * window + 1 : 0, &ids,
                          &n_ids) != RK_OK)
        cli_die();
    long windows = n_ids > 1 ? (long)((n_ids - 1) / (size_t)window) : 0;
    if (max_windows && windows > max_windows)
        windows = max_windows;
    if (windows == 0) {
        rk_fail(RK_EINVAL, "%s has %zu tokens, fewer than one window of %d plus one", text, n_ids,
                window);
        cli_die();
    }
    rk_model *m;
    if (rk_model_load(model, ops, &lim, &m) != RK_OK ||
        rk_tok_check_vocab(tok, m->cfg.vocab) != RK_OK)
        cli_die();

    double nll = 0, t0 = rk_now();
    long scored = 0;
    for (long w = 0; w < windows; w++) {
        const int32_t *win = ids + (size_t)w * window;
        rk_model_reset(m);
        for (int i = 0; i < window; i += lim.prefill_chunk) {
            int k = window - i < lim.prefill_chunk ? window - i : lim.prefill_chunk;
            if (rk_model_forward(m, win + i, k) != RK_OK)
                cli_die();
            for (int r = 0; r < k; r++) {
                double token_nll;
                if (rk_nll(rk_model_logits(m, r), m->cfg.vocab, win[i + r + 1], &token_nll) !=
                    RK_OK) {
                    rk_fail(RK_EINVAL, "window %ld, position %d: %s", w + 1, i + r,
                            rk_last_error());
                    cli_die();
                }
                nll += token_nll;
            }
            scored += k;
        }
        double dt = rk_now() - t0;
        fprintf(stderr, "\r[ppl] window %ld/%ld  ppl %.4f  %.0f tok/s", w + 1, windows,
                exp(nll / scored), scored / dt);
    }
    fputc('\n', stderr);
    double ppl = exp(nll / scored), secs = rk_now() - t0;
    /* Finite logits can still be large enough that the mean NLL overflows
     * exp; JSON would print that as null. */
    if (!isfinite(ppl)) {
        rk_fail(RK_EINVAL, "the perplexity overflows (mean NLL %g per token)", nll / scored);
        cli_die();
    }
    printf("ppl %.4f over %ld tokens (%ld windows of %d) in %.1f s\n", ppl, scored, windows,
           window, secs);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "ppl", ppl);
        cJSON_AddNumberToObject(j, "mean_nll", nll / scored);
        cJSON_AddNumberToObject(j, "tokens_scored", (double)scored);
        cJSON_AddNumberToObject(j, "window", window);
        cJSON_AddNumberToObject(j, "windows", (double)windows);
        cJSON_AddNumberToObject(j, "text_tokens", (double)n_ids);
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, "text", text);
        cJSON_AddStringToObject(j, "target", ops->name);
        cJSON_AddNumberToObject(j, "seconds", secs);
        char *s = cJSON_PrintUnformatted(j);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(j);
    }
    rk_model_free(m);
    rk_tok_free(tok);
    free(ids);
    return 0;
}
