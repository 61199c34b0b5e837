/* The tools tokenize text a piece at a time, stopping once they have the
 * tokens they need (tools/cli.c); the ids must be exactly those of
 * tokenizing the whole text at once. Checked on every evaluation text in
 * ../shared with both Pythia tokenizers, and on a synthetic text whose
 * pieces end among runs of spaces, blank lines, CRLF, digits, punctuation and
 * multi-byte characters. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rk_test.h"
#include "textio.h"
#include "tokenizer.h"

#define NANO_TOKENIZER RK_MODELS_DIR "/pythia-nano/tokenizer.json"
#define SHARED_DATA RK_SHARED_DIR "/data"

/* The whole-text ids of PATH, read as cli_tokenize_file reads it. */
static void whole_file(const rk_tokenizer *tok, const char *path, int32_t **ids, size_t *n)
{
    char *text;
    size_t len;
    *ids = NULL;
    *n = 0;
    CHECKF(rk_read_file(path, SIZE_MAX, &text, &len) == RK_OK, "%s", rk_last_error());
    if (!text)
        return;
    len = rk_text_universal_newlines(text, len);
    CHECKF(rk_tok_encode(tok, text, len, ids, n) == RK_OK, "%s", rk_last_error());
    free(text);
}

static int same_prefix(const int32_t *a, const int32_t *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

static void check_file(const rk_tokenizer *tok, const char *path)
{
    int32_t *whole, *pieces;
    size_t n_whole, n_pieces;
    whole_file(tok, path, &whole, &n_whole);
    CHECKF(cli_tokenize_file(tok, path, 0, &pieces, &n_pieces) == RK_OK, "%s", rk_last_error());
    CHECKF(n_pieces == n_whole && same_prefix(whole, pieces, n_whole),
           "%s: %zu ids in pieces, %zu whole", path, n_pieces, n_whole);
    free(pieces);
    /* A limit stops early, with the whole text's first ids. */
    const size_t limit = n_whole / 3 + 1;
    CHECK(cli_tokenize_file(tok, path, limit, &pieces, &n_pieces) == RK_OK);
    CHECKF(n_pieces >= limit && n_pieces <= n_whole && same_prefix(whole, pieces, n_pieces),
           "%s: limit %zu gave %zu ids", path, limit, n_pieces);
    free(pieces);
    free(whole);
}

/* Text built to put piece ends in awkward places. */
static char *synthetic(size_t *len)
{
    static const char *const bits[] = {
        "word", " ", "  ", "    ", "\n", "\n\n", "\r\n", "\r", "\t", "123", " 45", "'s", "'ll",
        "...", "!?", " -", "é", " naïve", "日本語", " 😀", "<|endoftext|>", "a b", "x  y",
    };
    const size_t n_bits = sizeof bits / sizeof bits[0], cap = (size_t)1 << 20;
    char *s = malloc(cap + 64);
    uint64_t r = 88172645463325252ull;
    size_t o = 0;
    while (s && o < cap) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        const char *b = bits[r % n_bits];
        memcpy(s + o, b, strlen(b));
        o += strlen(b);
    }
    *len = o;
    return s;
}

static void check_text(const rk_tokenizer *tok)
{
    size_t len, n_whole, n_pieces;
    char *text = synthetic(&len);
    int32_t *whole, *pieces;
    CHECK(text && rk_tok_encode(tok, text, len, &whole, &n_whole) == RK_OK);
    CHECK(rk_tok_encode_prefix(tok, text, len, 0, &pieces, &n_pieces) == RK_OK);
    CHECKF(n_pieces == n_whole && same_prefix(whole, pieces, n_whole),
           "synthetic text: %zu ids in pieces, %zu whole", n_pieces, n_whole);
    free(pieces);
    CHECK(rk_tok_encode_prefix(tok, text, len, 10, &pieces, &n_pieces) == RK_OK);
    CHECK(n_pieces >= 10 && same_prefix(whole, pieces, n_pieces));
    free(pieces);
    free(whole);
    free(text);
}

/* A tokenizer whose pieces would not join up (a prefix space added to each)
 * is taken whole. */
static void check_uncuttable(void)
{
    char *json, *at;
    size_t len;
    rk_tokenizer *tok;
    CHECK(rk_read_file(NANO_TOKENIZER, SIZE_MAX, &json, &len) == RK_OK);
    CHECK(rk_tok_load(NANO_TOKENIZER, &tok) == RK_OK && rk_tok_splits_at_spaces(tok));
    rk_tok_free(tok);
    at = json ? strstr(json, "\"add_prefix_space\": false") : NULL;
    CHECK(at != NULL);
    if (!at)
        return;
    memcpy(strchr(at, ':') + 2, "true ", 5);
    CHECKF(rk_tok_load_memory(json, len, &tok) == RK_OK, "%s", rk_last_error());
    CHECK(!rk_tok_splits_at_spaces(tok));
    check_text(tok);
    rk_tok_free(tok);
    free(json);
}

int main(void)
{
    rk_tokenizer *nano;
    CHECKF(rk_tok_load(NANO_TOKENIZER, &nano) == RK_OK, "%s", rk_last_error());
    check_text(nano);
    rk_tok_free(nano);
    check_uncuttable();
    if (access(SHARED_DATA "/wikitext-2/wiki.test.raw", R_OK) != 0) {
        printf("SKIP: the texts in %s are absent; checked the synthetic text only\n", SHARED_DATA);
        return rk_test_finish("test_tokenize_pieces");
    }
    static const char *const tokenizers[] = {NANO_TOKENIZER,
                                             SHARED_DATA "/tokenizers/pythia-20b-tokenizer.json"};
    static const char *const texts[] = {
        "/wikitext-2/wiki.test.raw",     "/wikitext-2/wiki.valid.tokens",
        "/pg-eval/dracula.txt",          "/pg-eval/heart_of_darkness.txt",
        "/pg-eval/jane_eyre.txt",        "/pg-eval/moby_dick.txt",
        "/pg-eval/pride_and_prejudice.txt", "/pg-eval/scarlet_letter.txt",
        "/pg-eval/tale_of_two_cities.txt", "/pg-eval/time_machine.txt",
        "/pg-eval/treasure_island.txt",  "/pg-eval/wuthering_heights.txt",
    };
    for (size_t t = 0; t < sizeof tokenizers / sizeof tokenizers[0]; t++) {
        rk_tokenizer *tok;
        if (access(tokenizers[t], R_OK) != 0) {
            printf("SKIP: %s is absent\n", tokenizers[t]);
            continue;
        }
        const rk_status st = rk_tok_load(tokenizers[t], &tok);
        CHECKF(st == RK_OK, "%s", rk_last_error());
        if (st != RK_OK)
            continue;
        check_text(tok);
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            char path[512];
            snprintf(path, sizeof path, "%s%s", SHARED_DATA, texts[i]);
            if (access(path, R_OK) == 0)
                check_file(tok, path);
        }
        rk_tok_free(tok);
    }
    return rk_test_finish("test_tokenize_pieces");
}
