/* rankkv-generate: text generation with a GPT-NeoX model in one planned arena. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kv_smart.h"
#include "rankkv.h"
#include "textio.h"

/* A prompt file is read whole before tokenizing; the context is at most a few
 * thousand tokens, so anything near this size is a wrong file, not a prompt. */
#define RK_MAX_PROMPT_FILE ((size_t)64 << 20)

static const char usage[] =
    "usage: rankkv-generate [options]\n"
    "Generates text with a GPT-NeoX (Pythia) model; all memory is planned up front.\n"
    "\n";

typedef struct {
    const char *model, *prompt, *prompt_file, *target;
    int max_new, max_context, chunk, print_plan, json, quiet;
    rankkv_sampling sampling;
    cli_kv kv;
} options;

static options parse(int argc, char **argv)
{
    options o = {.model = RK_DEFAULT_MODEL,
                 .prompt = "The ship sailed",
                 .target = "cpu",
                 .max_new = 64,
                 .chunk = 256,
                 .sampling = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f}};
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
        CLI_FLAG_OPT("--ignore-eos", &o.sampling.ignore_eos, "keep generating after the end-of-text token"),
        CLI_TARGET_OPT(&o.target),
        CLI_KV_OPTIONS(&o.kv),
        CLI_FLAG_OPT("--print-plan", &o.print_plan,
                     "print the memory plan and exit (no weights are read)"),
        CLI_FLAG_OPT("--json", &o.json, "end stdout with one JSON object (ids, text, speeds)"),
        CLI_FLAG_OPT("--quiet", &o.quiet, "do not stream text (with --json)"),
        CLI_HELP_OPT,
        {0}};
    cli_parse(argc, argv, usage, opts);
    cli_kv_check_dtype_options(&o.kv);
    return o;
}

/* The API's options for O: the plan is fixed before the prompt is seen, the
 * cache holding max_context positions of which max_new are for generated
 * tokens. */
static rankkv_options api_options(const options *o)
{
    rankkv_options a;
    rankkv_options_default(&a);
    if (o->max_context && o->max_new >= o->max_context)
        cli_usage_error("--max-new-tokens %d leaves no room for a prompt in a context of %d",
                        o->max_new, o->max_context);
    a.target = o->target;
    a.max_new_tokens = o->max_new;
    a.max_prompt = o->max_context ? o->max_context - o->max_new : 0;
    a.prefill_chunk = o->chunk;
    const rk_kv_options *kv = &o->kv.opt;
    a.kv = kv->method ? kv->method : "full";
    a.kv_budget = kv->average;
    a.kv_budgets = kv->n_budgets ? o->kv.budgets : NULL;
    a.kv_layers = kv->n_budgets;
    a.kv_window = kv->window;
    a.kv_pool = kv->pool;
    a.kv_sinks = kv->sinks;
    a.kv_recent = kv->recent;
    a.pyramid_beta = kv->beta;
    a.rank_strategy = rk_rank_strategy_name(kv->rank.strategy);
    a.rank_temperature = kv->rank.temperature;
    a.rank_power = kv->rank.power;
    a.rank_tiers = kv->rank.tiers;
    a.rank_seed = kv->rank.seed;
    a.kv_dtype = o->kv.dtype;
    a.kv_group = o->kv.group;
    a.kv_residual = o->kv.residual;
    a.kv_bits_avg = o->kv.bits_avg;
    a.kv_precision = o->kv.precision;
    return a;
}

/* What the streamed tokens leave behind: their ids and bytes, and when the
 * first came (the end of the prefill). */
typedef struct {
    int quiet;
    int32_t *ids;
    cli_str text;
    int n;
    double first_at;
} streamed;

static int on_token(void *user, int32_t id, const char *bytes, size_t len)
{
    streamed *s = user;
    if (s->n == 0)
        s->first_at = rk_now();
    s->ids[s->n++] = id;
    cli_str_add(&s->text, "%.*s", (int)len, bytes);
    if (!s->quiet) {
        fwrite(bytes, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

_Noreturn static void die(const rankkv *r)
{
    rk_fail(RK_EINVAL, "%s", rankkv_last_error(r));
    cli_die();
}

static void print_json(const options *o, const rankkv_options *a, rk_kv_format dtype,
                       rk_kv_precision precision, const int32_t *prompt, int n_prompt,
                       const streamed *out,
                       double t_prefill, double t_decode, size_t weights, size_t arena)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "prompt_tokens", n_prompt);
    cJSON_AddItemToObject(j, "prompt_ids", cJSON_CreateIntArray(prompt, n_prompt));
    cJSON_AddItemToObject(j, "output_ids", cJSON_CreateIntArray(out->ids, out->n));
    cJSON_AddStringToObject(j, "text", out->text.s ? out->text.s : "");
    cJSON_AddStringToObject(j, "target", o->target);
    cJSON_AddNumberToObject(j, "prefill_s", t_prefill);
    cJSON_AddNumberToObject(j, "prefill_tok_s", n_prompt / t_prefill);
    cJSON_AddNumberToObject(j, "decode_s", t_decode);
    cJSON_AddNumberToObject(j, "decode_tok_s", out->n > 1 ? (out->n - 1) / t_decode : 0.0);
    cJSON_AddStringToObject(j, "kv_method", a->kv);
    cJSON_AddStringToObject(j, "kv_dtype", rk_kv_format_name(dtype));
    if (strcmp(a->kv, "full") != 0)
        cJSON_AddNumberToObject(j, "kv_budget", a->kv_budget);
    cJSON_AddStringToObject(j, "kv_precision", rk_kv_precision_name(precision));
    /* The parameters the cache's rows were made with, as the plan took
     * them (the defaults where none was given). */
    if (rk_kv_format_grouped(dtype) || precision == RK_KV_RANK)
        cJSON_AddNumberToObject(j, "kv_group", rk_kv_group_of(a->kv_group));
    if (rk_kv_format_kivi(dtype))
        cJSON_AddNumberToObject(j, "kv_residual", rk_kv_residual_of(a->kv_residual));
    if (dtype == RK_KV_SMART)
        cJSON_AddNumberToObject(j, "kv_bits_avg", rk_smart_bits_of(a->kv_bits_avg));
    cli_kv_fit_json(j, &o->kv);
    cJSON_AddNumberToObject(j, "weights_bytes", (double)weights);
    cJSON_AddNumberToObject(j, "arena_bytes", (double)arena);
    cli_print_json_line(j);
}

int main(int argc, char **argv)
{
    cli_init("rankkv-generate");
    options o = parse(argc, argv);
    const rk_ops *ops = cli_target(o.target);
    cli_check_paths(o.model);
    /* Inconsistent KV options are a bad command line (exit 2), which the
     * API, answering with an error, cannot tell from a bad model. */
    rk_config cfg;
    cli_model_config(o.model, &cfg);
    if (o.kv.memory) {
        /* The context the API plans when --max-context is not given. */
        const int ctx = o.max_context ? o.max_context : cfg.max_pos < 2048 ? cfg.max_pos : 2048;
        if (o.max_new >= ctx)
            cli_usage_error("--max-new-tokens %d leaves no room for a prompt in a context of %d",
                            o.max_new, ctx);
        cli_kv_fit(&o.kv, o.model, &cfg, ops, ctx - o.max_new, o.max_new);
    }
    const rk_kv_policy policy = cli_kv_policy(&o.kv, o.model, cfg.n_layers, 0);
    const rk_kv_format dtype = cli_kv_format(&o.kv, o.kv.dtype, ops, &cfg);
    cli_kv_stores(&policy, dtype);
    rk_limits precision = {.kv_format = dtype, .kv_group = o.kv.group,
                           .kv_residual = o.kv.residual};
    cli_kv_precision(o.kv.precision, o.model, &cfg, ops, &precision);
    const rankkv_options a = api_options(&o);

    size_t weights, arena;
    char err[1024];
    if (rankkv_plan(o.model, &a, o.print_plan ? stdout : NULL, &weights, &arena, err,
                    sizeof err) != RANKKV_OK) {
        rk_fail(RK_EINVAL, "%s", err);
        cli_die();
    }
    if (o.print_plan)
        return 0;

    char *file_prompt = NULL;
    size_t prompt_len = strlen(o.prompt);
    if (o.prompt_file && rk_read_file(o.prompt_file, RK_MAX_PROMPT_FILE, &file_prompt, &prompt_len) != RK_OK)
        cli_die();
    const char *prompt_text = file_prompt ? file_prompt : o.prompt;
    if (prompt_len == 0)
        cli_usage_error("the prompt is empty");

    rankkv *r;
    if (rankkv_open(o.model, &a, &r) != RANKKV_OK)
        die(r);
    streamed out = {.quiet = o.quiet, .ids = malloc((size_t)o.max_new * sizeof(int32_t))};
    if (!out.ids) {
        rk_fail(RK_ENOMEM, "out of memory for %d generated ids", o.max_new);
        cli_die();
    }
    if (!o.quiet) {
        fwrite(prompt_text, 1, prompt_len, stdout);
        fflush(stdout);
    }
    const double t0 = rk_now();
    if (rankkv_generate(r, prompt_text, prompt_len, o.max_new, &o.sampling, on_token, &out, NULL) !=
        RANKKV_OK)
        die(r);
    const double t2 = rk_now(), t1 = out.first_at;
    if (!o.quiet)
        putchar('\n');

    /* The prompt's ids once more, for the record: a prompt that ran fits
     * the plan, which no model has with more than 2^20 positions. */
    const int cap = prompt_len < (1 << 20) ? (int)prompt_len + 1 : 1 << 20;
    int32_t *prompt = malloc((size_t)cap * sizeof *prompt);
    int n_prompt = 0;
    if (!prompt) {
        rk_fail(RK_ENOMEM, "out of memory for the prompt's ids");
        cli_die();
    }
    if (rankkv_tokenize(r, prompt_text, prompt_len, prompt, cap, &n_prompt) != RANKKV_OK)
        die(r);
    fprintf(stderr,
            "[%s] prompt %d tokens: prefill %.1f tok/s (%.1f ms); %d new tokens: decode %.1f "
            "tok/s; arena %.2f MiB + weights %.2f MiB\n",
            o.target, n_prompt, n_prompt / (t1 - t0), 1e3 * (t1 - t0), out.n,
            out.n > 1 ? (out.n - 1) / (t2 - t1) : 0.0, arena / 1048576.0, weights / 1048576.0);
    if (o.json)
        print_json(&o, &a, dtype, precision.kv_precision, prompt, n_prompt, &out, t1 - t0,
                   t2 - t1, weights, arena);

    rankkv_close(r);
    cli_str_free(&out.text);
    free(file_prompt);
    free(prompt);
    free(out.ids);
    return 0;
}
