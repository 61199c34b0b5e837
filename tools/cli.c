/* realpath is XSI, beyond the POSIX level the build asks for. */
#define _XOPEN_SOURCE 700

#include "cli.h"

#include "kv_smart.h"
#include "targets.h"
#include "textio.h"
#ifdef RANKKV_DYNAMIC
#include "rank.h"
#endif

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *tool_name = "rankkv";

/* Parses all of S as a number in [lo, hi]; a usage error naming FLAG otherwise. */
static long cli_int(const char *flag, const char *s, long lo, long hi);
static double cli_double(const char *flag, const char *s, double lo, double hi);
/* The temporary file F is written to, for a program that writes it by name
 * (gnuplot). */
static const char *cli_out_temp(FILE *f);
/* Set once a failed write to stdout has been reported, so that the exit
 * check does not say it again. */
static int stdout_reported;

/* Outputs being written; an exit before they are complete removes them. */
enum { MAX_OPEN = 8 };
static rk_outfile open_outs[MAX_OPEN];

static void abort_outputs(void)
{
    for (int i = 0; i < MAX_OPEN; i++)
        if (open_outs[i].f)
            rk_out_abort(&open_outs[i]);
}

/* Interrupted: the temporary files go (unlink is safe in a handler), then
 * the signal does what it would have. */
static void on_signal(int sig)
{
    for (int i = 0; i < MAX_OPEN; i++)
        if (open_outs[i].temp)
            unlink(open_outs[i].temp);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Output that never reached standard output is a failure, even when
 * everything else went well. */
static void check_stdout(void)
{
    const int flush_failed = fflush(stdout) != 0;
    if (!stdout_reported && (flush_failed || ferror(stdout))) {
        fprintf(stderr, "%s: error: cannot write standard output: %s\n", tool_name,
                flush_failed ? strerror(errno) : "a write failed");
        _exit(1);
    }
}

void cli_init(const char *tool)
{
    tool_name = tool;
    atexit(check_stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
}

/* getopt_long over LONGOPTS (plus -h) that answers an unknown option, a
 * missing argument and an argument to a flag with a usage error naming the
 * option; returns what getopt_long does otherwise. */
static int cli_getopt(int argc, char **argv, const struct option *longopts)
{
    /* The leading ':' has getopt return ':' for a missing argument and print
     * nothing itself, so that every message comes in the tool's words. */
    const int c = getopt_long(argc, argv, ":h", longopts, NULL);
    if (c != ':' && c != '?')
        return c;
    const char *given = argv[optind - 1];
    if (c == ':') {
        for (const struct option *o = longopts; o->name; o++)
            if (!o->flag && o->val == optopt)
                cli_usage_error("option --%s needs an argument", o->name);
        cli_usage_error("option %s needs an argument", given);
    }
    if (strncmp(given, "--", 2) == 0)
        for (const struct option *o = longopts; o->name; o++) {
            const size_t len = strlen(o->name);
            if (o->has_arg == no_argument && strncmp(given + 2, o->name, len) == 0 &&
                given[2 + len] == '=')
                cli_usage_error("option --%s takes no argument", o->name);
        }
    cli_usage_error("unknown option '%s'", given);
}

/* The help's left column: "--name ARG" (or "-h, --help") into BUF. */
static void left_column(const cli_opt *o, char *buf, size_t len)
{
    if (o->kind == CLI_HELP)
        cli_fmt(buf, len, "-h, --help");
    else
        cli_fmt(buf, len, "%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
}

/* Names longer than this take their help on the next line. */
enum { HELP_NAME_WIDTH = 22 };

static void print_help(const char *usage, const cli_opt *opts)
{
    char left[128];
    int width = 0;
    for (const cli_opt *o = opts; o->kind != CLI_END; o++)
        if (o->kind != CLI_TEXT) {
            left_column(o, left, sizeof left);
            const int n = (int)strlen(left);
            width = n > width && n <= HELP_NAME_WIDTH ? n : width;
        }
    fputs(usage, stdout);
    for (const cli_opt *o = opts; o->kind != CLI_END; o++) {
        if (o->kind == CLI_TEXT) {
            fputs(o->help, stdout);
            continue;
        }
        left_column(o, left, sizeof left);
        if ((int)strlen(left) > width)
            printf("  %s\n%*s", left, width + 4, "");
        else
            printf("  %-*s  ", width, left);
        for (const char *h = o->help; *h; h++) {
            putchar(*h);
            if (*h == '\n')
                printf("%*s", width + 4, "");
        }
        putchar('\n');
    }
}

/* ARG of the option O, as its kind says. */
static void take(const cli_opt *o, const char *arg)
{
    switch (o->kind) {
    case CLI_FLAG: *(int *)o->to = 1; break;
    case CLI_INT: *(int *)o->to = (int)cli_int(o->name, arg, (long)o->lo, (long)o->hi); break;
    case CLI_UINT:
        *(unsigned *)o->to = (unsigned)cli_int(o->name, arg, (long)o->lo, (long)o->hi);
        break;
    case CLI_U64:
        *(uint64_t *)o->to = (uint64_t)cli_int(o->name, arg, (long)o->lo, (long)o->hi);
        break;
    case CLI_DOUBLE: *(double *)o->to = cli_double(o->name, arg, o->lo, o->hi); break;
    case CLI_FLOAT: *(float *)o->to = (float)cli_double(o->name, arg, o->lo, o->hi); break;
    case CLI_STRING: *(const char **)o->to = arg; break;
    case CLI_INPUT: *(const char **)o->to = cli_input(arg); break;
    case CLI_OUTPUT: *(const char **)o->to = cli_output(o->name, arg, CLI_FILE_ONLY); break;
    case CLI_OUTPUT_STDOUT: *(const char **)o->to = cli_output(o->name, arg, CLI_STDOUT); break;
    case CLI_INTS: {
        cli_ints *l = o->to;
        char *words[CLI_INTS_MAX];
        l->n = cli_split_list(o->name, arg, words, o->most);
        for (int i = 0; i < l->n; i++)
            l->v[i] = (int)cli_int(o->name, words[i], (long)o->lo, (long)o->hi);
        free(words[0]);
        break;
    }
    case CLI_CALL: o->take(o->to, arg); break;
    case CLI_END:
    case CLI_TEXT:
    case CLI_HELP: break;
    }
}

void cli_parse(int argc, char **argv, const char *usage, const cli_opt *opts)
{
    /* getopt_long's codes: 256 + the entry's index, clear of 'h'. */
    enum { FIRST = 256, MAX_OPTS = 64 };
    struct option longopts[MAX_OPTS + 1] = {{0}};
    int n = 0;
    for (int i = 0; opts[i].kind != CLI_END; i++) {
        if (opts[i].kind == CLI_TEXT)
            continue;
        if (n == MAX_OPTS) {
            rk_fail(RK_ELIMIT, "a tool of more than %d options", MAX_OPTS);
            cli_die();
        }
        const int bare = opts[i].kind == CLI_FLAG || opts[i].kind == CLI_HELP;
        longopts[n++] = (struct option){opts[i].name + 2, bare ? no_argument : required_argument,
                                        NULL, opts[i].kind == CLI_HELP ? 'h' : FIRST + i};
    }
    for (int c; (c = cli_getopt(argc, argv, longopts)) != -1;) {
        if (c == 'h') {
            print_help(usage, opts);
            exit(0);
        }
        take(&opts[c - FIRST], optarg);
    }
    if (optind < argc)
        cli_usage_error("unexpected argument '%s'", argv[optind]);
}

int cli_split_list(const char *flag, const char *list, char **out, int max)
{
    /* Without its leading commas, so that the first word starts the copy. */
    char *copy = strdup(list + strspn(list, ","));
    if (!copy) {
        rk_fail(RK_ENOMEM, "out of memory");
        cli_die();
    }
    int n = 0;
    for (char *w = strtok(copy, ","); w; w = strtok(NULL, ",")) {
        if (n == max)
            cli_usage_error("%s takes at most %d entries", flag, max);
        /* A repeated entry would run, and report, the same row twice. */
        for (int i = 0; i < n; i++)
            if (strcmp(out[i], w) == 0)
                cli_usage_error("%s lists '%s' twice", flag, w);
        out[n++] = w;
    }
    if (n == 0) {
        free(copy);
        cli_usage_error("%s is empty", flag);
    }
    return n;
}

const rk_ops *cli_target(const char *name)
{
    if (strcmp(name, "cpu") != 0 && strcmp(name, "cuda") != 0)
        cli_usage_error("unknown target '%s' (expected cpu or cuda)", name);
    const rk_ops *ops = rk_target_find(name);
    if (!ops)
        cli_die();
    return ops;
}

static long cli_int(const char *flag, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        cli_usage_error("%s expects an integer in [%ld, %ld], got '%s'", flag, lo, hi, s);
    return v;
}

static double cli_double(const char *flag, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        cli_usage_error("%s expects a number in [%g, %g], got '%s'", flag, lo, hi, s);
    return v;
}

/* PATH with SUFFIX appended (malloc'd). */
static char *beside(const char *path, const char *suffix)
{
    cli_str s = {0};
    cli_str_add(&s, "%s%s", path, suffix);
    return s.s;
}

void cli_plot_take(void *paths, const char *png)
{
    cli_plot_paths *p = paths;
    p->png = cli_output("--plot", png, CLI_FILE_ONLY);
    free(p->dat);
    free(p->gp);
    p->dat = beside(png, ".dat");
    p->gp = beside(png, ".gp");
    cli_output("--plot's data", p->dat, CLI_FILE_ONLY);
    cli_output("--plot's script", p->gp, CLI_FILE_ONLY);
}

void cli_gp_string(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

void cli_plot(const cli_plot_paths *p, void (*script)(FILE *f, const char *png, const void *arg),
              const void *arg)
{
    FILE *f = cli_out_open(p->gp);
    script(f, p->png, arg);
    cli_out_close(f);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "[%s] gnuplot is not installed: run 'gnuplot %s' where it is "
                        "(tools/setup-deps.sh installs gnuplot-nox)\n",
                tool_name, p->gp);
        return;
    }
    FILE *out = cli_out_open(p->png);
    FILE *gp = popen("gnuplot", "w");
    if (!gp) {
        rk_fail(RK_EIO, "cannot run gnuplot: %s", strerror(errno));
        cli_die();
    }
    script(gp, cli_out_temp(out), arg);
    if (pclose(gp) != 0) {
        rk_fail(RK_EIO, "gnuplot failed on %s", p->gp);
        cli_die();
    }
    cli_out_close(out);
}

_Noreturn void cli_die(void)
{
    abort_outputs();
    fprintf(stderr, "%s: error: %s\n", tool_name, rk_last_error());
    exit(1);
}

_Noreturn void cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    abort_outputs();
    fprintf(stderr, "%s: ", tool_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry '%s --help'\n", tool_name);
    exit(2);
}

void cli_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) {
        rk_fail(RK_ELIMIT, "'%.60s...' is longer than the %zu bytes it may take", buf, len - 1);
        cli_die();
    }
}

void cli_str_add(cli_str *b, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && b->len + (size_t)n + 1 > b->cap) {
        const size_t cap = 2 * (b->len + (size_t)n + 1);
        char *s = realloc(b->s, cap);
        if (!s) {
            va_end(again);
            rk_fail(RK_ENOMEM, "out of memory for %zu bytes of text", cap);
            cli_die();
        }
        b->s = s;
        b->cap = cap;
    }
    if (n >= 0)
        vsnprintf(b->s + b->len, b->cap - b->len, fmt, again);
    va_end(again);
    if (n < 0) {
        rk_fail(RK_EINVAL, "cannot format '%s'", fmt);
        cli_die();
    }
    b->len += (size_t)n;
}

void cli_str_clear(cli_str *b)
{
    b->len = 0;
    if (b->s)
        b->s[0] = '\0';
}

void cli_str_free(cli_str *b)
{
    free(b->s);
    *b = (cli_str){0};
}

/* The paths registered for cli_check_paths. */
enum { MAX_INPUTS = 64, MAX_OUTPUTS = 8 };
static struct {
    const char *path;
    int model;
} inputs[MAX_INPUTS];
static int n_inputs;
static struct {
    const char *flag, *path;
} outputs[MAX_OUTPUTS];
static int n_outputs;

static const char *add_path(const char *path, int model)
{
    if (n_inputs == MAX_INPUTS)
        cli_usage_error("more than %d input paths", MAX_INPUTS);
    inputs[n_inputs].path = path;
    inputs[n_inputs++].model = model;
    return path;
}

const char *cli_input(const char *path) { return add_path(path, 0); }

const char *cli_model_input(const char *dir) { return add_path(dir, 1); }

const char *cli_output(const char *flag, const char *path, int may_stdout)
{
    if (strcmp(path, "-") == 0 && !may_stdout)
        cli_usage_error("%s: '-' (standard output) is not accepted here; give a file", flag);
    int i = 0;
    while (i < n_outputs && strcmp(outputs[i].flag, flag) != 0)
        i++;
    if (i == MAX_OUTPUTS)
        cli_usage_error("more than %d outputs", MAX_OUTPUTS);
    /* An option given again replaces its path: only the last is written. */
    outputs[i].flag = flag;
    outputs[i].path = path;
    n_outputs += i == n_outputs;
    return path;
}

/* A file as cli_check_paths compares it: by device and inode once it
 * exists; by its resolved directory and name before. */
typedef struct {
    const char *path; /* as given, for messages */
    int exists;
    dev_t dev;
    ino_t ino;
    char *name;
} file_id;

static file_id identify(const char *path, const char *shown)
{
    file_id id = {.path = shown};
    struct stat sb;
    if (stat(path, &sb) == 0) {
        id.exists = 1;
        id.dev = sb.st_dev;
        id.ino = sb.st_ino;
        id.name = realpath(path, NULL);
        return id;
    }
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? strdup(".") : strndup(path, slash == path ? 1 : (size_t)(slash - path));
    char *real = dir ? realpath(dir, NULL) : NULL;
    if (real) {
        cli_str name = {0};
        cli_str_add(&name, "%s/%s", strcmp(real, "/") ? real : "", slash ? slash + 1 : path);
        id.name = name.s;
    }
    free(dir);
    free(real);
    return id;
}

static int same_file(const file_id *a, const file_id *b)
{
    if (a->exists && b->exists)
        return a->dev == b->dev && a->ino == b->ino;
    return a->name && b->name && strcmp(a->name, b->name) == 0;
}

typedef struct {
    file_id *id;
    int n, cap;
} file_ids;

static void push_file(file_ids *ids, const char *path)
{
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 64;
        file_id *grown = realloc(ids->id, (size_t)ids->cap * sizeof *grown);
        if (!grown) {
            rk_fail(RK_ENOMEM, "out of memory for the input paths");
            cli_die();
        }
        ids->id = grown;
    }
    cli_str copy = {0};
    cli_str_add(&copy, "%s", path);
    ids->id[ids->n++] = identify(copy.s, copy.s);
}

/* An error exit when PATH is a dangling symlink or a symlink loop; 0 when
 * it is otherwise missing (its reader says so), 1 when it exists. */
static int exists_or_die(const char *path, struct stat *sb)
{
    if (stat(path, sb) == 0)
        return 1;
    const int err = errno;
    if ((err == ENOENT || err == ELOOP) && lstat(path, sb) == 0 && S_ISLNK(sb->st_mode)) {
        rk_fail(RK_EIO, "%s is %s", path, rk_open_error(path, err));
        cli_die();
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* PATH, or the files in it when it is a directory. In a MODEL directory the
 * files the loaders read (*.json, *.safetensors) are inputs given as much as
 * PATH is: a broken link there (a partial download) is named now. */
static void add_input(file_ids *ids, const char *path, int model)
{
    struct stat sb;
    if (!exists_or_die(path, &sb))
        return;
    if (!S_ISDIR(sb.st_mode)) {
        push_file(ids, path);
        return;
    }
    DIR *d = opendir(path);
    if (!d)
        return;
    cli_str file = {0};
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        cli_str_clear(&file);
        cli_str_add(&file, "%s/%s", path, e->d_name);
        if (model && (ends_with(e->d_name, ".json") || ends_with(e->d_name, ".safetensors")))
            exists_or_die(file.s, &sb);
        push_file(ids, file.s);
    }
    cli_str_free(&file);
    closedir(d);
}

/* Every input given so far, as the checks compare them. */
static file_ids input_ids(void)
{
    file_ids in = {0};
    for (int i = 0; i < n_inputs; i++)
        add_input(&in, inputs[i].path, inputs[i].model);
    return in;
}

static void free_ids(file_ids *in)
{
    for (int k = 0; k < in->n; k++) {
        free((char *)in->id[k].path);
        free(in->id[k].name);
    }
    free(in->id);
}

/* The output PATH of FLAG, writable as rk_out_check says and none of IN:
 * its identity. */
static file_id output_id(const file_ids *in, const char *flag, const char *path)
{
    if (rk_out_check(path, NULL) != RK_OK) {
        rk_fail(RK_EIO, "%s: %s", flag, rk_last_error());
        cli_die();
    }
    file_id out = identify(path, path);
    for (int k = 0; k < in->n; k++)
        if (same_file(&out, &in->id[k]))
            cli_usage_error("%s %s is also an input (%s)", flag, path, in->id[k].path);
    return out;
}

void cli_check_paths(const char *model)
{
    if (model)
        cli_model_input(model);
    file_ids in = input_ids();
    file_id out[MAX_OUTPUTS];
    for (int i = 0; i < n_outputs; i++) {
        const char *flag = outputs[i].flag, *path = outputs[i].path;
        out[i] = (file_id){.path = path};
        if (strcmp(path, "-") == 0) {
            for (int k = 0; k < i; k++)
                if (strcmp(outputs[k].path, "-") == 0)
                    cli_usage_error("%s and %s both write to standard output", outputs[k].flag,
                                    flag);
            continue;
        }
        out[i] = output_id(&in, flag, path);
        for (int k = 0; k < i; k++)
            if (same_file(&out[i], &out[k]))
                cli_usage_error("%s %s is the same file as %s %s", flag, path, outputs[k].flag,
                                outputs[k].path);
    }
    free_ids(&in);
    for (int i = 0; i < n_outputs; i++)
        free(out[i].name);
}

void cli_check_output(const char *flag, const char *path)
{
    file_ids in = input_ids();
    file_id out = output_id(&in, flag, path);
    free(out.name);
    free_ids(&in);
}

FILE *cli_out_open(const char *path)
{
    if (strcmp(path, "-") == 0)
        return stdout;
    for (int i = 0; i < MAX_OPEN; i++)
        if (!open_outs[i].f) {
            if (rk_out_open(&open_outs[i], path) != RK_OK)
                cli_die();
            return open_outs[i].f;
        }
    rk_fail(RK_ELIMIT, "more than %d outputs open at once", MAX_OPEN);
    cli_die();
}

static rk_outfile *open_of(FILE *f)
{
    for (int i = 0; i < MAX_OPEN; i++)
        if (open_outs[i].f == f)
            return &open_outs[i];
    rk_fail(RK_EINVAL, "an output closed that was not opened");
    cli_die();
}

void cli_out_close(FILE *f)
{
    if (f == stdout) {
        const int flush_failed = fflush(stdout) != 0;
        if (flush_failed || ferror(stdout)) {
            rk_fail(RK_EIO, "cannot write standard output: %s",
                    flush_failed ? strerror(errno) : "a write failed");
            stdout_reported = 1;
            cli_die();
        }
        return;
    }
    rk_outfile *o = open_of(f);
    cli_str path = {0};
    cli_str_add(&path, "%s", o->path);
    if (rk_out_commit(o) != RK_OK)
        cli_die();
    fprintf(stderr, "wrote %s\n", path.s);
    cli_str_free(&path);
}

static const char *cli_out_temp(FILE *f) { return open_of(f)->temp; }

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
    rk_config cfg;
    cli_model_config(model, &cfg);
    rk_model *plan = plan_or_die(&cfg, ops, lim);
    rk_model_print_plan(plan, stdout);
    free(plan);
    exit(0);
}

void cli_check_plan(const rk_config *cfg, const rk_ops *ops, const rk_limits *lim)
{
    free(plan_or_die(cfg, ops, lim));
}

void cli_model_config(const char *model, rk_config *cfg)
{
    char path[4096];
    cli_fmt(path, sizeof path, "%s/config.json", model);
    if (rk_config_load(path, cfg) != RK_OK)
        cli_die();
}

/* The commit the numbers belong to; "-dirty" marks uncommitted changes. A
 * copy of the tree without its history (a benchmark machine) names it in
 * RANKKV_COMMIT. */
static void cli_git_commit(cli_str *out)
{
    cli_str_clear(out);
    const char *given = getenv("RANKKV_COMMIT");
    if (given && *given) {
        cli_str_add(out, "%s", given);
        return;
    }
    char line[96];
    FILE *p = popen("git -C " RK_SOURCE_DIR " rev-parse --verify -q HEAD 2>/dev/null", "r");
    const int found = p && fgets(line, sizeof line, p) && strspn(line, "0123456789abcdef") == 40;
    if ((p && pclose(p) != 0) || !found) {
        cli_str_add(out, "unknown");
        return;
    }
    cli_str_add(out, "%.40s", line);
    p = popen("git -C " RK_SOURCE_DIR " status --porcelain --untracked-files=no 2>/dev/null", "r");
    if (p) {
        if (fgets(line, sizeof line, p))
            cli_str_add(out, "-dirty");
        pclose(p);
    }
}

/* Named by cli_model_load for the records. */
static char device_name[256] = "unknown";

rk_model *cli_model_load(const char *model, const rk_ops *ops, const rk_limits *lim)
{
    rk_model *m;
    if (rk_model_load(model, ops, lim, &m) != RK_OK)
        cli_die();
    rk_model_device_name(m, device_name, sizeof device_name);
    return m;
}

const char *cli_device(void) { return device_name; }

rk_tokenizer *cli_tokenizer(const char *model, const char *file, int vocab)
{
    char path[4096];
    rk_tokenizer *tok;
    cli_fmt(path, sizeof path, "%s/tokenizer.json", model);
    if (rk_tok_load(file ? file : path, &tok) != RK_OK ||
        (vocab && rk_tok_check_vocab(tok, vocab) != RK_OK))
        cli_die();
    return tok;
}

cJSON *cli_record_new(int argc, char **argv, const char *model, const char *target)
{
    cli_str commit = {0}, command = {0};
    char date[32];
    cli_git_commit(&commit);
    cli_command_line(argc, argv, &command);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON *j = cJSON_CreateObject();
    if (model)
        cJSON_AddStringToObject(j, "model", model);
    cJSON_AddStringToObject(j, "device", device_name);
    cJSON_AddStringToObject(j, "target", target);
    cJSON_AddStringToObject(j, "commit", commit.s);
    cJSON_AddStringToObject(j, "command", command.s);
    cJSON_AddStringToObject(j, "date", date);
    cli_str_free(&commit);
    cli_str_free(&command);
    return j;
}

void cli_print_json_line(cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (!s) {
        rk_fail(RK_ENOMEM, "out of memory for a JSON line");
        cli_die();
    }
    printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

double cli_peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

void cli_write_json(const char *path, const cJSON *j)
{
    char *text = cJSON_Print(j);
    if (!text) {
        rk_fail(RK_ENOMEM, "out of memory for the JSON of %s", path);
        cli_die();
    }
    FILE *f = cli_out_open(path);
    /* A failed write leaves the stream's error set, which the close reports. */
    fputs(text, f);
    fputc('\n', f);
    free(text);
    cli_out_close(f);
}

const char *cli_base_name(const char *path)
{
    static char name[256];
    rk_base_name(path, name, sizeof name);
    return name;
}

void cli_command_line(int argc, char **argv, cli_str *out)
{
    cli_str_clear(out);
    for (int i = 0; i < argc; i++)
        cli_str_add(out, "%s%s", i ? " " : "", argv[i]);
}

rk_status cli_tokenize_file(const rk_tokenizer *tok, const char *path, size_t limit,
                            int32_t **ids, size_t *n)
{
    int fd;
    size_t size, have = 0, done = 0;
    *ids = NULL;
    *n = 0;
    rk_status st = rk_open_regular(path, &fd, &size);
    if (st != RK_OK)
        return st;
    int32_t *all = NULL;
    size_t n_all = 0, n_cap = 0;
    /* BUF holds what is read and not yet tokenized; a piece is copied to
     * PIECE for its line ends to be rewritten. */
    enum { READ_BYTES = 1 << 17 };
    char *buf = malloc(READ_BYTES), *piece = malloc(READ_BYTES + 1);
    size_t cap = READ_BYTES;
    int eof = 0;
    if (!buf || !piece)
        st = rk_fail(RK_ENOMEM, "out of memory reading %s", path);
    while (st == RK_OK && (!limit || n_all < limit) && !(eof && have == 0)) {
        const size_t cut = eof ? have : rk_tok_piece_end(tok, buf, have);
        if (cut < have || eof) {
            memcpy(piece, buf, cut);
            st = rk_tok_encode_append(tok, piece, rk_text_universal_newlines(piece, cut), done,
                                      &all, &n_all, &n_cap);
            memmove(buf, buf + cut, have - cut);
            have -= cut;
            done += cut;
            continue;
        }
        /* No cut yet: a long line without "a b" grows the buffer. */
        if (cap - have < READ_BYTES / 2) {
            char *b = realloc(buf, 2 * cap), *p = realloc(piece, 2 * cap + 1);
            buf = b ? b : buf;
            piece = p ? p : piece;
            if (!b || !p) {
                st = rk_fail(RK_ENOMEM, "out of memory reading %s", path);
                break;
            }
            cap *= 2;
        }
        const ssize_t got = read(fd, buf + have, cap - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            st = rk_fail(RK_EIO, "cannot read %s: %s", path, strerror(errno));
        eof = got == 0;
        have += got > 0 ? (size_t)got : 0;
    }
    close(fd);
    free(buf);
    free(piece);
    if (st != RK_OK) {
        free(all);
        return rk_fail(st, "%s: %s", path, rk_last_error());
    }
    fprintf(stderr, "[tokenize] %s: %zu tokens from %zu of its %zu bytes\n", path, n_all, done,
            size);
    *ids = all;
    *n = n_all;
    return RK_OK;
}

/* Reads up to RK_MAX_LAYERS integers from PATH. */
static int read_budgets(const char *path, int *out)
{
    char *text;
    size_t len;
    if (rk_read_file(path, (size_t)1 << 20, &text, &len) != RK_OK)
        cli_usage_error("--kv-budgets: %s", rk_last_error());
    int n = 0;
    for (char *word = strtok(text, " \t\r\n"); word; word = strtok(NULL, " \t\r\n")) {
        if (n == RK_MAX_LAYERS)
            cli_usage_error("--kv-budgets: %s has more than %d entries", path, RK_MAX_LAYERS);
        char *end;
        errno = 0;
        long v = strtol(word, &end, 10);
        if (errno || *end || v < 0 || v > (1 << 24))
            cli_usage_error("--kv-budgets: entry %d of %s is '%.60s', not a budget", n + 1,
                            path, word);
        out[n++] = (int)v;
    }
    free(text);
    if (n == 0)
        cli_usage_error("--kv-budgets: %s holds no budgets", path);
    return n;
}

void cli_kv_budgets(void *kv, const char *path)
{
    cli_kv *k = kv;
    k->opt.n_budgets = read_budgets(cli_input(path), k->budgets);
}

void cli_kv_memory(void *kv, const char *bytes)
{
    cli_kv *k = kv;
    if (rk_bytes_parse(bytes, &k->memory) != RK_OK)
        cli_usage_error("--kv-memory: %s", rk_last_error());
}

void cli_kv_strategy(void *strategy, const char *name)
{
    if (rk_rank_strategy_parse(name, strategy) != RK_OK)
        cli_usage_error("--rank-strategy: %s", rk_last_error());
}

rk_kv_policy cli_kv_policy(const cli_kv *kv, const char *model, int layers, int max_rows)
{
    rk_kv_policy p;
    rk_kv_options opt = kv->opt;
    opt.max_rows = max_rows;
    /* Set here, not when parsing: tools copy their options around, and the
     * array must be this copy's. */
    opt.budgets = opt.n_budgets ? kv->budgets : NULL;
    if (rk_kv_options_find_profile(&opt, model) != RK_OK)
        cli_die();
    if (rk_kv_policy_make(&opt, layers, &p) != RK_OK)
        cli_usage_error("%s", rk_last_error());
    return p;
}

rk_kv_format cli_kv_format(const cli_kv *kv, const char *name, const rk_ops *ops,
                           const rk_config *cfg)
{
    rk_kv_format f = ops->kv_format;
    if (name && rk_kv_format_parse(name, &f) != RK_OK)
        cli_usage_error("--kv-dtype: %s", rk_last_error());
    /* A group given must fit the model whatever the dtype (rank precision
     * stores int8 and int4 layers under an fp16 --kv-dtype); the refusal
     * names the dtype's rows where they are grouped. */
    const rk_kv_format grouped = rk_kv_format_grouped(f) ? f : RK_KV_INT8;
    if (kv->group && rk_kv_format_check(grouped, cfg->head_dim, kv->group) != RK_OK)
        cli_usage_error("--kv-group: %s", rk_last_error());
    /* The target's refusal of the model's shape itself comes here too: it
     * names --kv-dtype only where the user chose one. */
    if (rk_model_check_kv_format(cfg, ops, f, kv->group, kv->residual) != RK_OK) {
        if (name)
            cli_usage_error("--kv-dtype %s: %s", rk_kv_format_name(f), rk_last_error());
        cli_usage_error("--target %s: %s", ops->name, rk_last_error());
    }
    if (kv->bits_avg &&
        rk_smart_check(kv->bits_avg, cfg->head_dim, rk_kv_group_of(kv->group)) != RK_OK)
        cli_usage_error("%s", rk_last_error());
    return f;
}

/* --kv-precision NAME (NULL: uniform). */
static rk_kv_precision parse_precision(const char *name)
{
    rk_kv_precision p = RK_KV_UNIFORM;
    if (name && rk_kv_precision_parse(name, &p) != RK_OK)
        cli_usage_error("--kv-precision: %s", rk_last_error());
    return p;
}

void cli_kv_precision(const char *name, const char *model, const rk_config *cfg, const rk_ops *ops,
                      rk_limits *lim)
{
    lim->kv_precision = parse_precision(name);
    lim->kv_profile = NULL;
    if (lim->kv_precision == RK_KV_UNIFORM)
        return;
    /* A build without the model's profile is an error of the build, as for
     * --kv rankkv (exit 1); a precision the target cannot store, of the
     * options (exit 2). */
    if (rk_profile_for(model, &lim->kv_profile) != RK_OK) {
        rk_fail(RK_EINVAL, "--kv-precision %s: %s", name, rk_last_error());
        cli_die();
    }
    if (rk_model_check_kv_precision(cfg, ops, lim) != RK_OK)
        cli_usage_error("--kv-precision %s: %s", name, rk_last_error());
}

void cli_kv_cache_json(cJSON *j, const rk_model *m)
{
    const rk_kv_cache *c = &m->cache;
    int grouped = 0;
    for (int l = 0; l < c->layers; l++)
        grouped |= rk_kv_format_grouped(c->format[l]);
    cJSON_AddStringToObject(j, "kv_dtype", rk_kv_format_name(c->dtype));
    if (grouped)
        cJSON_AddNumberToObject(j, "kv_group", c->group);
    if (rk_kv_format_kivi(c->dtype))
        cJSON_AddNumberToObject(j, "kv_residual", c->residual);
    if (c->dtype == RK_KV_SMART)
        cJSON_AddNumberToObject(j, "kv_bits_avg", c->bits_avg);
    cJSON_AddStringToObject(j, "kv_precision", rk_kv_precision_name(m->lim.kv_precision));
    if (m->lim.kv_precision == RK_KV_UNIFORM)
        return;
    cJSON *layers = cJSON_AddArrayToObject(j, "kv_layer_dtypes");
    for (int l = 0; l < c->layers; l++)
        cJSON_AddItemToArray(layers, cJSON_CreateString(rk_kv_format_name(c->format[l])));
}

/* Whether a name of the comma-separated LIST is a format PRED holds of. */
static int list_has_format(const char *list, int (*pred)(rk_kv_format))
{
    for (const char *p = list; p && *p;) {
        const size_t n = strcspn(p, ",");
        char name[32];
        rk_kv_format f;
        if (n < sizeof name) {
            memcpy(name, p, n);
            name[n] = '\0';
            if (rk_kv_format_parse(name, &f) == RK_OK && pred(f))
                return 1;
        }
        p += n + (p[n] == ',');
    }
    return 0;
}

static int is_smart(rk_kv_format f) { return f == RK_KV_SMART; }

void cli_kv_check_dtype_options(const cli_kv *kv)
{
    if (kv->bits_avg && !list_has_format(kv->dtype, is_smart))
        cli_usage_error("--kv-bits-avg sets smartkv's average bits; --kv-dtype %s has no smartkv "
                        "cache",
                        kv->dtype ? kv->dtype : "(the target's own)");
    if (kv->residual && !list_has_format(kv->dtype, rk_kv_format_kivi))
        cli_usage_error("--kv-residual sets a KIVI cache's fp16 rows; --kv-dtype %s has no kivi, "
                        "kivi2 or kivi4 cache",
                        kv->dtype ? kv->dtype : "(the target's own)");
}

void cli_kv_stores(const rk_kv_policy *p, rk_kv_format f)
{
    if (rk_kv_policy_stores(p, f) != RK_OK)
        cli_usage_error("--kv-dtype %s: %s", rk_kv_format_name(f), rk_last_error());
}

void cli_kv_fit(cli_kv *kv, const char *model, const rk_config *cfg, const rk_ops *ops,
                int max_prompt, int max_new)
{
    if (!kv->memory || kv->fit.bytes)
        return;
    if (kv->opt.average || kv->opt.n_budgets)
        cli_usage_error("--kv-memory chooses the budget: give it or --kv-budget(s), not both");
    /* --kv-memory's rule chooses one format for every layer, and rank
     * precision's bytes are bounded by the uniform cache of the format it
     * is given: each would decide the bytes. */
    if (parse_precision(kv->precision) != RK_KV_UNIFORM)
        cli_usage_error("--kv-precision %s: --kv-memory chooses one dtype for every layer; give "
                        "--kv-dtype and a budget with rank precision", kv->precision);
    const int group = rk_kv_group_of(kv->group);
    if (kv->group && rk_kv_format_check(RK_KV_INT8, cfg->head_dim, group) != RK_OK)
        cli_usage_error("--kv-group: %s", rk_last_error());
    /* kv_fit.c counts a cache in rows of one size, which KIVI's residual
     * and groups of positions are not: the rule chooses among the row
     * formats, down to int4. int2, rank precision's step below int4, has
     * about five times int4's error: it is for a few layers, never all of
     * them unless --kv-dtype names it. */
    unsigned formats = 0;
    if (kv->dtype) {
        const rk_kv_format f = cli_kv_format(kv, kv->dtype, ops, cfg);
        if (!rk_kv_format_row(f))
            cli_usage_error("--kv-memory chooses among the row formats (fp32, fp16, int8, int4), "
                            "not %s: give --kv-budget with it", kv->dtype);
        formats = RK_KV_FORMAT_BIT(f);
    } else {
        for (int f = 0; f < RK_KV_N_FORMATS; f++)
            if (rk_kv_format_row((rk_kv_format)f) && f != RK_KV_INT2 &&
                rk_model_check_kv_format(cfg, ops, (rk_kv_format)f, group, 0) == RK_OK)
                formats |= RK_KV_FORMAT_BIT(f);
    }
    rk_kv_options opt = kv->opt;
    if (rk_kv_options_find_profile(&opt, model) != RK_OK)
        cli_die();
    if (rk_kv_fit_memory(cfg, formats, group, &opt, max_prompt, max_new, kv->memory, &kv->fit) !=
        RK_OK)
        cli_usage_error("--kv-memory %zu: %s", kv->memory, rk_last_error());
    kv->dtype = rk_kv_format_name(kv->fit.format);
    kv->opt.average = kv->fit.average;
    fprintf(stderr,
            "%s: --kv-memory %zu: %s KV cache, %s%s%d positions per layer%s, %zu bytes "
            "(%d prompt + %d new tokens)\n",
            tool_name, kv->memory, kv->dtype, kv->opt.method ? kv->opt.method : "full",
            kv->fit.average ? " keeping an average of " : ": ",
            kv->fit.average ? kv->fit.average : max_prompt + max_new,
            kv->fit.whole && kv->fit.average ? " (the whole prompt)" : "", kv->fit.bytes,
            max_prompt, max_new);
}

void cli_kv_fit_json(cJSON *j, const cli_kv *kv)
{
    if (!kv->fit.bytes)
        return;
    cJSON *o = cJSON_AddObjectToObject(j, "kv_memory");
    cJSON_AddNumberToObject(o, "given_bytes", (double)kv->memory);
    cJSON_AddStringToObject(o, "kv_dtype", rk_kv_format_name(kv->fit.format));
    cJSON_AddNumberToObject(o, "kv_budget", kv->fit.average);
    cJSON_AddBoolToObject(o, "whole_prompt", kv->fit.whole);
    cJSON_AddNumberToObject(o, "kv_bytes", (double)kv->fit.bytes);
}

void cli_kv_limits(cli_kv *kv, const char *model, const rk_config *cfg, const rk_ops *ops,
                   rk_limits *lim)
{
    cli_kv_fit(kv, model, cfg, ops, lim->max_prompt, lim->max_new_tokens);
    lim->kv_format = cli_kv_format(kv, kv->dtype, ops, cfg);
    lim->kv_group = kv->group;
    lim->kv_residual = kv->residual;
    lim->kv_bits_avg = kv->bits_avg;
    cli_kv_precision(kv->precision, model, cfg, ops, lim);
    lim->kv = cli_kv_policy(kv, model, cfg->n_layers, lim->max_prompt);
    cli_kv_stores(&lim->kv, lim->kv_format);
    if (rk_limits_prompt_passes(lim))
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
