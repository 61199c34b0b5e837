/* libFuzzer target: a small valid tokenizer (the whole byte alphabet, a few
 * merges, raw and normalized added tokens) is built once; each input is
 * encoded and decoded. Invalid UTF-8 must be refused; ASCII text, which NFC
 * leaves alone, must decode back to itself exactly. The input's bytes are
 * also decoded as a list of ids. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* GPT-2's byte-level alphabet, as in core/tokenizer.c. */
static unsigned byte_char(unsigned b)
{
    if (b <= 32)
        return 256 + b;
    if (b >= 127 && b <= 160)
        return b + 162;
    return b == 173 ? 323 : b;
}

/* Merges as pairs of byte strings; each result becomes the next id. */
static const char *const merges[][2] = {
    {" ", "t"}, {"h", "e"}, {" t", "he"}, {"i", "n"}, {" ", "a"}, {"e", "r"}, {" ", " "},
    {"  ", "  "}, {"o", "n"}, {"\xC3", "\xA9"}, {"a", "a"}, {"aa", "aa"}, {"'", "s"}, {"\n", "\n"},
};

static void put_token(char *out, size_t *o, const char *bytes)
{
    for (const unsigned char *p = (const unsigned char *)bytes; *p; p++)
        *o += (size_t)sprintf(out + *o, "\\u%04x", byte_char(*p));
}

static char *build_json(void)
{
    size_t cap = 1 << 16, o = 0;
    char *s = malloc(cap);
    if (!s)
        abort();
    o += (size_t)sprintf(s + o, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
                                "\"normalizer\":{\"type\":\"NFC\"},"
                                "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
                                "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
                                "\"model\":{\"type\":\"BPE\",\"vocab\":{");
    int id = 0;
    for (unsigned b = 0; b < 256; b++, id++) {
        char one[2] = {(char)b, 0};
        o += (size_t)sprintf(s + o, "%s\"", b ? "," : "");
        if (b == 0)
            o += (size_t)sprintf(s + o, "\\u%04x", byte_char(0));
        else
            put_token(s, &o, one);
        o += (size_t)sprintf(s + o, "\":%d", id);
    }
    size_t n_merges = sizeof merges / sizeof *merges;
    for (size_t i = 0; i < n_merges; i++, id++) {
        char joined[16];
        snprintf(joined, sizeof joined, "%s%s", merges[i][0], merges[i][1]);
        o += (size_t)sprintf(s + o, ",\"");
        put_token(s, &o, joined);
        o += (size_t)sprintf(s + o, "\":%d", id);
    }
    o += (size_t)sprintf(s + o, "},\"merges\":[");
    for (size_t i = 0; i < n_merges; i++) {
        o += (size_t)sprintf(s + o, "%s\"", i ? "," : "");
        put_token(s, &o, merges[i][0]);
        s[o++] = ' ';
        put_token(s, &o, merges[i][1]);
        s[o++] = '"';
    }
    o += (size_t)sprintf(s + o,
                         "]},\"added_tokens\":["
                         "{\"id\":%d,\"content\":\"<|endoftext|>\",\"special\":true,\"normalized\":false},"
                         "{\"id\":%d,\"content\":\"   \",\"special\":false,\"normalized\":true},"
                         "{\"id\":%d,\"content\":\"e\\u0301x\",\"special\":false,\"normalized\":true}]}",
                         id, id + 1, id + 2);
    return s;
}

static rk_tokenizer *the_tokenizer(void)
{
    static rk_tokenizer *tok;
    if (!tok) {
        char *json = build_json();
        if (rk_tok_load_memory(json, strlen(json), &tok) != RK_OK) {
            fprintf(stderr, "fuzz_encode: %s\n", rk_last_error());
            abort();
        }
        free(json);
    }
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const rk_tokenizer *tok = the_tokenizer();
    const char *text = (const char *)data;
    int32_t *ids = NULL;
    size_t n = 0;
    rk_status st = rk_tok_encode(tok, text, size, &ids, &n);
    bool ascii = true;
    for (size_t i = 0; i < size; i++)
        ascii = ascii && data[i] < 0x80;
    if (st != RK_OK) {
        if (st != RK_EINVAL || ascii || ids || n)
            abort();
    } else {
        char *out = NULL;
        size_t len = 0;
        if (rk_tok_decode(tok, ids, n, &out, &len) != RK_OK)
            abort();
        if (ascii && (len != size || memcmp(out, data, size) != 0))
            abort();
        free(out);
        free(ids);
    }

    size_t n_ids = size / sizeof(int32_t);
    int32_t *raw = malloc(n_ids ? n_ids * sizeof *raw : 1);
    if (!raw)
        abort();
    if (n_ids)
        memcpy(raw, data, n_ids * sizeof *raw);
    char *out = NULL;
    size_t len = 0;
    if (rk_tok_decode(tok, raw, n_ids, &out, &len) != RK_OK || out[len] != '\0')
        abort();
    free(out);
    free(raw);
    return 0;
}
