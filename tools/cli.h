/* Helpers shared by the command-line tools: strict argument parsing, the
 * error exits every tool uses, input and output paths checked before the
 * work, outputs written whole or not at all, and text tokenized only as far
 * as it is needed. */
#ifndef RK_CLI_H
#define RK_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kv_fit.h"
#include "model.h"
#include "rk_error.h"
#include "tokenizer.h"

/* Names the tool in every message that follows; at exit, a failed write to
 * standard output (a full disk, a closed pipe) turns the status into 1. */
void cli_init(const char *tool);

/* A tool's options, described once: cli_parse reads argv by the table and
 * --help lists it. TO points where the value goes, of the type the kind
 * names; cli_parse checks ranges, registers paths (cli_input, cli_output)
 * and answers a bad command line with a usage error naming the option. */
typedef enum {
    CLI_END,           /* the entry that ends a table: {0} */
    CLI_TEXT,          /* no option: HELP is printed as it is (a heading, a note) */
    CLI_HELP,          /* -h, --help: the usage and the table on stdout, exit 0 */
    CLI_FLAG,          /* int, set to 1 */
    CLI_INT,           /* int in [LO, HI] */
    CLI_UINT,          /* unsigned in [LO, HI] */
    CLI_U64,           /* uint64_t in [LO, HI] */
    CLI_DOUBLE,        /* double in [LO, HI] */
    CLI_FLOAT,         /* float in [LO, HI] */
    CLI_STRING,        /* const char *, as given */
    CLI_INPUT,         /* const char *, an input path */
    CLI_OUTPUT,        /* const char *, an output file */
    CLI_OUTPUT_STDOUT, /* const char *, an output file or '-' for standard output */
    CLI_INTS,          /* cli_ints: comma-separated integers in [LO, HI], at most MOST */
    CLI_CALL,          /* anything else: TAKE(TO, argument) */
} cli_kind;

enum { CLI_INTS_MAX = 16 };
/* A number in a help text, as its digits. */
#define RK_STR_(x) #x
#define RK_STR(x) RK_STR_(x)
typedef struct {
    int n, v[CLI_INTS_MAX];
} cli_ints;

typedef struct {
    const char *name; /* "--name" */
    cli_kind kind;
    void *to;
    double lo, hi;
    int most;
    void (*take)(void *to, const char *arg);
    const char *arg;  /* what --help shows after the name ("N", "FILE"); NULL for none */
    const char *help; /* its second and later lines are indented under the first */
} cli_opt;

/* Table entries; the number kind follows the type TO points to, and any
 * other type is a compile error. */
#define CLI_NUM(name_, to_, lo_, hi_, arg_, help_)                                             \
    {.name = (name_), .to = (to_), .lo = (lo_), .hi = (hi_), .arg = (arg_), .help = (help_), \
     .kind = _Generic((to_), int *: CLI_INT, unsigned *: CLI_UINT, uint64_t *: CLI_U64,     \
                      double *: CLI_DOUBLE, float *: CLI_FLOAT)}
#define CLI_FLAG_OPT(name_, to_, help_)                                                      \
    {.name = (name_), .kind = CLI_FLAG, .to = _Generic((to_), int *: (to_)), .help = (help_)}
#define CLI_PATH_OPT(name_, kind_, to_, arg_, help_)                                         \
    {.name = (name_), .kind = (kind_), .to = _Generic((to_), const char **: (to_)),         \
     .arg = (arg_), .help = (help_)}
#define CLI_STRING_OPT(name_, to_, arg_, help_) CLI_PATH_OPT(name_, CLI_STRING, to_, arg_, help_)
#define CLI_INTS_OPT(name_, to_, lo_, hi_, most_, arg_, help_)                               \
    {.name = (name_), .kind = CLI_INTS, .to = _Generic((to_), cli_ints *: (to_)), .lo = (lo_), \
     .hi = (hi_), .most = (most_), .arg = (arg_), .help = (help_)}
#define CLI_CALL_OPT(name_, to_, take_, arg_, help_)                                         \
    {.name = (name_), .kind = CLI_CALL, .to = (to_), .take = (take_), .arg = (arg_),        \
     .help = (help_)}
#define CLI_TEXT_OPT(text_) {.kind = CLI_TEXT, .help = (text_)}
#define CLI_HELP_OPT {.name = "--help", .kind = CLI_HELP, .help = "this text"}
/* --model and --target as every tool that runs a model words them; the
 * default model is the tool's RK_DEFAULT_MODEL. */
#define CLI_MODEL_OPT(to_)                                                                    \
    CLI_STRING_OPT("--model", to_, "DIR", "model directory (default: " RK_DEFAULT_MODEL ")")
#define CLI_TARGET_OPT(to_)                                                                   \
    CLI_STRING_OPT("--target", to_, "cpu|cuda", "where to run (default cpu)")

/* Parses ARGV by OPTS (ended by {0}); a word that is not an option is a
 * usage error. --help prints USAGE (the "usage:" lines and what the tool
 * does), then the table. */
void cli_parse(int argc, char **argv, const char *usage, const cli_opt *opts);

/* Splits a copy of the comma-separated LIST into at most MAX words; a usage
 * error naming FLAG when it is empty or longer. OUT[0] is the start of the
 * copy: free it when the words are no longer needed. */
int cli_split_list(const char *flag, const char *list, char **out, int max);

/* The target NAME: a usage error unless it is cpu or cuda, an error when
 * this build or machine has no such target. */
const rk_ops *cli_target(const char *name);

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

/* The same check for one output of FLAG that the table does not hold (a
 * tool writing many files into a directory), after cli_check_paths. */
void cli_check_output(const char *flag, const char *path);

/* An output opened for writing: a temporary file beside PATH (stdout for
 * "-"); cli_out_close renames it into place and says so on stderr. Exits
 * with the reason on any failure; an exit before the close (cli_die,
 * cli_usage_error) removes the temporary file. */
FILE *cli_out_open(const char *path);
void cli_out_close(FILE *f);

/* A --plot option's outputs: the PNG, and its data and script beside it
 * (PNG.dat and PNG.gp, malloc'd; free them). */
typedef struct {
    const char *png;
    char *dat, *gp;
} cli_plot_paths;

/* --plot FILE.png, as a CLI_CALL option takes it into a cli_plot_paths:
 * the three outputs registered. */
void cli_plot_take(void *paths, const char *png);

/* S as a gnuplot string: single-quoted, a quote doubled. */
void cli_gp_string(FILE *f, const char *s);

/* Writes the gnuplot script SCRIPT(f, png, arg) makes to P's script, for a
 * rerun elsewhere, then runs it through gnuplot into P's PNG's temporary file:
 * the PNG, like every output, appears only once gnuplot has finished it.
 * Without gnuplot, a message on stderr says how to draw it where it is. */
void cli_plot(const cli_plot_paths *p, void (*script)(FILE *f, const char *png, const void *arg),
              const void *arg);

/* --print-plan: reads MODEL/config.json only, prints the memory plan for LIM
 * on OPS to stdout and exits 0 (1 with a message when the plan is refused). */
_Noreturn void cli_print_plan(const char *model, const rk_ops *ops, const rk_limits *lim);

/* Exits with the plan's message when LIM is refused for CFG on OPS; tools
 * that run many configurations check them all before the first runs. */
void cli_check_plan(const rk_config *cfg, const rk_ops *ops, const rk_limits *lim);

/* MODEL/config.json into CFG; exits with the message when it cannot. */
void cli_model_config(const char *model, rk_config *cfg);

/* M loaded on OPS as rk_model_load does; an error exit when it cannot be.
 * Its device is the one the records that follow name. */
rk_model *cli_model_load(const char *model, const rk_ops *ops, const rk_limits *lim);

/* The device of the last model cli_model_load loaded. */
const char *cli_device(void);

/* MODEL/tokenizer.json (FILE instead, when not NULL), checked against a
 * vocabulary of VOCAB when it is not 0; an error exit when it fails. */
rk_tokenizer *cli_tokenizer(const char *model, const char *file, int vocab);

/* A new benchmark record with the fields every one in bench/results/
 * starts with: model (left out when NULL), device (cli_device), target,
 * the commit, the command (ARGV) and the date (UTC). */
struct cJSON *cli_record_new(int argc, char **argv, const char *model, const char *target);

/* Prints J on one line of stdout and deletes it. */
void cli_print_json_line(struct cJSON *j);

/* The peak resident memory of this process so far, in MiB. */
double cli_peak_rss_mb(void);

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


/* The KV-cache options every tool that runs a model takes: the policy, and
 * how the cache stores its rows. */
typedef struct {
    rk_kv_options opt;
    int budgets[RK_MAX_LAYERS];
    const char *dtype; /* a name of RK_KV_FORMATS (a list in eval and bench); NULL: the target's */
    int group;         /* --kv-group; 0: RK_KV_GROUP_DEFAULT */
    int residual;      /* --kv-residual; 0: RK_KV_RESIDUAL_DEFAULT */
    double bits_avg;   /* --kv-bits-avg (smartkv); 0: RK_SMART_BITS_DEFAULT */
    const char *precision; /* a name of RK_KV_PRECISIONS (a list in eval and bench); NULL:
                              uniform */
    size_t memory;     /* --kv-memory in bytes; 0: none */
    rk_kv_fit fit;     /* what cli_kv_fit chose for MEMORY; bytes 0 until it has */
} cli_kv;

/* --kv-budgets, --kv-memory and --rank-strategy, as CLI_CALL options take
 * them. */
void cli_kv_budgets(void *kv, const char *path);
void cli_kv_memory(void *kv, const char *bytes);
void cli_kv_strategy(void *strategy, const char *name);

/* The KV options' table entries, writing to the cli_kv at KV. */
#define CLI_KV_OPTIONS(kv)                                                                     \
    CLI_STRING_OPT("--kv", &(kv)->opt.method, "METHOD",                                       \
                   "KV cache: " RK_KV_METHODS " (default full)"),                              \
    CLI_NUM("--kv-budget", &(kv)->opt.average, 1, 1 << 24, "N",                              \
            "average positions kept per layer after the prompt"),                             \
    CLI_CALL_OPT("--kv-budgets", (kv), cli_kv_budgets, "FILE",                                \
                 "explicit per-layer budgets (whitespace-separated; they must\n"              \
                 "sum to layers x --kv-budget)"),                                              \
    CLI_CALL_OPT("--kv-memory", (kv), cli_kv_memory, "BYTES",                                  \
                 "KV cache bytes instead of a budget (200MB, 1.5GiB, 123456789):\n"           \
                 "the most bits that keep the whole prompt, else the largest\n"               \
                 "budget at int8 (at int4 when int8 holds no budget); README"),               \
    CLI_NUM("--kv-window", &(kv)->opt.window, 1, 1 << 20, "N",                                \
            "SnapKV/PyramidKV observation window (default 32)"),                              \
    CLI_NUM("--kv-pool", &(kv)->opt.pool, 1, 1023, "N",                                       \
            "SnapKV max-pool kernel, odd (default 7)"),                                       \
    CLI_NUM("--kv-sinks", &(kv)->opt.sinks, 1, 1 << 20, "N",                                  \
            "StreamingLLM attention sinks (default 4)"),                                      \
    CLI_NUM("--kv-recent", &(kv)->opt.recent, 1, 1 << 20, "N",                                \
            "H2O recent window (default: half of each layer's budget)"),                      \
    CLI_NUM("--pyramid-beta", &(kv)->opt.beta, 1, 1e6, "X",                                   \
            "PyramidKV schedule: top layer gets 1/X of the average\n"                         \
            "share above the window (default 20)"),                                           \
    CLI_CALL_OPT("--rank-strategy", &(kv)->opt.rank.strategy, cli_kv_strategy, "S",           \
                 "rankkv budgets from effective ranks: " RK_RANK_STRATEGIES "\n"              \
                 "(default proportional; random and inverse are ablations)"),                 \
    CLI_NUM("--rank-temperature", &(kv)->opt.rank.temperature, 1e-6, 1e9, "T",                \
            "softmax strategy (default: the mean rank)"),                                     \
    CLI_NUM("--rank-power", &(kv)->opt.rank.power, 1e-3, 64, "P",                             \
            "power strategy (default 2)"),                                                    \
    CLI_NUM("--rank-tiers", &(kv)->opt.rank.tiers, 1, RK_MAX_LAYERS, "N",                     \
            "adaptive strategy: rank-quantile tiers (default 4)"),                            \
    CLI_NUM("--rank-seed", &(kv)->opt.rank.seed, 1, 0x7fffffff, "N",                          \
            "random strategy's shuffle (default 1)"),                                         \
    CLI_STRING_OPT("--kv-dtype", &(kv)->dtype, "TYPE",                                       \
                   "how the KV cache stores rows: " RK_KV_FORMATS "\n"                       \
                   "(default: the target's own, fp32 on cpu, fp16 on cuda; cuda\n"           \
                   "stores all but fp32); int8, int4 and int2 per\n"                        \
                   "token, asymmetric, with an fp16 scale and minimum per\n"                \
                   "--kv-group channels; kivi (2-bit keys, 4-bit values), kivi2\n"          \
                   "(2/2), kivi4 (4/4): keys per channel over --kv-group\n"                 \
                   "positions, values per token, the newest --kv-residual\n"                \
                   "positions fp16 (not with h2o or streamingllm);\n"                       \
                   "smartkv: each row fp16, int8, int4 or int2 by its attention,\n"         \
                   "tiers sized by --kv-bits-avg (not with h2o or streamingllm;\n"          \
                   "README)"),                                                              \
    CLI_NUM("--kv-group", &(kv)->group, 1, RK_KV_MAX_HEAD_DIM, "N",                           \
            "channels per scale of int8/int4 rows and of kivi values, and\n"                 \
            "positions per scale of kivi keys; must divide head_dim\n"                       \
            "(default " RK_STR(RK_KV_GROUP_DEFAULT) ")"),                                     \
    CLI_NUM("--kv-residual", &(kv)->residual, 1, 1 << 20, "N",                                \
            "kivi: positions kept fp16 before they are quantized together;\n"               \
            "a multiple of --kv-group (default " RK_STR(RK_KV_RESIDUAL_DEFAULT) ")"),         \
    CLI_NUM("--kv-bits-avg", &(kv)->bits_avg, 1e-9, 1e9, "X",                                \
            "smartkv: average bits per element, scales counted (int8 10,\n"                  \
            "int4 6, int2 4 at group 16), in [int2's, 16] (default 8: half\n"               \
            "of fp16's bytes)"),                                                            \
    CLI_STRING_OPT("--kv-precision", &(kv)->precision, "P",                                  \
                   "bits per layer: uniform (default: every layer --kv-dtype) or\n"         \
                   "rank: layers of higher effective rank (the model's compiled\n"          \
                   "profile) one step up the ladder int2 < int4 < int8 < fp16 <\n"          \
                   "fp32, lower ones one step down, within the uniform cache's\n"           \
                   "bytes (--kv-dtype fp16, int8 or int4; README)"),                       \
    CLI_TEXT_OPT("rankkv takes its ranks from the profile compiled in for the model "          \
                 "(profiles/);\nrankkv-dynamic measures each prompt's "                      \
                 "(builds with -DRANKKV_DYNAMIC=ON only).\n")

/* The policy for the model in MODEL of LAYERS layers, no layer keeping more
 * than MAX_ROWS (the prompt limit; 0: unchecked here); a usage error when it
 * is inconsistent, an error when rankkv finds no profile for the model. */
rk_kv_policy cli_kv_policy(const cli_kv *kv, const char *model, int layers, int max_rows);

/* The KV storage format NAME (NULL: OPS's own) for a model of CFG, in
 * groups of KV's --kv-group; a usage error naming --kv-dtype when NAME is
 * unknown, OPS has no cache of it, or the group does not divide the
 * model's head_dim. */
rk_kv_format cli_kv_format(const cli_kv *kv, const char *name, const rk_ops *ops,
                           const rk_config *cfg);

/* LIM's --kv-precision NAME (NULL: uniform), LIM's kv_format, kv_group and
 * kv_residual set: for rank, the profile compiled in for the model in MODEL
 * (found as rankkv finds it), then the plan's own check
 * (rk_model_check_kv_precision) against OPS for CFG. A usage error when
 * NAME is unknown, no profile matches the model, the dtype has no step on
 * a side, or OPS stores no step's format. */
void cli_kv_precision(const char *name, const char *model, const rk_config *cfg, const rk_ops *ops,
                      rk_limits *lim);

/* M's KV storage into J as every record names it: kv_dtype, kv_group (of
 * grouped formats), kv_residual (KIVI), kv_precision, and under rank
 * precision each layer's dtype (kv_layer_dtypes). */
void cli_kv_cache_json(struct cJSON *j, const rk_model *m);

/* A usage error when policy P cannot keep a cache of format F (h2o or
 * streamingllm over KIVI). */
void cli_kv_stores(const rk_kv_policy *p, rk_kv_format f);

/* A usage error for an option no --kv-dtype named uses, which would
 * otherwise be ignored: --kv-bits-avg without smartkv, --kv-residual
 * without a KIVI format (KV's --kv-dtype is one name or, in the tools that
 * take lists, a comma-separated list). */
void cli_kv_check_dtype_options(const cli_kv *kv);

/* With --kv-memory: the dtype and average budget kv_fit.h's rule chooses
 * for prompts of MAX_PROMPT tokens and MAX_NEW after them, on OPS (or in
 * the one --kv-dtype names), into KV's dtype, opt.average and fit, and said
 * on stderr; nothing when KV has no memory or has already chosen. A usage
 * error when --kv-budget(s) or --kv-precision rank is given too or the
 * memory is too small. */
void cli_kv_fit(cli_kv *kv, const char *model, const rk_config *cfg, const rk_ops *ops,
                int max_prompt, int max_new);

/* KV's --kv-memory choice as "kv_memory" in J: the bytes given, the dtype,
 * the average budget (0: the full cache), whether the whole prompt is kept
 * and the cache's bytes; nothing without --kv-memory. */
void cli_kv_fit_json(struct cJSON *j, const cli_kv *kv);

/* Sets LIM's policy for the model and what it implies: a compressing policy
 * prefills the whole prompt at once; rankkv-dynamic measures ranks on OPS's
 * target in dynamic builds (static builds leave that out, and the plan
 * refuses the policy with a message). The cache stores rows as KV's
 * --kv-dtype (one name) says (cli_kv_format); with --kv-memory, as
 * cli_kv_fit chooses for LIM's prompt and new tokens; at KV's
 * --kv-precision (one name, cli_kv_precision). */
void cli_kv_limits(cli_kv *kv, const char *model, const rk_config *cfg, const rk_ops *ops,
                   rk_limits *lim);

#endif
