/* Tokenizer tests. Part (a) needs only the committed pythia-nano fixture and
 * inline tokenizer.json strings; part (b) replays the HF goldens from
 * ../shared and is skipped, saying so, when that folder is absent. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "rk_test.h"
#include "textio.h"
#include "tokenizer.h"

#define FIXTURE RK_MODELS_DIR "/pythia-nano/tokenizer.json"

/* Encodes TEXT and checks that decoding gives EXPECT back. */
static void check_round_trip(const rk_tokenizer *tok, const char *text, size_t len, const char *expect,
                             size_t expect_len)
{
    int32_t *ids = NULL;
    size_t n = 0;
    rk_status st = rk_tok_encode(tok, text, len, &ids, &n);
    CHECKF(st == RK_OK, "encode \"%s\": %s", text, rk_last_error());
    CHECK(ids != NULL);
    CHECK(len == 0 || n > 0);
    char *out = NULL;
    size_t out_len = 0;
    st = rk_tok_decode(tok, ids, n, &out, &out_len);
    CHECKF(st == RK_OK, "decode: %s", rk_last_error());
    CHECKF(out && out_len == expect_len && memcmp(out, expect, expect_len) == 0 && out[out_len] == '\0',
           "round trip of \"%s\" gave \"%s\"", text, out ? out : "(null)");
    free(ids);
    free(out);
}

static void test_fixture_round_trips(const rk_tokenizer *tok)
{
    static const char *const texts[] = {
        "Hello world",
        " Hello  world  ",
        "naïve café — “quotes”",
        "日本語のテキスト",
        "emoji 🙂👍🏽 and ∑∫√",
        "tabs\tand\nnewlines\n\n\n",
        "    indented code:\n        return x",
        "don't won't it's I'm we'll",
        "text<|endoftext|>more<|padding|><|endoftext|>",
        "",
        "\xC2\xA0nbsp\xE2\x80\xA8line sep\xE1\xA0\x8Emongolian",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        check_round_trip(tok, texts[i], strlen(texts[i]), texts[i], strlen(texts[i]));

    /* Embedded NUL bytes are text like any other. */
    check_round_trip(tok, "a\0b", 3, "a\0b", 3);
    /* NFC: e + combining acute comes back precomposed. */
    check_round_trip(tok, "cafe\xCC\x81", 6, "caf\xC3\xA9", 5);

    CHECK(rk_tok_vocab_size(tok) == 8192);
    CHECK(rk_tok_special_id(tok, "<|endoftext|>") == 0);
    CHECK(rk_tok_special_id(tok, "<|padding|>") == 1);
    CHECK(rk_tok_special_id(tok, "Hello") == -1);

    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(rk_tok_encode(tok, "<|endoftext|>", 13, &ids, &n) == RK_OK);
    CHECK(n == 1 && ids[0] == 0);
    free(ids);

    /* A space is one token whose raw bytes are a plain space. */
    CHECK(rk_tok_encode(tok, " ", 1, &ids, &n) == RK_OK);
    CHECK(n == 1);
    const char *bytes = NULL;
    if (n == 1)
        CHECK(rk_tok_token_bytes(tok, ids[0], &bytes) == 1 && bytes[0] == ' ');
    free(ids);
    CHECK(rk_tok_token_bytes(tok, -1, &bytes) == 0);
    CHECK(rk_tok_token_bytes(tok, 1 << 30, &bytes) == 0);

    /* A lone UTF-8 lead byte decodes to U+FFFD; unknown ids are skipped. */
    int32_t lead = -1;
    for (int32_t id = 0; id < rk_tok_vocab_size(tok); id++)
        if (rk_tok_token_bytes(tok, id, &bytes) == 1 && (unsigned char)bytes[0] == 0xC3)
            lead = id;
    CHECK(lead >= 0);
    int32_t seq[] = {lead, -5, 1 << 28, lead};
    char *text = NULL;
    size_t len = 0;
    CHECK(rk_tok_decode(tok, seq, 4, &text, &len) == RK_OK);
    CHECKF(text && len == 6 && memcmp(text, "\xEF\xBF\xBD\xEF\xBF\xBD", 6) == 0, "lossy decode gave %s",
           text ? text : "(null)");
    free(text);
    CHECK(rk_tok_decode(tok, NULL, 0, &text, &len) == RK_OK);
    CHECK(text && len == 0 && text[0] == '\0');
    free(text);
}

static void test_invalid_utf8(const rk_tokenizer *tok)
{
    static const char *const bad[] = {
        "\xFF", "abc\xC3", "\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "ok \x80 no",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int32_t *ids = (int32_t *)&ids;
        size_t n = 99;
        rk_fail(RK_OK, "%s", "");
        rk_status st = rk_tok_encode(tok, bad[i], strlen(bad[i]), &ids, &n);
        CHECKF(st == RK_EINVAL, "invalid UTF-8 case %zu gave status %s", i, rk_status_name(st));
        CHECK(rk_last_error()[0] != '\0');
        CHECK(ids == NULL && n == 0);
    }
}

/* Cases where a straightforward implementation parts from HF, with the ids
 * and text HF tokenizers 0.23 gives for the fixture tokenizer. */
static void test_hf_quirks(const rk_tokenizer *tok)
{
    static const struct {
        const char *text, *decoded;
        int32_t ids[16];
        size_t n;
    } cases[] = {
        /* NBSP is whitespace to HF's regex; U+180E is not (PCRE2's \s says it is). */
        {"a\xC2\xA0\xC2\xA0" "b \xE1\xA0\x8E\xE1\xA0\x8Ex", "a\xC2\xA0\xC2\xA0" "b \xE1\xA0\x8E\xE1\xA0\x8Ex",
         {66, 1604, 1604, 67, 222, 159, 256, 238, 159, 256, 238, 89}, 12},
        /* U+0085 and U+3000 are whitespace. */
        {"x\xC2\x85\xC2\x85y\xE3\x80\x80 z", "x\xC2\x85\xC2\x85y\xE3\x80\x80 z",
         {89, 128, 229, 128, 229, 90, 161, 224, 224, 6923}, 10},
        /* Letters new in Unicode 15/16 (CJK Ext. H, Egyptian Ext. A) are letters. */
        {"\xF0\xB2\x8A\xA2'll \xF0\x93\xB8\x94ll", "\xF0\xB2\x8A\xA2'll \xF0\x93\xB8\x94ll",
         {174, 112, 234, 97, 2352, 222, 174, 243, 118, 244, 291}, 11},
        /* HF's NFC has Unicode 9 data: U+07FD is a starter that blocks a + U+0301. */
        {"a\xDF\xBD\xCC\x81 a\xCC\x81\xDF\xBD", "a\xDF\xBD\xCC\x81 \xC3\xA1\xDF\xBD",
         {66, 157, 123, 138, 225, 222, 1386, 157, 123}, 9},
        /* Singleton decomposition U+2000 -> U+2002, and composition. */
        {"\xE2\x80\x80x e\xCC\x81", "\xE2\x80\x82x \xC3\xA9", {296, 226, 89, 222, 1044}, 5},
        /* A Dives Akuru pair that utf8proc composes and HF leaves apart. */
        {"\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0", "\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0",
         {174, 241, 99, 115, 174, 241, 99, 110}, 8},
        {"A  \t\n  B\r\n", "A  \t\n  B\r\n", {34, 295, 199, 458, 402, 203, 200}, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(rk_tok_encode(tok, cases[i].text, strlen(cases[i].text), &ids, &n) == RK_OK);
        bool same = n == cases[i].n;
        for (size_t k = 0; same && k < n; k++)
            same = ids[k] == cases[i].ids[k];
        CHECKF(same, "quirk case %zu: ids differ from HF", i);
        char *out = NULL;
        size_t len = 0;
        CHECK(rk_tok_decode(tok, ids, n, &out, &len) == RK_OK);
        CHECKF(out && strcmp(out, cases[i].decoded) == 0, "quirk case %zu: decoded text differs", i);
        free(out);
        free(ids);
    }
}

/* A small valid tokenizer.json with one piece replaceable by each case. */
static char *make_json(const char *added, const char *normalizer, const char *pre,
                       const char *decoder, const char *model)
{
    static const char fmt[] =
        "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[%s],"
        "\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":null,\"decoder\":%s,"
        "\"model\":%s}";
    size_t n = sizeof fmt + strlen(added) + strlen(normalizer) + strlen(pre) + strlen(decoder) +
               strlen(model);
    char *s = malloc(n);
    if (s)
        snprintf(s, n, fmt, added, normalizer, pre, decoder, model);
    return s;
}

#define ADDED "{\"id\":6,\"content\":\"<|end|>\",\"special\":true,\"normalized\":false}"
#define ADDED_MORE                                                   \
    ADDED ",{\"id\":7,\"content\":\"e\\u0301x\",\"normalized\":true}," \
          "{\"id\":8,\"content\":\"<|end|>x\",\"special\":true,\"normalized\":false}"
#define NORM "{\"type\":\"NFC\"}"
#define PRE "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true}"
#define DEC "{\"type\":\"ByteLevel\"}"
#define VOCAB "{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120\":3,\"\\u0120ab\":4,\"c\":5}"
#define MODEL_WITH(type, vocab, merges) \
    "{\"type\":" type ",\"vocab\":" vocab ",\"merges\":" merges "}"
#define MODEL MODEL_WITH("\"BPE\"", VOCAB, "[\"a b\",\"\\u0120 ab\"]")

static int32_t *encode_small(const rk_tokenizer *tok, const char *text, size_t *n)
{
    int32_t *ids = NULL;
    *n = 0;
    CHECKF(rk_tok_encode(tok, text, strlen(text), &ids, n) == RK_OK, "%s", rk_last_error());
    return ids;
}

static void test_small_tokenizer(void)
{
    char *json = make_json(ADDED_MORE, NORM, PRE, DEC, MODEL);
    rk_tokenizer *tok = NULL;
    rk_status st = rk_tok_load_memory(json, strlen(json), &tok);
    CHECKF(st == RK_OK, "small tokenizer: %s", rk_last_error());
    free(json);
    if (st != RK_OK)
        return;
    size_t n = 0;
    int32_t *ids = encode_small(tok, "ab ab<|end|>c", &n);
    CHECKF(n == 4 && ids[0] == 2 && ids[1] == 4 && ids[2] == 6 && ids[3] == 5, "got %zu ids", n);
    free(ids);
    /* Bytes with no vocab entry and no unk_token vanish, as in HF. */
    ids = encode_small(tok, "axb", &n);
    CHECK(n == 1 && ids[0] == 2);
    free(ids);
    /* The longest added token at the leftmost position wins. */
    ids = encode_small(tok, "<|end|>x<|end|>", &n);
    CHECK(n == 2 && ids[0] == 8 && ids[1] == 6);
    free(ids);
    /* A normalized added token matches the NFC text, decomposed or not, and
     * decodes as HF does: its NFC form through the byte alphabet, where
     * U+00E9 stands for the lone byte 0xE9. */
    ids = encode_small(tok, "e\xCC\x81x\xC3\xA9x", &n);
    CHECK(n == 2 && ids[0] == 7 && ids[1] == 7);
    char *text = NULL;
    size_t len = 0;
    CHECK(rk_tok_decode(tok, ids, 1, &text, &len) == RK_OK);
    CHECKF(text && strcmp(text, "\xEF\xBF\xBDx") == 0, "decoded %s", text ? text : "(null)");
    free(text);
    free(ids);
    CHECK(rk_tok_special_id(tok, "e\xCC\x81x") == 7);
    CHECK(rk_tok_special_id(tok, "\xC3\xA9x") == -1);
    CHECK(rk_tok_vocab_size(tok) == 9);
    rk_tok_free(tok);

    /* List-form merges load too. */
    json = make_json("", "null", PRE, DEC, MODEL_WITH("\"BPE\"", VOCAB, "[[\"a\",\"b\"],[\"\\u0120\",\"ab\"]]"));
    CHECKF(rk_tok_load_memory(json, strlen(json), &tok) == RK_OK, "list merges: %s", rk_last_error());
    free(json);
    rk_tok_free(tok);
}

static void expect_rejected(const char *what, const char *json, size_t len)
{
    rk_tokenizer *tok = (rk_tokenizer *)&tok;
    rk_fail(RK_OK, "%s", "");
    rk_status st = rk_tok_load_memory(json, len, &tok);
    CHECKF(st != RK_OK, "%s was accepted", what);
    CHECKF(rk_last_error()[0] != '\0', "%s: no message", what);
    CHECK(tok == NULL);
    if (st == RK_OK)
        rk_tok_free(tok);
}

static void test_malformed(void)
{
    static const char *const raw[] = {
        "", "{", "[]", "null", "{\"model\":", "{} trailing", "{}",
    };
    for (size_t i = 0; i < sizeof raw / sizeof *raw; i++)
        expect_rejected(raw[i], raw[i], strlen(raw[i]));
    expect_rejected("invalid UTF-8 JSON", "{\"model\":\"\xFF\"}", 13);
    expect_rejected("JSON with a NUL", "{}\0", 3);

    struct {
        const char *what, *added, *norm, *pre, *dec, *model;
    } cases[] = {
        {"WordPiece model", "", NORM, PRE, DEC,
         MODEL_WITH("\"WordPiece\"", VOCAB, "[]")},
        {"model not an object", "", NORM, PRE, DEC, "[1,2]"},
        {"model type not a string", "", NORM, PRE, DEC, MODEL_WITH("7", VOCAB, "[]")},
        {"vocab missing", "", NORM, PRE, DEC, "{\"type\":\"BPE\",\"merges\":[]}"},
        {"merges missing", "", NORM, PRE, DEC, "{\"type\":\"BPE\",\"vocab\":" VOCAB "}"},
        {"vocab an array", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", "[\"a\"]", "[]")},
        {"vocab empty", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", "{}", "[]")},
        {"id a string", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", "{\"a\":\"0\"}", "[]")},
        {"id negative", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", "{\"a\":-1}", "[]")},
        {"id fractional", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", "{\"a\":1.5}", "[]")},
        {"id huge", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", "{\"a\":1e12}", "[]")},
        {"duplicate id", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", "{\"a\":0,\"b\":0}", "[]")},
        {"duplicate token", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", "{\"a\":0,\"a\":1}", "[]")},
        {"merges an object", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", VOCAB, "{}")},
        {"merge token not in vocab", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", VOCAB, "[\"a z\"]")},
        {"merge result not in vocab", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", VOCAB, "[\"b a\"]")},
        {"merge without space", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", VOCAB, "[\"ab\"]")},
        {"merge with two spaces", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", VOCAB, "[\"a  b\"]")},
        {"merge of three", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", VOCAB, "[[\"a\",\"b\",\"c\"]]")},
        {"merge of numbers", "", NORM, PRE, DEC, MODEL_WITH("\"BPE\"", VOCAB, "[[1,2]]")},
        {"dropout", "", NORM, PRE, DEC,
         "{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":" VOCAB ",\"merges\":[]}"},
        {"subword prefix", "", NORM, PRE, DEC,
         "{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\",\"vocab\":" VOCAB ",\"merges\":[]}"},
        {"unk not in vocab", "", NORM, PRE, DEC,
         "{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":" VOCAB ",\"merges\":[]}"},
        {"NFKC normalizer", "", "{\"type\":\"NFKC\"}", PRE, DEC, MODEL},
        {"normalizer without type", "", "{}", PRE, DEC, MODEL},
        {"Whitespace pre-tokenizer", "", NORM, "{\"type\":\"Whitespace\"}", DEC, MODEL},
        {"no pre-tokenizer", "", NORM, "null", DEC, MODEL},
        {"add_prefix_space missing", "", NORM, "{\"type\":\"ByteLevel\"}", DEC, MODEL},
        {"use_regex not a bool", "", NORM,
         "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":1}", DEC, MODEL},
        {"WordPiece decoder", "", NORM, PRE, "{\"type\":\"WordPiece\"}", MODEL},
        {"no decoder", "", NORM, PRE, "null", MODEL},
        {"added token not an object", "1", NORM, PRE, DEC, MODEL},
        {"added token without content", "{\"id\":6}", NORM, PRE, DEC, MODEL},
        {"added token empty", "{\"id\":6,\"content\":\"\"}", NORM, PRE, DEC, MODEL},
        {"added token wrong id", "{\"id\":9,\"content\":\"<x>\"}", NORM, PRE, DEC, MODEL},
        {"added token id of a vocab token", "{\"id\":1,\"content\":\"<x>\"}", NORM, PRE, DEC, MODEL},
        {"added token twice", ADDED "," ADDED, NORM, PRE, DEC, MODEL},
        {"added token lstrip", "{\"id\":6,\"content\":\"<x>\",\"lstrip\":true}", NORM, PRE, DEC, MODEL},
        {"added token special not a bool", "{\"id\":6,\"content\":\"<x>\",\"special\":\"yes\"}", NORM,
         PRE, DEC, MODEL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *json = make_json(cases[i].added, cases[i].norm, cases[i].pre, cases[i].dec, cases[i].model);
        CHECK(json != NULL);
        if (json)
            expect_rejected(cases[i].what, json, strlen(json));
        free(json);
    }

    char *json = make_json("", NORM, PRE, DEC, MODEL);
    size_t len = strlen(json);
    char *with_trunc = malloc(len + 64);
    snprintf(with_trunc, len + 64, "{\"truncation\":{\"max_length\":2},%s", json + 1);
    /* cJSON keeps the first of duplicate keys, which is the non-null one. */
    expect_rejected("truncation", with_trunc, strlen(with_trunc));
    free(with_trunc);
    free(json);

    rk_tokenizer *tok = NULL;
    CHECK(rk_tok_load("/nonexistent/tokenizer.json", &tok) == RK_EIO);
    CHECK(tok == NULL && rk_last_error()[0] != '\0');
}

/* Replays one golden file; returns how many cases matched HF. */
static int run_goldens(const char *tok_path, const char *golden_path, int *total)
{
    *total = 0;
    rk_tokenizer *tok = NULL;
    rk_status st = rk_tok_load(tok_path, &tok);
    CHECKF(st == RK_OK, "%s", rk_last_error());
    size_t len = 0;
    char *text = NULL;
    CHECKF(rk_read_file(golden_path, SIZE_MAX, &text, &len) == RK_OK, "%s", rk_last_error());
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    CHECKF(cJSON_IsArray(cases), "%s has no cases", golden_path);
    int passed = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c && tok; c = c->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "ids");
        const cJSON *dec = cJSON_GetObjectItemCaseSensitive(c, "decoded");
        if (!cJSON_IsString(t) || !cJSON_IsArray(want) || !cJSON_IsString(dec))
            continue;
        int idx = (*total)++;
        int32_t *ids = NULL;
        size_t n = 0;
        bool ok = rk_tok_encode(tok, t->valuestring, strlen(t->valuestring), &ids, &n) == RK_OK;
        ok = ok && n == (size_t)cJSON_GetArraySize(want);
        size_t k = 0;
        for (const cJSON *w = want->child; ok && w; w = w->next, k++)
            ok = ids[k] == (int32_t)w->valuedouble;
        char *out = NULL;
        size_t out_len = 0;
        ok = ok && rk_tok_decode(tok, ids, n, &out, &out_len) == RK_OK;
        ok = ok && out_len == strlen(dec->valuestring) && memcmp(out, dec->valuestring, out_len) == 0;
        CHECKF(ok, "%s case %d (\"%.60s\") differs from HF", golden_path, idx, t->valuestring);
        passed += ok;
        free(ids);
        free(out);
    }
    cJSON_Delete(root);
    rk_tok_free(tok);
    return passed;
}

static size_t encode_count(const rk_tokenizer *tok, const char *text, size_t len, double *secs)
{
    int32_t *ids = NULL;
    size_t n = 0;
    double t0 = rk_now();
    CHECKF(rk_tok_encode(tok, text, len, &ids, &n) == RK_OK, "%s", rk_last_error());
    *secs = rk_now() - t0;
    char *out = NULL;
    size_t out_len = 0;
    CHECK(rk_tok_decode(tok, ids, n, &out, &out_len) == RK_OK);
    CHECK(out && out_len == len && memcmp(out, text, len) == 0);
    free(out);
    free(ids);
    return n;
}

/* The WikiText-2 test file through the fixture tokenizer. The file has CRLF
 * line ends: HF gives 363647 ids for its bytes and 357865 (the count in the
 * models' goldens.json) after Python's text-mode read turns CRLF into LF. */
static void run_wikitext(const char *path)
{
    rk_tokenizer *tok = NULL;
    size_t len = 0;
    char *text = NULL;
    if (rk_read_file(path, SIZE_MAX, &text, &len) != RK_OK || rk_tok_load(FIXTURE, &tok) != RK_OK) {
        CHECKF(0, "cannot load %s or the fixture", path);
        free(text);
        return;
    }
    double secs = 0;
    size_t n = encode_count(tok, text, len, &secs);
    CHECKF(n == 363647, "wiki.test.raw gave %zu ids, HF gives 363647", n);
    printf("wiki.test.raw: %zu bytes -> %zu ids in %.3f s\n", len, n, secs);
    size_t lf = 0;
    for (size_t i = 0; i < len; i++)
        if (!(text[i] == '\r' && i + 1 < len && text[i + 1] == '\n'))
            text[lf++] = text[i];
    n = encode_count(tok, text, lf, &secs);
    CHECKF(n == 357865, "wiki.test.raw with LF line ends gave %zu ids, HF gives 357865", n);
    printf("wiki.test.raw with LF line ends: %zu ids\n", n);
    free(text);
    rk_tok_free(tok);
}

int main(void)
{
    rk_tokenizer *tok = NULL;
    rk_status st = rk_tok_load(FIXTURE, &tok);
    CHECKF(st == RK_OK, "%s", rk_last_error());
    if (tok) {
        test_fixture_round_trips(tok);
        test_invalid_utf8(tok);
        test_hf_quirks(tok);
        rk_tok_free(tok);
    }
    test_small_tokenizer();
    test_malformed();

    const char *dir = RK_SHARED_DIR "/data/tokenizers";
    char goldens[2][512], tokenizers[2][512];
    snprintf(tokenizers[0], sizeof tokenizers[0], "%s", FIXTURE);
    snprintf(goldens[0], sizeof goldens[0], "%s/tokenizer_goldens_fixture.json", dir);
    snprintf(tokenizers[1], sizeof tokenizers[1], "%s/pythia-20b-tokenizer.json", dir);
    snprintf(goldens[1], sizeof goldens[1], "%s/tokenizer_goldens_pythia.json", dir);
    for (int i = 0; i < 2; i++) {
        if (access(goldens[i], R_OK) != 0 || access(tokenizers[i], R_OK) != 0) {
            printf("SKIP: %s is absent; HF golden comparison not run\n", goldens[i]);
            continue;
        }
        int total = 0;
        int passed = run_goldens(tokenizers[i], goldens[i], &total);
        CHECK(total > 0);
        printf("%s: %d/%d cases match HF\n", goldens[i], passed, total);
    }
    const char *wiki = RK_SHARED_DIR "/data/wikitext-2/wiki.test.raw";
    if (access(wiki, R_OK) == 0)
        run_wikitext(wiki);
    else
        printf("SKIP: %s is absent; WikiText-2 encode not run\n", wiki);
    return rk_test_finish("test_tokenizer");
}
