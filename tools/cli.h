/* Argument helpers shared by the command-line tools: strict number parsing
 * and the error exits every tool uses. */
#ifndef RK_CLI_H
#define RK_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "rk_error.h"
#include "tokenizer.h"

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

/* The commit the numbers belong to ("-dirty" for uncommitted changes); a
 * copy of the tree without its history names it in RANKKV_COMMIT. */
void cli_git_commit(char *buf, size_t len);

/* The last component of PATH (a model's directory name). */
const char *cli_base_name(const char *path);

/* ARGV joined by spaces, as recorded with benchmark results. */
void cli_command_line(int argc, char **argv, char *buf, size_t len);

/* Reads a text file as the evaluations do (line ends as Python's text mode
 * reads them: CRLF and CR become LF) and tokenizes it. */
rk_status cli_tokenize_file(const rk_tokenizer *tok, const char *path, int32_t **ids, size_t *n);

#endif
