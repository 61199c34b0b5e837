#include "cli.h"

#include "textio.h"
#ifdef RANKKV_DYNAMIC
#include "rank.h"
#endif

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *tool_name = "rankkv";

void cli_init(const char *tool) { tool_name = tool; }

long cli_int(const char *flag, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        cli_usage_error("%s expects an integer in [%ld, %ld], got '%s'", flag, lo, hi, s);
    return v;
}

double cli_double(const char *flag, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        cli_usage_error("%s expects a number in [%g, %g], got '%s'", flag, lo, hi, s);
    return v;
}

_Noreturn void cli_die(void)
{
    fprintf(stderr, "%s: error: %s\n", tool_name, rk_last_error());
    exit(1);
}

_Noreturn void cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", tool_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry '%s --help'\n", tool_name);
    exit(2);
}

/* The plan for LIM, made without allocating the model; exits with the
 * message when it is refused. */
static rk_model *plan_or_die(const rk_config *cfg, const rk_ops *ops, const rk_limits *lim)
{
    rk_model *plan = malloc(sizeof *plan);
    if (!plan) {
        rk_fail(RK_ENOMEM, "out of memory for a plan");
        cli_die();
    }
    if (rk_model_plan(cfg, ops, lim, plan) != RK_OK)
        cli_die();
    return plan;
}

void cli_print_plan(const char *model, const rk_ops *ops, const rk_limits *lim)
{
    char path[4096];
    rk_config cfg;
    snprintf(path, sizeof path, "%s/config.json", model);
    if (rk_config_load(path, &cfg) != RK_OK)
        cli_die();
    rk_model *plan = plan_or_die(&cfg, ops, lim);
    rk_model_print_plan(plan, stdout);
    free(plan);
    exit(0);
}

void cli_check_plan(const rk_config *cfg, const rk_ops *ops, const rk_limits *lim)
{
    free(plan_or_die(cfg, ops, lim));
}

/* The commit the numbers belong to; "-dirty" marks uncommitted changes. A
 * copy of the tree without its history (a benchmark machine) names it in
 * RANKKV_COMMIT. */
void cli_git_commit(char *buf, size_t len)
{
    const char *given = getenv("RANKKV_COMMIT");
    snprintf(buf, len, "%s", given && *given ? given : "unknown");
    if (given && *given)
        return;
    FILE *p = popen("git -C " RK_SOURCE_DIR " rev-parse --verify -q HEAD 2>/dev/null", "r");
    if (!p)
        return;
    char line[96];
    if (fgets(line, sizeof line, p) && strspn(line, "0123456789abcdef") == 40) {
        line[40] = '\0';
        snprintf(buf, len, "%s", line);
    }
    if (pclose(p) != 0 || strcmp(buf, "unknown") == 0)
        return;
    p = popen("git -C " RK_SOURCE_DIR " status --porcelain --untracked-files=no 2>/dev/null", "r");
    if (p) {
        if (fgets(line, sizeof line, p) && strlen(buf) + 7 < len)
            strcat(buf, "-dirty");
        pclose(p);
    }
}

cJSON *cli_record_new(int argc, char **argv, const char *model, const char *device,
                      const char *target)
{
    char commit[96], command[4096], date[32];
    cli_git_commit(commit, sizeof commit);
    cli_command_line(argc, argv, command, sizeof command);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON *j = cJSON_CreateObject();
    if (model)
        cJSON_AddStringToObject(j, "model", model);
    cJSON_AddStringToObject(j, "device", device);
    cJSON_AddStringToObject(j, "target", target);
    cJSON_AddStringToObject(j, "commit", commit);
    cJSON_AddStringToObject(j, "command", command);
    cJSON_AddStringToObject(j, "date", date);
    return j;
}

void cli_write_json(const char *path, const cJSON *j)
{
    char *text = cJSON_Print(j);
    FILE *f = fopen(path, "w");
    if (!text || !f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
        rk_fail(RK_EIO, "cannot write %s", path);
        cli_die();
    }
    free(text);
    fprintf(stderr, "wrote %s\n", path);
}

const char *cli_base_name(const char *path)
{
    static char name[256];
    rk_base_name(path, name, sizeof name);
    return name;
}

void cli_command_line(int argc, char **argv, char *buf, size_t len)
{
    buf[0] = '\0';
    for (int i = 0; i < argc; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", i ? " " : "", argv[i]);
    }
}

rk_status cli_tokenize_file(const rk_tokenizer *tok, const char *path, int32_t **ids, size_t *n)
{
    char *data;
    size_t len;
    rk_status st = rk_read_file(path, SIZE_MAX, &data, &len);
    if (st != RK_OK)
        return st;
    len = rk_text_universal_newlines(data, len);
    fprintf(stderr, "[tokenize] %s (%zu bytes)\n", path, len);
    st = rk_tok_encode(tok, data, len, ids, n);
    free(data);
    return st;
}

/* Reads up to RK_MAX_LAYERS integers from PATH. */
static int read_budgets(const char *path, int *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        cli_usage_error("--kv-budgets: cannot open %s", path);
    int n = 0;
    char word[64];
    while (fscanf(f, "%63s", word) == 1) {
        if (n == RK_MAX_LAYERS) {
            fclose(f);
            cli_usage_error("--kv-budgets: %s has more than %d entries", path, RK_MAX_LAYERS);
        }
        char *end;
        errno = 0;
        long v = strtol(word, &end, 10);
        if (errno || *end || v < 0 || v > (1 << 24)) {
            fclose(f);
            cli_usage_error("--kv-budgets: entry %d of %s is '%s', not a budget", n + 1, path,
                            word);
        }
        out[n++] = (int)v;
    }
    fclose(f);
    if (n == 0)
        cli_usage_error("--kv-budgets: %s holds no budgets", path);
    return n;
}

int cli_kv_option(cli_kv *kv, int code, const char *arg)
{
    rk_kv_options *o = &kv->opt;
    switch (code) {
    case CLI_KV_METHOD: o->method = arg; break;
    case CLI_KV_BUDGET: o->average = (int)cli_int("--kv-budget", arg, 1, 1 << 24); break;
    case CLI_KV_BUDGETS: o->n_budgets = read_budgets(arg, kv->budgets); break;
    case CLI_KV_WINDOW: o->window = (int)cli_int("--kv-window", arg, 1, 1 << 20); break;
    case CLI_KV_POOL: o->pool = (int)cli_int("--kv-pool", arg, 1, 1023); break;
    case CLI_KV_SINKS: o->sinks = (int)cli_int("--kv-sinks", arg, 1, 1 << 20); break;
    case CLI_KV_RECENT: o->recent = (int)cli_int("--kv-recent", arg, 1, 1 << 20); break;
    case CLI_KV_BETA: o->beta = cli_double("--pyramid-beta", arg, 1, 1e6); break;
    case CLI_KV_STRATEGY:
        if (rk_rank_strategy_parse(arg, &o->rank.strategy) != RK_OK)
            cli_usage_error("--rank-strategy: %s", rk_last_error());
        break;
    case CLI_KV_TEMPERATURE:
        o->rank.temperature = cli_double("--rank-temperature", arg, 1e-6, 1e9);
        break;
    case CLI_KV_POWER: o->rank.power = cli_double("--rank-power", arg, 1e-3, 64); break;
    case CLI_KV_TIERS: o->rank.tiers = (int)cli_int("--rank-tiers", arg, 1, RK_MAX_LAYERS); break;
    case CLI_KV_SEED: o->rank.seed = (unsigned)cli_int("--rank-seed", arg, 1, 0x7fffffff); break;
    default: return 0;
    }
    return 1;
}

rk_kv_policy cli_kv_policy(const cli_kv *kv, const char *model, int layers)
{
    rk_kv_policy p;
    rk_kv_options opt = kv->opt;
    /* Set here, not when parsing: tools copy their options around, and the
     * array must be this copy's. */
    opt.budgets = opt.n_budgets ? kv->budgets : NULL;
    if (opt.method && strcmp(opt.method, "rankkv") == 0) {
        rk_identity id;
        if (rk_identity_of(model, &id) != RK_OK || !(opt.profile = rk_profile_find(&id)))
            cli_die();
    }
    if (rk_kv_policy_make(&opt, layers, &p) != RK_OK)
        cli_usage_error("%s", rk_last_error());
    return p;
}

void cli_kv_limits(const cli_kv *kv, const char *model, const rk_config *cfg, const rk_ops *ops,
                   rk_limits *lim)
{
    lim->kv = cli_kv_policy(kv, model, cfg->n_layers);
    if (lim->kv.method != RK_KV_FULL)
        lim->prefill_chunk = lim->max_prompt;
#ifdef RANKKV_DYNAMIC
    if (lim->kv.dynamic) {
        if (!(lim->rank = rk_rank_find(ops->name)))
            cli_die();
        lim->rank_len = lim->max_prompt < RK_KV_DYNAMIC_RANK_LEN ? lim->max_prompt
                                                                 : RK_KV_DYNAMIC_RANK_LEN;
    }
#endif
}
