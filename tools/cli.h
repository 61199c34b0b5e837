/* Helpers shared by the command-line tools: strict argument parsing, the
 * error exits every tool uses, input and output paths checked before the
 * work, outputs written whole or not at all, and text tokenized only as far
 * as it is needed. */
#ifndef RK_CLI_H
#define RK_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "rk_error.h"
#include "tokenizer.h"

/* Names the tool in every message that follows; at exit, a failed write to
 * standard output (a full disk, a closed pipe) turns the status into 1. */
void cli_init(const char *tool);

/* getopt_long over LONGOPTS (plus -h) that answers an unknown option, a
 * missing argument and an argument to a flag with a usage error naming the
 * option; returns what getopt_long does otherwise. */
int cli_getopt(int argc, char **argv, const struct option *longopts);

/* The target NAME: a usage error unless it is cpu or cuda, an error when
 * this build or machine has no such target. */
const rk_ops *cli_target(const char *name);

/* Parses all of S as a number in [lo, hi]; a usage error naming FLAG otherwise. */
long cli_int(const char *flag, const char *s, long lo, long hi);
double cli_double(const char *flag, const char *s, double lo, double hi);

/* Prints "TOOL: error: <rk_last_error()>" and exits 1. */
_Noreturn void cli_die(void);

/* Prints "TOOL: <message>" and a pointer to --help, exits 2. */
_Noreturn void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* snprintf into BUF that never truncates: an error exit when the text does
 * not fit. */
void cli_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A string that grows as it is appended to (text of any length: dataset
 * names, command lines). Zero-initialise; S is NULL until the first add. */
typedef struct {
    char *s;
    size_t len, cap;
} cli_str;
void cli_str_add(cli_str *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_str_clear(cli_str *b);
void cli_str_free(cli_str *b);

/* Paths the run reads and writes, registered while parsing (each returns
 * PATH) and checked together by cli_check_paths before any work. An input
 * directory stands for the files in it. FLAG names the option in messages;
 * with CLI_STDOUT, "-" means standard output. */
enum { CLI_FILE_ONLY = 0, CLI_STDOUT = 1 };
const char *cli_input(const char *path);
/* A model directory: the files its loaders read (*.json, *.safetensors)
 * count as given, so a broken symlink among them is an error too. */
const char *cli_model_input(const char *dir);
const char *cli_output(const char *flag, const char *path, int may_stdout);

/* The check: MODEL (when not NULL) joins the inputs as cli_model_input; a given
 * input that is a dangling symlink or a symlink loop is an error; every
 * output must be writable as rk_out_check says (an error naming the reason
 * otherwise), and one that is an input or another output is a usage error.
 * Files are compared by device and inode when they exist, by the resolved
 * directory and name when they do not yet. */
void cli_check_paths(const char *model);

/* An output opened for writing: a temporary file beside PATH (stdout for
 * "-"); cli_out_close renames it into place and says so on stderr. Exits
 * with the reason on any failure; an exit before the close (cli_die,
 * cli_usage_error) removes the temporary file. */
FILE *cli_out_open(const char *path);
void cli_out_close(FILE *f);

/* The temporary file F is written to, for a program that writes it by name
 * (gnuplot). */
const char *cli_out_temp(FILE *f);

/* --print-plan: reads MODEL/config.json only, prints the memory plan for LIM
 * on OPS to stdout and exits 0 (1 with a message when the plan is refused). */
_Noreturn void cli_print_plan(const char *model, const rk_ops *ops, const rk_limits *lim);

/* Exits with the plan's message when LIM is refused for CFG on OPS; tools
 * that run many configurations check them all before the first runs. */
void cli_check_plan(const rk_config *cfg, const rk_ops *ops, const rk_limits *lim);

/* MODEL/config.json into CFG; exits with the message when it cannot. */
void cli_model_config(const char *model, rk_config *cfg);

/* The commit the numbers belong to ("-dirty" for uncommitted changes); a
 * copy of the tree without its history names it in RANKKV_COMMIT. */
void cli_git_commit(cli_str *out);

/* A new benchmark record with the fields every one in bench/results/
 * starts with: model (left out when NULL), device, target, the commit, the
 * command (ARGV) and the date (UTC). */
struct cJSON *cli_record_new(int argc, char **argv, const char *model, const char *device,
                             const char *target);

/* Writes J, indented, to PATH (an output registered with cli_output) and
 * says so on stderr; exits 1 when it cannot. */
void cli_write_json(const char *path, const struct cJSON *j);

/* The last component of PATH (a model's directory name). */
const char *cli_base_name(const char *path);

/* ARGV joined by spaces, as recorded with benchmark results. */
void cli_command_line(int argc, char **argv, cli_str *out);

/* Reads a text file as the evaluations do (line ends as Python's text mode
 * reads them: CRLF and CR become LF) and tokenizes it, a piece at a time,
 * until at least LIMIT ids are made (0: the whole file). The ids are the
 * first ones of the whole file's. */
rk_status cli_tokenize_file(const rk_tokenizer *tok, const char *path, size_t limit,
                            int32_t **ids, size_t *n);

/* The same for LEN bytes of TEXT as they are. */
rk_status cli_tokenize_text(const rk_tokenizer *tok, const char *text, size_t len, size_t limit,
                            int32_t **ids, size_t *n);

/* The KV-policy options every tool takes. A tool lists CLI_KV_LONGOPTS in
 * its getopt table and hands the codes it does not know to cli_kv_option
 * (cli_getopt returns no others). */
enum { CLI_KV_FIRST = 1024, CLI_KV_METHOD = CLI_KV_FIRST, CLI_KV_BUDGET, CLI_KV_BUDGETS,
       CLI_KV_WINDOW, CLI_KV_POOL, CLI_KV_SINKS, CLI_KV_RECENT, CLI_KV_BETA,
       CLI_KV_STRATEGY, CLI_KV_TEMPERATURE, CLI_KV_POWER, CLI_KV_TIERS, CLI_KV_SEED };
#define CLI_KV_LONGOPTS                                                                        \
    {"kv", required_argument, 0, CLI_KV_METHOD},                                               \
        {"kv-budget", required_argument, 0, CLI_KV_BUDGET},                                    \
        {"kv-budgets", required_argument, 0, CLI_KV_BUDGETS},                                  \
        {"kv-window", required_argument, 0, CLI_KV_WINDOW},                                    \
        {"kv-pool", required_argument, 0, CLI_KV_POOL},                                        \
        {"kv-sinks", required_argument, 0, CLI_KV_SINKS},                                      \
        {"kv-recent", required_argument, 0, CLI_KV_RECENT},                                    \
        {"pyramid-beta", required_argument, 0, CLI_KV_BETA},                                   \
        {"rank-strategy", required_argument, 0, CLI_KV_STRATEGY},                              \
        {"rank-temperature", required_argument, 0, CLI_KV_TEMPERATURE},                        \
        {"rank-power", required_argument, 0, CLI_KV_POWER},                                    \
        {"rank-tiers", required_argument, 0, CLI_KV_TIERS},                                    \
        {"rank-seed", required_argument, 0, CLI_KV_SEED}
#define CLI_KV_HELP                                                                            \
    "  --kv METHOD           KV cache: " RK_KV_METHODS " (default full)\n"          \
    "  --kv-budget N         average positions kept per layer after the prompt\n"              \
    "  --kv-budgets FILE     explicit per-layer budgets (whitespace-separated; they must\n"     \
    "                        sum to layers x --kv-budget)\n"                                   \
    "  --kv-window N         SnapKV/PyramidKV observation window (default 32)\n"               \
    "  --kv-pool N           SnapKV max-pool kernel, odd (default 7)\n"                        \
    "  --kv-sinks N          StreamingLLM attention sinks (default 4)\n"                       \
    "  --kv-recent N         H2O recent window (default: half of each layer's budget)\n"      \
    "  --pyramid-beta X      PyramidKV schedule: top layer gets 1/X of the average\n"          \
    "                        share above the window (default 20)\n"                          \
    "  --rank-strategy S     rankkv budgets from effective ranks: " RK_RANK_STRATEGIES "\n"   \
    "                        (default proportional; random and inverse are ablations)\n"     \
    "  --rank-temperature T  softmax strategy (default: the mean rank)\n"                     \
    "  --rank-power P        power strategy (default 2)\n"                                    \
    "  --rank-tiers N        adaptive strategy: rank-quantile tiers (default 4)\n"            \
    "  --rank-seed N         random strategy's shuffle (default 1)\n"                         \
    "rankkv takes its ranks from the profile compiled in for the model (profiles/);\n"        \
    "rankkv-dynamic measures each prompt's (builds with -DRANKKV_DYNAMIC=ON only).\n"

typedef struct {
    rk_kv_options opt;
    int budgets[RK_MAX_LAYERS];
} cli_kv;

/* Takes one KV option (a code of CLI_KV_LONGOPTS) with its argument. */
void cli_kv_option(cli_kv *kv, int code, const char *arg);

/* The policy for the model in MODEL of LAYERS layers; a usage error when it
 * is inconsistent, an error when rankkv finds no profile for the model. */
rk_kv_policy cli_kv_policy(const cli_kv *kv, const char *model, int layers);

/* Sets LIM's policy for the model and what it implies: a compressing policy
 * prefills the whole prompt at once; rankkv-dynamic measures ranks on OPS's
 * target in dynamic builds (static builds leave that out, and the plan
 * refuses the policy with a message). */
void cli_kv_limits(const cli_kv *kv, const char *model, const rk_config *cfg, const rk_ops *ops,
                   rk_limits *lim);

#endif
