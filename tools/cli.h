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

/* Exits with the plan's message when LIM is refused for CFG on OPS; tools
 * that run many configurations check them all before the first runs. */
void cli_check_plan(const rk_config *cfg, const rk_ops *ops, const rk_limits *lim);

/* The commit the numbers belong to ("-dirty" for uncommitted changes); a
 * copy of the tree without its history names it in RANKKV_COMMIT. */
void cli_git_commit(char *buf, size_t len);

/* A new benchmark record with the fields every one in bench/results/
 * starts with: model (left out when NULL), device, target, the commit, the
 * command (ARGV) and the date (UTC). */
struct cJSON *cli_record_new(int argc, char **argv, const char *model, const char *device,
                             const char *target);

/* Writes J, indented, to PATH and says so on stderr; exits 1 when it
 * cannot. */
void cli_write_json(const char *path, const struct cJSON *j);

/* The last component of PATH (a model's directory name). */
const char *cli_base_name(const char *path);

/* ARGV joined by spaces, as recorded with benchmark results. */
void cli_command_line(int argc, char **argv, char *buf, size_t len);

/* Reads a text file as the evaluations do (line ends as Python's text mode
 * reads them: CRLF and CR become LF) and tokenizes it. */
rk_status cli_tokenize_file(const rk_tokenizer *tok, const char *path, int32_t **ids, size_t *n);

/* The KV-policy options every tool takes. A tool lists CLI_KV_LONGOPTS in
 * its getopt table and hands the codes it does not know to cli_kv_option. */
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

/* Takes one KV option with its argument; 0 when CODE is not one. */
int cli_kv_option(cli_kv *kv, int code, const char *arg);

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
