/* libFuzzer target: arbitrary bytes as an earlier calibration run's JSON
 * (rankkv-calibrate --from-json), through the same parsing and checks, then
 * the profile header, written to memory. A refused run must say why; an
 * accepted one must give a header, and the header must read as the
 * generator means it to: printable ASCII, no trigraph or line splice, no
 * comment opened inside a comment, no directive but the include guard's and
 * the include, and name, data and command literals that hold exactly the
 * run's bytes. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kv_policy.h"
#include "profile_codegen.h"
#include "rank_ops.h"

enum { MAX_LITERALS = 16 };

static int is_ident(const char *s)
{
    if (!*s || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              *s == '_'))
            return 0;
    return 1;
}

static int is_octal(char c) { return c >= '0' && c <= '7'; }

/* The literal that starts after the quote at *I, decoded into OUT; *I ends
 * past its closing quote. */
static void read_literal(const char *h, size_t n, size_t *i, char *out)
{
    size_t o = 0;
    while (*i < n && h[*i] != '"') {
        char c = h[(*i)++];
        if (c == '\n')
            __builtin_trap();
        if (c == '\\') {
            if (*i >= n)
                __builtin_trap();
            c = h[(*i)++];
            if (is_octal(c)) {
                int v = c - '0';
                for (int d = 1; d < 3 && *i < n && is_octal(h[*i]); d++)
                    v = v * 8 + (h[(*i)++] - '0');
                c = (char)v;
            } else if (c != '\\' && c != '"' && c != '?') {
                __builtin_trap();
            }
        }
        out[o++] = c;
    }
    if (*i >= n)
        __builtin_trap();
    (*i)++;
    out[o] = '\0';
}

/* H as the preprocessor would read it; the last three string literals must
 * be WANT's. */
static void check_header(const char *h, size_t n, const char *const want[3])
{
    for (size_t i = 0; i < n; i++)
        if ((h[i] != '\n' && (h[i] < 0x20 || h[i] > 0x7e)) ||
            (i + 1 < n && ((h[i] == '?' && h[i + 1] == '?') || (h[i] == '\\' && h[i + 1] == '\n'))))
            __builtin_trap();
    char *lit[MAX_LITERALS];
    int n_lit = 0, directives = 0, line_start = 1;
    for (size_t i = 0; i < n;) {
        const char c = h[i];
        if (c == '/' && i + 1 < n && h[i + 1] == '*') {
            for (i += 2; i + 1 < n && !(h[i] == '*' && h[i + 1] == '/'); i++)
                if (h[i] == '/' && h[i + 1] == '*')
                    __builtin_trap();
            if (i + 1 >= n)
                __builtin_trap();
            i += 2;
            line_start = 0;
        } else if (c == '"') {
            if (n_lit == MAX_LITERALS)
                __builtin_trap();
            lit[n_lit] = malloc(n);
            i++;
            read_literal(h, n, &i, lit[n_lit++]);
            line_start = 0;
        } else if (c == '#') {
            static const char *const allowed[] = {"#ifndef ", "#define ",
                                                  "#include \"profile.h\"\n", "#endif\n"};
            int known = 0;
            for (int a = 0; a < 4; a++)
                known |= strncmp(h + i, allowed[a], strlen(allowed[a])) == 0;
            if (!line_start || !known)
                __builtin_trap();
            directives++;
            i++;
            line_start = 0;
        } else if (c == '\'' || (c == '/' && i + 1 < n && h[i + 1] == '/')) {
            __builtin_trap();
        } else {
            line_start = c == '\n' || (line_start && c == ' ');
            i++;
        }
    }
    if (directives != 4 || n_lit < 3)
        __builtin_trap();
    for (int k = 0; k < 3; k++)
        if (strcmp(lit[n_lit - 3 + k], want[k]) != 0)
            __builtin_trap();
    for (int k = 0; k < n_lit; k++)
        free(lit[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk_calibration_run run;
    rk_fail(RK_OK, "%s", "");
    if (rk_calibration_parse((const char *)data, size, "fuzz.json", &run) != RK_OK) {
        if (rk_last_error()[0] == '\0')
            __builtin_trap();
        return 0;
    }

    /* The header's numbers as rankkv-calibrate makes them: per layer the
     * mean and std over samples of the head mean, per head the mean. */
    const int L = run.id.layers, H = run.id.heads, LH = L * H;
    double mean[RK_MAX_LAYERS] = {0}, std[RK_MAX_LAYERS] = {0}, v[RK_MAX_LAYERS];
    double *head = calloc((size_t)LH, sizeof *head);
    if (!head)
        __builtin_trap();
    for (int s = 0; s < run.samples; s++) {
        rk_erank_layer_means(run.ranks + (size_t)s * LH, L, H, v);
        for (int l = 0; l < L; l++)
            mean[l] += v[l] / run.samples;
        for (int i = 0; i < LH; i++)
            head[i] += run.ranks[(size_t)s * LH + i] / run.samples;
    }
    for (int s = 0; s < run.samples; s++) {
        rk_erank_layer_means(run.ranks + (size_t)s * LH, L, H, v);
        for (int l = 0; l < L; l++)
            std[l] += (v[l] - mean[l]) * (v[l] - mean[l]);
    }
    for (int l = 0; l < L; l++)
        std[l] = run.samples > 1 ? sqrt(std[l] / (run.samples - 1)) : 0;

    /* The model's name as the header's file name: its symbol must be an
     * identifier whatever the name holds. */
    char path[256], symbol[256];
    snprintf(path, sizeof path, "profiles/profile_%s.h", run.id.name);
    rk_codegen_symbol(path, symbol, sizeof symbol);
    if (!is_ident(symbol))
        __builtin_trap();

    const rk_calibration c = {.id = run.id, .samples = run.samples, .seq_len = run.seq_len,
                              .data = run.data, .command = run.command, .rank_mean = mean,
                              .rank_std = std, .head_rank = head, .min_budget = RK_KV_WINDOW};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        __builtin_trap();
    const rk_status st = rk_codegen_profile(&c, symbol, f);
    fclose(f);
    if (st != RK_OK) {
        fprintf(stderr, "a run the parser accepted gives no header: %s\n", rk_last_error());
        __builtin_trap();
    }
    const char *const want[3] = {run.id.name, run.data, run.command};
    check_header(text, len, want);
    free(text);
    free(head);
    free(run.ranks);
    return 0;
}
