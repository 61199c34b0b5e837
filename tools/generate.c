/* rankkv-generate: text generation with a GPT-NeoX model in one planned arena. */
#include <cjson/cJSON.h>
#include <getopt.h>
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
    "\n"
    "  --model DIR           model directory: config.json, *.safetensors, tokenizer.json\n"
    "                        (default: the bundled " RK_DEFAULT_MODEL ")\n"
    "  --prompt TEXT         prompt (default: \"The ship sailed\")\n"
    "  --prompt-file FILE    read the prompt from FILE instead\n"
    "  --max-new-tokens N    tokens to generate (default 64)\n"
    "  --max-context N       cache positions planned: prompt + new tokens (default:\n"
    "                        min(2048, max_position_embeddings))\n"
    "  --chunk N             prefill chunk (default 256; with --kv other than full the\n"
    "                        whole prompt is one chunk)\n"
    "  --temperature T       0 = greedy (default 0)\n"
    "  --top-k K             keep the K most likely tokens (default 0 = off)\n"
    "  --top-p P             nucleus sampling mass (default 1 = off)\n"
    "  --seed S              RNG seed (default 0)\n"
    "  --ignore-eos          keep generating after the end-of-text token\n"
    "  --target cpu|cuda     where to run (default cpu)\n"
    CLI_KV_HELP
    "  --print-plan          print the memory plan and exit (no weights are read)\n"
    "  --json                end stdout with one JSON object (ids, text, speeds)\n"
    "  --quiet               do not stream text (with --json)\n"
    "  -h, --help            this text\n";

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
    enum { MODEL = 256, PROMPT, PROMPT_FILE, MAX_NEW, MAX_CTX, CHUNK, TEMP, TOPK, TOPP, SEED,
           IGNORE_EOS, TARGET, PLAN, JSON, QUIET };
    static const struct option longopts[] = {
        {"model", required_argument, 0, MODEL},
        {"prompt", required_argument, 0, PROMPT},
        CLI_KV_LONGOPTS,
        {"prompt-file", required_argument, 0, PROMPT_FILE},
        {"max-new-tokens", required_argument, 0, MAX_NEW},
        {"max-context", required_argument, 0, MAX_CTX},
        {"chunk", required_argument, 0, CHUNK},
        {"temperature", required_argument, 0, TEMP},
        {"top-k", required_argument, 0, TOPK},
        {"top-p", required_argument, 0, TOPP},
        {"seed", required_argument, 0, SEED},
        {"ignore-eos", no_argument, 0, IGNORE_EOS},
        {"target", required_argument, 0, TARGET},
        {"print-plan", no_argument, 0, PLAN},
        {"json", no_argument, 0, JSON},
        {"quiet", no_argument, 0, QUIET},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    while ((c = cli_getopt(argc, argv, longopts)) != -1) {
        switch (c) {
        case MODEL: o.model = optarg; break;
        case PROMPT: o.prompt = optarg; break;
        case PROMPT_FILE: o.prompt_file = cli_input(optarg); break;
        case MAX_NEW: o.max_new = (int)cli_int("--max-new-tokens", optarg, 1, 1 << 20); break;
        case MAX_CTX: o.max_context = (int)cli_int("--max-context", optarg, 2, 1 << 20); break;
        case CHUNK: o.chunk = (int)cli_int("--chunk", optarg, 1, 1 << 16); break;
        case TEMP: o.sampling.temperature = (float)cli_double("--temperature", optarg, 0, 100); break;
        case TOPK: o.sampling.top_k = (int)cli_int("--top-k", optarg, 0, 1 << 24); break;
        case TOPP: o.sampling.top_p = (float)cli_double("--top-p", optarg, 1e-6, 1); break;
        case SEED: o.sampling.seed = (uint64_t)cli_int("--seed", optarg, 0, 0x7fffffffL); break;
        case IGNORE_EOS: o.ignore_eos = 1; break;
        case TARGET: o.target = optarg; break;
        case PLAN: o.print_plan = 1; break;
        case JSON: o.json = 1; break;
        case QUIET: o.quiet = 1; break;
        case 'h': fputs(usage, stdout); exit(0);
        default: cli_kv_option(&o.kv, c, optarg);
        }
    }
    if (optind < argc)
        cli_usage_error("unexpected argument '%s'", argv[optind]);
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
                     .logits_rows = 1, .kv_dtype = ops->kv_dtype};
    lim.prefill_chunk = o->chunk < lim.max_prompt ? o->chunk : lim.max_prompt;
    cli_kv_limits(&o->kv, o->model, cfg, ops, &lim);
    return lim;
}

static void print_json(const rk_model *m, const rk_tokenizer *tok, const int32_t *prompt,
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
    cJSON_AddStringToObject(j, "target", m->ops->name);
    cJSON_AddNumberToObject(j, "prefill_s", t_prefill);
    cJSON_AddNumberToObject(j, "prefill_tok_s", n_prompt / t_prefill);
    cJSON_AddNumberToObject(j, "decode_s", t_decode);
    cJSON_AddNumberToObject(j, "decode_tok_s", n_out > 1 ? (n_out - 1) / t_decode : 0.0);
    cJSON_AddNumberToObject(j, "weights_bytes", (double)m->wplan.total);
    cJSON_AddNumberToObject(j, "arena_bytes", (double)m->plan.total);
    char *s = cJSON_PrintUnformatted(j);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

int main(int argc, char **argv)
{
    cli_init("rankkv-generate");
    options o = parse(argc, argv);
    const rk_ops *ops = cli_target(o.target);
    cli_check_paths(o.model);

    char path[4096];
    rk_config cfg;
    cli_model_config(o.model, &cfg);
    rk_limits lim = limits_for(&o, &cfg, ops);
    if (o.print_plan)
        cli_print_plan(o.model, ops, &lim);

    rk_tokenizer *tok;
    cli_fmt(path, sizeof path, "%s/tokenizer.json", o.model);
    if (rk_tok_load(path, &tok) != RK_OK || rk_tok_check_vocab(tok, cfg.vocab) != RK_OK)
        cli_die();
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

    rk_model *m;
    rk_sampler sampler;
    int32_t *out = malloc((size_t)o.max_new * sizeof *out);
    if (!out || rk_model_load(o.model, ops, &lim, &m) != RK_OK ||
        rk_sampler_init(&sampler, &o.sampling, cfg.vocab) != RK_OK)
        cli_die();

    if (!o.quiet) {
        fwrite(prompt_text, 1, prompt_len, stdout);
        fflush(stdout);
    }
    free(file_prompt);
    double t0 = rk_now();
    if (rk_model_prefill(m, prompt, (int)n_prompt) != RK_OK)
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
            if (rk_model_forward_argmax(m, &next, 1, &next) != RK_OK)
                cli_die();
        } else if (device_top_k) {
            if (rk_model_forward_top_k(m, &next, 1, o.sampling.top_k, top_vals, top_ids) != RK_OK)
                cli_die();
            next = rk_sample_top_k(&sampler, top_vals, top_ids, o.sampling.top_k);
        } else {
            if (rk_model_forward(m, &next, 1) != RK_OK)
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
        print_json(m, tok, prompt, (int)n_prompt, out, n_out, t1 - t0, t2 - t1);

    rk_sampler_free(&sampler);
    rk_model_free(m);
    rk_tok_free(tok);
    free(prompt);
    free(out);
    return 0;
}
