/* rankkv-ppl: perplexity of a text file over non-overlapping windows. */
#include <cjson/cJSON.h>
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
    "\n";

int main(int argc, char **argv)
{
    cli_init("rankkv-ppl");
    const char *model = RK_DEFAULT_MODEL, *text = NULL, *target = "cpu";
    int window = 1024, max_windows = 0, chunk = 256, json = 0, print_plan = 0;
    const cli_opt opts[] = {
        CLI_MODEL_OPT(&model),
        CLI_PATH_OPT("--text", CLI_INPUT, &text, "FILE", "text to score (required)"),
        CLI_NUM("--window", &window, 1, 1 << 20, "W", "tokens per window (default 1024)"),
        CLI_NUM("--max-windows", &max_windows, 1, 1 << 30, "N",
                "score at most N windows (default: all; the JSON's\n"
                "text_tokens then counts the tokens read for them)"),
        CLI_NUM("--chunk", &chunk, 1, 1 << 16, "N", "prefill chunk (default 256)"),
        CLI_TARGET_OPT(&target),
        CLI_FLAG_OPT("--json", &json, "last stdout line is one JSON object"),
        CLI_FLAG_OPT("--print-plan", &print_plan,
                     "print the memory plan and exit (reads only config.json)"),
        CLI_HELP_OPT,
        CLI_TEXT_OPT("Progress goes to stderr.\n"),
        {0}};
    cli_parse(argc, argv, usage, opts);
    const rk_ops *ops = cli_target(target);
    /* Every position of a window is scored, so every row keeps its logits. */
    rk_limits lim = {.max_prompt = window, .max_new_tokens = 0,
                     .prefill_chunk = chunk < window ? chunk : window, .kv_format = ops->kv_format};
    lim.logits_rows = lim.prefill_chunk;
    if (print_plan)
        cli_print_plan(model, ops, &lim);
    if (!text)
        cli_usage_error("--text FILE is required");
    cli_check_paths(model);

    rk_tokenizer *tok = cli_tokenizer(model, NULL, 0);
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
    rk_model *m = cli_model_load(model, ops, &lim);
    if (rk_tok_check_vocab(tok, m->cfg.vocab) != RK_OK)
        cli_die();

    double nll = 0, t0 = rk_now();
    long scored = 0;
    for (long w = 0; w < windows; w++) {
        const int32_t *win = ids + (size_t)w * window;
        rk_seq seq;
        rk_seq_reset(&seq);
        for (int i = 0; i < window; i += lim.prefill_chunk) {
            int k = window - i < lim.prefill_chunk ? window - i : lim.prefill_chunk;
            if (rk_model_forward(m, &seq, win + i, k) != RK_OK)
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
        cli_print_json_line(j);
    }
    rk_model_free(m);
    rk_tok_free(tok);
    free(ids);
    return 0;
}
