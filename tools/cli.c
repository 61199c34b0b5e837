#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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

void cli_print_plan(const char *model, const rk_ops *ops, const rk_limits *lim)
{
    char path[4096];
    rk_config cfg;
    snprintf(path, sizeof path, "%s/config.json", model);
    rk_model *plan = malloc(sizeof *plan);
    if (!plan || rk_config_load(path, &cfg) != RK_OK || rk_model_plan(&cfg, ops, lim, plan) != RK_OK)
        cli_die();
    rk_model_print_plan(plan, stdout);
    free(plan);
    exit(0);
}
