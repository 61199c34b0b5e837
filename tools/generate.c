/* rankkv-generate: text generation with a GPT-NeoX model in one planned arena. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "sampler.h"
#include "targets.h"
#include "textio.h"
#include "tokenizer.h"

/* A prompt file is read whole before tokenizing; the context is at most a few
 * thousand tokens, so anything near this size is a wrong file, not a prompt. */
#define RK_MAX_PROMPT_FILE ((size_t)64 << 20)

static const char usage[] =
    "usage: rankkv-generate [options]\n"
    "Generates text with a GPT-NeoX (Pythia) model; all memory is planned up front.\n"
    "\n";

typedef struct {
    const char *model, *prompt, *prompt_file, *target;
    int max_new, max_context, chunk, ignore_eos, print_plan, json, quiet;
    rk_sampling sampling;
    cli_kv kv;
} options;

static options parse(int argc, char **argv)
{
    options o = {.model = RK_DEFAULT_MODEL,
                 .prompt = "The ship sailed",
                 .target = "cpu",
                 .max_new = 64,
                 .chunk = 256,
                 .sampling = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0}};
    const cli_opt opts[] = {
        CLI_STRING_OPT("--model", &o.model, "DIR",
                       "model directory: config.json, *.safetensors, tokenizer.json\n"
                       "(default: the bundled " RK_DEFAULT_MODEL ")"),
        CLI_STRING_OPT("--prompt", &o.prompt, "TEXT", "prompt (default: \"The ship sailed\")"),
        CLI_PATH_OPT("--prompt-file", CLI_INPUT, &o.prompt_file, "FILE",
                     "read the prompt from FILE instead"),
        CLI_NUM("--max-new-tokens", &o.max_new, 1, 1 << 20, "N", "tokens to generate (default 64)"),
        CLI_NUM("--max-context", &o.max_context, 2, 1 << 20, "N",
                "cache positions planned: prompt + new tokens (default:\n"
                "min(2048, max_position_embeddings))"),
        CLI_NUM("--chunk", &o.chunk, 1, 1 << 16, "N",
                "prefill chunk (default 256; with --kv other than full the\n"
                "whole prompt is one chunk)"),
        CLI_NUM("--temperature", &o.sampling.temperature, 0, 100, "T", "0 = greedy (default 0)"),
        CLI_NUM("--top-k", &o.sampling.top_k, 0, 1 << 24, "K",
                "keep the K most likely tokens (default 0 = off)"),
        CLI_NUM("--top-p", &o.sampling.top_p, 1e-6, 1, "P",
                "nucleus sampling mass (default 1 = off)"),
        CLI_NUM("--seed", &o.sampling.seed, 0, 0x7fffffffL, "S", "RNG seed (default 0)"),
        CLI_FLAG_OPT("--ignore-eos", &o.ignore_eos, "keep generating after the end-of-text token"),
        CLI_TARGET_OPT(&o.target),
        CLI_KV_OPTIONS(&o.kv),
        CLI_FLAG_OPT("--print-plan", &o.print_plan,
                     "print the memory plan and exit (no weights are read)"),
        CLI_FLAG_OPT("--json", &o.json, "end stdout with one JSON object (ids, text, speeds)"),
        CLI_FLAG_OPT("--quiet", &o.quiet, "do not stream text (with --json)"),
        CLI_HELP_OPT,
        {0}};
    cli_parse(argc, argv, usage, opts);
    return o;
}

/* The plan is fixed before the prompt is seen: the cache holds max_context
 * positions, of which max_new are reserved for generated tokens. */
static rk_limits limits_for(const options *o, const rk_config *cfg, const rk_ops *ops)
{
    int ctx = o->max_context ? o->max_context : (cfg->max_pos < 2048 ? cfg->max_pos : 2048);
    if (o->max_new >= ctx)
        cli_usage_error("--max-new-tokens %d leaves no room for a prompt in a context of %d",
                        o->max_new, ctx);
    rk_limits lim = {.max_prompt = ctx - o->max_new, .max_new_tokens = o->max_new,
                     .logits_rows = 1, .kv_format = ops->kv_format};
    lim.prefill_chunk = o->chunk < lim.max_prompt ? o->chunk : lim.max_prompt;
    cli_kv_limits(&o->kv, o->model, cfg, ops, &lim);
    return lim;
}

static void print_json(const rk_model *m, const char *target, const rk_tokenizer *tok,
                       const int32_t *prompt,
                       int n_prompt, const int32_t *out, int n_out, double t_prefill,
                       double t_decode)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "prompt_tokens", n_prompt);
    cJSON_AddItemToObject(j, "prompt_ids", cJSON_CreateIntArray(prompt, n_prompt));
    cJSON_AddItemToObject(j, "output_ids", cJSON_CreateIntArray(out, n_out));
    char *text = NULL;
    size_t len = 0;
    if (rk_tok_decode(tok, out, (size_t)n_out, &text, &len) == RK_OK)
        cJSON_AddStringToObject(j, "text", text);
    free(text);
    cJSON_AddStringToObject(j, "target", target);
    cJSON_AddNumberToObject(j, "prefill_s", t_prefill);
    cJSON_AddNumberToObject(j, "prefill_tok_s", n_prompt / t_prefill);
    cJSON_AddNumberToObject(j, "decode_s", t_decode);
    cJSON_AddNumberToObject(j, "decode_tok_s", n_out > 1 ? (n_out - 1) / t_decode : 0.0);
    cJSON_AddStringToObject(j, "kv_method", rk_kv_policy_name(&m->lim.kv));
    if (rk_kv_compresses(&m->lim.kv))
        cJSON_AddNumberToObject(j, "kv_budget", m->lim.kv.average);
    cJSON_AddNumberToObject(j, "weights_bytes", (double)m->wplan.total);
    cJSON_AddNumberToObject(j, "arena_bytes", (double)m->plan.total);
    cli_print_json_line(j);
}

int main(int argc, char **argv)
{
    cli_init("rankkv-generate");
    options o = parse(argc, argv);
    const rk_ops *ops = cli_target(o.target);
    cli_check_paths(o.model);

    rk_config cfg;
    cli_model_config(o.model, &cfg);
    rk_limits lim = limits_for(&o, &cfg, ops);
    if (o.print_plan)
        cli_print_plan(o.model, ops, &lim);

    rk_tokenizer *tok = cli_tokenizer(o.model, NULL, cfg.vocab);
    char *file_prompt = NULL;
    size_t prompt_len = strlen(o.prompt);
    if (o.prompt_file && rk_read_file(o.prompt_file, RK_MAX_PROMPT_FILE, &file_prompt, &prompt_len) != RK_OK)
        cli_die();
    const char *prompt_text = file_prompt ? file_prompt : o.prompt;
    int32_t *prompt;
    size_t n_prompt;
    /* Tokenized only until it is too long: a huge prompt is refused at once. */
    if (cli_tokenize_text(tok, prompt_text, prompt_len, (size_t)lim.max_prompt + 1, &prompt,
                          &n_prompt) != RK_OK)
        cli_die();
    if (n_prompt == 0)
        cli_usage_error("the prompt is empty");
    if (n_prompt > (size_t)lim.max_prompt) {
        rk_fail(RK_ELIMIT,
                "the prompt has more than %d tokens; the plan allows %d (--max-context %d minus "
                "--max-new-tokens %d)",
                lim.max_prompt, lim.max_prompt, lim.max_prompt + lim.max_new_tokens,
                lim.max_new_tokens);
        cli_die();
    }

    rk_sampler sampler;
    rk_model *m = cli_model_load(o.model, ops, &lim);
    int32_t *out = malloc((size_t)o.max_new * sizeof *out);
    if (!out || rk_sampler_init(&sampler, &o.sampling, cfg.vocab) != RK_OK)
        cli_die();

    if (!o.quiet) {
        fwrite(prompt_text, 1, prompt_len, stdout);
        fflush(stdout);
    }
    free(file_prompt);
    rk_seq seq;
    rk_seq_reset(&seq);
    double t0 = rk_now();
    if (rk_model_prefill(m, &seq, prompt, (int)n_prompt) != RK_OK)
        cli_die();
    double t1 = rk_now();
    int n_out = 0;
    float top_vals[RK_TOP_K_MAX];
    int32_t top_ids[RK_TOP_K_MAX];
    const int device_top_k = ops->top_k && o.sampling.top_k >= 1 &&
                             o.sampling.top_k <= RK_TOP_K_MAX && o.sampling.top_k <= cfg.vocab;
    int32_t next = rk_sample(&sampler, rk_model_logits(m, 0));
    for (;;) {
        out[n_out++] = next;
        if (!o.quiet) {
            const char *bytes;
            size_t nb = rk_tok_token_bytes(tok, next, &bytes);
            fwrite(bytes, 1, nb, stdout);
            fflush(stdout);
        }
        if (n_out == o.max_new || (next == cfg.eos_id && !o.ignore_eos))
            break;
        /* Greedy and top-k decoding need only the largest logits, which a
         * target may find without copying the logits back. */
        if (o.sampling.temperature == 0.0f) {
            if (rk_model_forward_argmax(m, &seq, &next, 1, &next) != RK_OK)
                cli_die();
        } else if (device_top_k) {
            if (rk_model_forward_top_k(m, &seq, &next, 1, o.sampling.top_k, top_vals, top_ids) != RK_OK)
                cli_die();
            next = rk_sample_top_k(&sampler, top_vals, top_ids, o.sampling.top_k);
        } else {
            if (rk_model_forward(m, &seq, &next, 1) != RK_OK)
                cli_die();
            next = rk_sample(&sampler, rk_model_logits(m, 0));
        }
    }
    double t2 = rk_now();
    if (!o.quiet)
        putchar('\n');

    fprintf(stderr,
            "[%s] prompt %zu tokens: prefill %.1f tok/s (%.1f ms); %d new tokens: decode %.1f "
            "tok/s; arena %.2f MiB + weights %.2f MiB\n",
            ops->name, n_prompt, n_prompt / (t1 - t0), 1e3 * (t1 - t0), n_out,
            n_out > 1 ? (n_out - 1) / (t2 - t1) : 0.0, m->plan.total / 1048576.0,
            m->wplan.total / 1048576.0);
    if (o.json)
        print_json(m, ops->name, tok, prompt, (int)n_prompt, out, n_out, t1 - t0, t2 - t1);

    rk_sampler_free(&sampler);
    rk_model_free(m);
    rk_tok_free(tok);
    free(prompt);
    free(out);
    return 0;
}
