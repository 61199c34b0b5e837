#include "profile_codegen.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "rank_budget.h"

/* ASCII only, whatever the locale: a header's identifiers must be C's. */
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_ident_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_identifier(const char *s)
{
    if (!*s || is_digit(*s))
        return 0;
    for (; *s; s++)
        if (!is_ident_char(*s))
            return 0;
    return 1;
}

void rk_codegen_symbol(const char *path, char *buf, size_t len)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "profile_", 8) == 0)
        base += 8;
    const char *dot = strrchr(base, '.');
    size_t stem = dot ? (size_t)(dot - base) : strlen(base);
    size_t o = (size_t)snprintf(buf, len, "rk_profile_");
    if (stem > 0 && is_digit(base[0]) && o + 1 < len)
        buf[o++] = '_';
    for (size_t i = 0; i < stem && o + 1 < len; i++)
        buf[o++] = is_ident_char(base[i]) ? base[i] : '_';
    buf[o < len ? o : len - 1] = '\0';
}

/* Doubles to 17 significant digits, so the header holds exactly what was
 * measured. */
static void write_doubles(FILE *f, const char *sym, const char *field, const double *v, int n,
                          int per_line)
{
    fprintf(f, "static const double %s_%s[%d] = {", sym, field, n);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.17g", i % per_line ? ", " : (i ? ",\n    " : "\n    "), v[i]);
    fprintf(f, "\n};\n_Static_assert(sizeof %s_%s / sizeof %s_%s[0] == %d, \"%s: %d entries\");\n\n",
            sym, field, sym, field, n, field, n);
}

/* S as a C string literal that holds exactly its bytes: quote and
 * backslash escaped, every '?' as \? so that no trigraph (live in C11) can
 * form, and every byte outside printable ASCII as a three-digit octal
 * escape, which cannot run into the character after it. */
static void write_c_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\' || *p == '?')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p > 0x7e)
            fprintf(f, "\\%03o", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* S inside the header's comment: printable ASCII as is, but a backslash
 * goes between '*' and '/' (either order) and between two '?', so nothing
 * in S can end the comment, open a nested one or form a trigraph, and every
 * other byte (newline, control, UTF-8, and a backslash of S, which could
 * end a line) is written \xHH, so S stays on its line. The template around
 * S has no '*', '/' or '?' next to it. */
static void write_comment_text(FILE *f, const char *s)
{
    unsigned char last = ' ';
    for (const unsigned char *p = (const unsigned char *)s; *p; last = *p++) {
        if (*p < 0x20 || *p > 0x7e || *p == '\\') {
            fprintf(f, "\\x%02x", *p);
            continue;
        }
        if ((*p == '/' && last == '*') || (*p == '*' && last == '/') ||
            (*p == '?' && last == '?'))
            fputc('\\', f);
        fputc(*p, f);
    }
}

rk_status rk_codegen_profile(const rk_calibration *c, const char *sym, FILE *f)
{
    static const int averages[RK_PROFILE_N_AVERAGES] = RK_PROFILE_AVERAGES;
    const int L = c->id.layers, H = c->id.heads;
    if (!is_identifier(sym))
        return rk_fail(RK_EINVAL, "the profile's symbol must be a C identifier ([A-Za-z0-9_], "
                                  "not starting with a digit)");
    if (L < 1 || L > RK_MAX_LAYERS || H < 1)
        return rk_fail(RK_EINVAL, "a profile of %d layers x %d heads (1..%d layers, >= 1 head)",
                       L, H, RK_MAX_LAYERS);
    /* Anything but finite numbers would print as inf or nan, which C reads
     * as identifiers; the mean ranks are checked by the strategy code. */
    for (int l = 0; l < L; l++)
        if (!(c->rank_std[l] >= 0 && isfinite(c->rank_std[l])))
            return rk_fail(RK_EINVAL, "rank std of layer %d is %g; expected a finite number >= 0",
                           l, c->rank_std[l]);
    for (int i = 0; i < L * H; i++)
        if (!(c->head_rank[i] >= 0 && isfinite(c->head_rank[i])))
            return rk_fail(RK_EINVAL,
                           "rank of layer %d head %d is %g; expected a finite number >= 0", i / H,
                           i % H, c->head_rank[i]);
    int table[RK_RANK_N_STRATEGIES][RK_PROFILE_N_AVERAGES][RK_MAX_LAYERS];
    for (int s = 0; s < RK_RANK_N_STRATEGIES; s++)
        for (int a = 0; a < RK_PROFILE_N_AVERAGES; a++) {
            const rk_rank_allocation alloc = {.strategy = (rk_rank_strategy)s};
            rk_status st = rk_budget_from_ranks(&alloc, c->rank_mean, L, averages[a],
                                                c->min_budget, table[s][a]);
            if (st != RK_OK)
                return st;
        }

    char guard[160];
    size_t g = 0;
    for (const char *p = sym; *p && g + 4 < sizeof guard; p++)
        guard[g++] = (char)toupper((unsigned char)*p);
    snprintf(guard + g, sizeof guard - g, "_H");

    fputs("/* RankKV profile of ", f);
    write_comment_text(f, c->id.name);
    fputs(", generated by rankkv-calibrate (codegen/profile_codegen.c).\n"
          " * Do not edit: regenerate with the command below.\n"
          " *   ",
          f);
    write_comment_text(f, c->command);
    fprintf(f, "\n * Effective ranks of each head's causal attention over %d samples of %d tokens\n"
               " * of ",
            c->samples, c->seq_len);
    write_comment_text(f, c->data);
    fprintf(f, "; budget tables for averages 128/256/512/1024 x every strategy\n"
               " * (minimum budget %d), made by core/rank_budget.c. */\n",
            c->min_budget);
    fprintf(f, "#ifndef %s\n#define %s\n\n#include \"profile.h\"\n\n", guard, guard);
    write_doubles(f, sym, "rank_mean", c->rank_mean, L, 4);
    write_doubles(f, sym, "rank_std", c->rank_std, L, 4);
    write_doubles(f, sym, "head_rank", c->head_rank, L * H, H < 8 ? H : 8);

    fprintf(f, "/* [strategy: " RK_RANK_STRATEGIES "][average][layer] */\n");
    fprintf(f, "static const int %s_budgets[%d][%d][%d] = {\n", sym, RK_RANK_N_STRATEGIES,
            RK_PROFILE_N_AVERAGES, L);
    for (int s = 0; s < RK_RANK_N_STRATEGIES; s++) {
        fprintf(f, "    { /* %s */\n", rk_rank_strategy_name((rk_rank_strategy)s));
        for (int a = 0; a < RK_PROFILE_N_AVERAGES; a++) {
            fprintf(f, "        {");
            for (int l = 0; l < L; l++)
                fprintf(f, "%s%d", l ? ", " : "", table[s][a][l]);
            fprintf(f, "}, /* %d */\n", averages[a]);
        }
        fprintf(f, "    },\n");
    }
    fprintf(f, "};\n");
    fprintf(f, "_Static_assert(sizeof %s_budgets == sizeof(int) * %d * %d * %d,\n"
               "               \"budgets: strategies x averages x layers\");\n",
            sym, RK_RANK_N_STRATEGIES, RK_PROFILE_N_AVERAGES, L);
    fprintf(f, "_Static_assert(RK_RANK_N_STRATEGIES == %d && RK_PROFILE_N_AVERAGES == %d,\n"
               "               \"profile generated for another set of strategies or averages; "
               "regenerate it\");\n\n",
            RK_RANK_N_STRATEGIES, RK_PROFILE_N_AVERAGES);

    fprintf(f, "static const rk_profile %s = {\n    .name = ", sym);
    write_c_string(f, c->id.name);
    fprintf(f, ",\n    .layers = %d,\n    .heads = %d,\n    .hidden = %d,\n", L, H, c->id.hidden);
    fprintf(f, "    .identity = 0x%016llxull,\n", (unsigned long long)c->id.hash);
    fprintf(f, "    .samples = %d,\n    .seq_len = %d,\n    .data = ", c->samples, c->seq_len);
    write_c_string(f, c->data);
    fprintf(f, ",\n    .command = ");
    write_c_string(f, c->command);
    fprintf(f, ",\n    .rank_mean = %s_rank_mean,\n    .rank_std = %s_rank_std,\n"
               "    .head_rank = %s_head_rank,\n    .min_budget = %d,\n"
               "    .budgets = &%s_budgets[0][0][0],\n};\n\n#endif\n",
            sym, sym, sym, c->min_budget, sym);
    return ferror(f) ? rk_fail(RK_EIO, "cannot write the profile header") : RK_OK;
}

/* KEY of J as an integer in [LO, HI]. */
static rk_status json_count(const cJSON *j, const char *key, int lo, int hi, const char *path,
                            int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v))
        return rk_fail(RK_EFORMAT, "%s: \"%s\" is missing or not a number; expected an integer "
                                   "in [%d, %d]",
                       path, key, lo, hi);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi) || v->valuedouble != floor(v->valuedouble))
        return rk_fail(RK_EFORMAT, "%s: \"%s\" is %g; expected an integer in [%d, %d]", path, key,
                       v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return RK_OK;
}

/* KEY of J, a string, into BUF of SIZE bytes. */
static rk_status json_text(const cJSON *j, const char *key, char *buf, size_t size,
                           const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v))
        return rk_fail(RK_EFORMAT, "%s: \"%s\" is missing or not a string", path, key);
    const size_t n = strlen(v->valuestring);
    if (n >= size)
        return rk_fail(RK_EFORMAT, "%s: \"%s\" is %zu bytes; at most %zu fit", path, key, n,
                       size - 1);
    memcpy(buf, v->valuestring, n + 1);
    return RK_OK;
}

/* A (KEY, for messages) must be an array of N entries, N being N_IS. */
static rk_status json_length(const cJSON *a, const char *key, int n, const char *n_is,
                             const char *path)
{
    if (!cJSON_IsArray(a))
        return rk_fail(RK_EFORMAT, "%s: %s is missing or not an array", path, key);
    const int got = cJSON_GetArraySize(a);
    if (got != n)
        return rk_fail(RK_EFORMAT, "%s: %s has %d entries; %s is %d", path, key, got, n_is, n);
    return RK_OK;
}

/* The numbers of A (KEY, for messages), each in [LO, HI] (RANGE says
 * that), into OUT unless it is NULL. With HEADS, entry i is layer
 * i / HEADS, head i % HEADS. */
static rk_status json_numbers(const cJSON *a, const char *key, int heads, double lo, double hi,
                              const char *range, const char *path, double *out)
{
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a)
    {
        char where[48] = "";
        if (heads)
            snprintf(where, sizeof where, " (layer %d, head %d)", i / heads, i % heads);
        if (!cJSON_IsNumber(v))
            return rk_fail(RK_EFORMAT, "%s: %s[%d]%s is not a number; expected %s", path, key, i,
                           where, range);
        if (!(v->valuedouble >= lo && v->valuedouble <= hi))
            return rk_fail(RK_EFORMAT, "%s: %s[%d]%s is %g; expected %s", path, key, i, where,
                           v->valuedouble, range);
        if (out)
            out[i] = v->valuedouble;
        i++;
    }
    return RK_OK;
}

static rk_status parse_run(const cJSON *j, const char *path, rk_calibration_run *run)
{
    if (!cJSON_IsObject(j))
        return rk_fail(RK_EFORMAT, "%s: expected a JSON object (a rankkv-calibrate --json run)",
                       path);
    rk_identity *id = &run->id;
    rk_status st;
    if ((st = json_text(j, "model", id->name, sizeof id->name, path)) != RK_OK ||
        (st = json_count(j, "layers", 1, RK_MAX_LAYERS, path, &id->layers)) != RK_OK ||
        (st = json_count(j, "heads", 1, RK_CALIBRATION_MAX_HIDDEN, path, &id->heads)) != RK_OK ||
        (st = json_count(j, "hidden", 1, RK_CALIBRATION_MAX_HIDDEN, path, &id->hidden)) != RK_OK ||
        (st = json_count(j, "samples", 1, RK_CALIBRATION_MAX_SAMPLES, path, &run->samples)) !=
            RK_OK ||
        (st = json_count(j, "seq_len", 2, RK_CALIBRATION_MAX_SEQ_LEN, path, &run->seq_len)) !=
            RK_OK ||
        (st = json_text(j, "data", run->data, sizeof run->data, path)) != RK_OK ||
        (st = json_text(j, "command", run->command, sizeof run->command, path)) != RK_OK)
        return st;
    if (id->hidden % id->heads != 0)
        return rk_fail(RK_EFORMAT, "%s: \"hidden\" %d is not a multiple of \"heads\" %d", path,
                       id->hidden, id->heads);
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(j, "identity");
    if (!cJSON_IsString(hash) || strlen(hash->valuestring) != 16 ||
        strspn(hash->valuestring, "0123456789abcdefABCDEF") != 16)
        return rk_fail(RK_EFORMAT, "%s: \"identity\" is missing or not 16 hex digits", path);
    id->hash = strtoull(hash->valuestring, NULL, 16);

    const int L = id->layers, LH = id->layers * id->heads;
    const double seq_len = run->seq_len;
    char rank_range[64], std_range[64];
    snprintf(rank_range, sizeof rank_range, "a number in [1, seq_len %d]", run->seq_len);
    snprintf(std_range, sizeof std_range, "a number in [0, seq_len %d]", run->seq_len);
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(j, "layer_rank_mean");
    const cJSON *std = cJSON_GetObjectItemCaseSensitive(j, "layer_rank_std");
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(j, "sample_layer_head_ranks");
    if ((st = json_length(mean, "\"layer_rank_mean\"", L, "\"layers\"", path)) != RK_OK ||
        (st = json_numbers(mean, "\"layer_rank_mean\"", 0, 1, seq_len, rank_range, path, NULL)) !=
            RK_OK ||
        (st = json_length(std, "\"layer_rank_std\"", L, "\"layers\"", path)) != RK_OK ||
        (st = json_numbers(std, "\"layer_rank_std\"", 0, 0, seq_len, std_range, path, NULL)) !=
            RK_OK ||
        (st = json_length(per, "\"sample_layer_head_ranks\"", run->samples, "\"samples\"",
                          path)) != RK_OK)
        return st;
    /* Every row's length before the allocation, so that its size is what
     * the file holds. */
    char key[64];
    int s = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, per)
    {
        snprintf(key, sizeof key, "\"sample_layer_head_ranks\"[%d]", s++);
        if ((st = json_length(row, key, LH, "\"layers\" x \"heads\"", path)) != RK_OK)
            return st;
    }
    run->ranks = malloc((size_t)run->samples * (size_t)LH * sizeof(double));
    if (!run->ranks)
        return rk_fail(RK_ENOMEM, "%s: out of memory for %d samples of %d ranks", path,
                       run->samples, LH);
    s = 0;
    cJSON_ArrayForEach(row, per)
    {
        snprintf(key, sizeof key, "\"sample_layer_head_ranks\"[%d]", s);
        if ((st = json_numbers(row, key, id->heads, 1, seq_len, rank_range, path,
                               run->ranks + (size_t)s * LH)) != RK_OK)
            return st;
        s++;
    }
    return RK_OK;
}

rk_status rk_calibration_parse(const char *text, size_t len, const char *path,
                               rk_calibration_run *run)
{
    memset(run, 0, sizeof *run);
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!j)
        return rk_fail(RK_EFORMAT, "%s is not JSON", path);
    const rk_status st = parse_run(j, path, run);
    cJSON_Delete(j);
    if (st != RK_OK) {
        free(run->ranks);
        run->ranks = NULL;
    }
    return st;
}
