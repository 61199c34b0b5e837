/* Argument helpers shared by the command-line tools: strict number parsing
 * and the error exits every tool uses. */
#ifndef RK_CLI_H
#define RK_CLI_H

#include "model.h"
#include "rk_error.h"

/* Names the tool in every message that follows. */
void cli_init(const char *tool);

/* Parses all of S as a number in [lo, hi]; a usage error naming FLAG otherwise. */
long cli_int(const char *flag, const char *s, long lo, long hi);
double cli_double(const char *flag, const char *s, double lo, double hi);

/* Prints "TOOL: error: <rk_last_error()>" and exits 1. */
_Noreturn void cli_die(void);

/* Prints "TOOL: <message>" and a pointer to --help, exits 2. */
_Noreturn void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --print-plan: reads MODEL/config.json only, prints the memory plan for LIM
 * on OPS to stdout and exits 0 (1 with a message when the plan is refused). */
_Noreturn void cli_print_plan(const char *model, const rk_ops *ops, const rk_limits *lim);

#endif
