/* Byte-level BPE tokenizer matching Hugging Face tokenizers.
 *
 * Encoding follows HF's pipeline step by step, because every step changes
 * where pieces are cut and so which ids come out: split the raw text on the
 * added tokens that are matched unnormalised; NFC-normalise each piece in
 * between; split those on the added tokens that are matched normalised;
 * pre-tokenise what is left with the GPT-2 pattern; map bytes to the
 * byte-level alphabet and run BPE on each pre-token. Decoding maps tokens back
 * to bytes and converts them as Rust's String::from_utf8_lossy does. */
#include "tokenizer.h"

#include "textio.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Ids index dense tables, so a hostile file must not make them huge. */
#define MAX_ID (1 << 24)
/* Offsets into the string arenas are 32-bit. */
#define MAX_JSON ((size_t)1 << 30)

/* ------------------------------------------------------------------ */
/* Growable storage                                                    */

typedef struct {
    char *p;
    size_t len, cap;
} byte_buf;

/* Makes room for NEED (> 0) elements of ELEM bytes; returns the (possibly
 * moved) block, or NULL leaving P as it was. */
static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return NULL;
        n *= 2;
    }
    void *q = realloc(p, n * elem);
    if (q)
        *cap = n;
    return q;
}

static bool buf_put(byte_buf *b, const void *src, size_t n)
{
    if (n == 0)
        return true;
    if (n > SIZE_MAX - b->len)
        return false;
    char *p = grow(b->p, &b->cap, b->len + n, 1);
    if (!p)
        return false;
    b->p = p;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return true;
}

/* ------------------------------------------------------------------ */
/* UTF-8                                                               */

/* Length of the well-formed sequence at S (1..4) with its code point in *CP,
 * or -k where k is the length of the maximal ill-formed subpart (Unicode
 * 3.9, table 3-7): the unit that from_utf8_lossy replaces by one U+FFFD. */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int need;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n || s[i] < lo || s[i] > hi)
            return -i;
        v = (v << 6) | (s[i] & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = v;
    return need + 1;
}

/* True when S is well-formed; otherwise *BAD is the offset of the first
 * ill-formed byte. */
static bool utf8_valid(const char *s, size_t n, size_t *bad)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = utf8_next(u + i, n - i, &cp);
        if (k < 0) {
            *bad = i;
            return false;
        }
        i += (size_t)k;
    }
    return true;
}

/* String::from_utf8_lossy: each maximal ill-formed subpart becomes U+FFFD.
 * Returns a malloc'd NUL-terminated string. */
static char *utf8_lossy(const char *s, size_t n, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t need = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_next(u + i, n - i, &cp);
        need += k > 0 ? (size_t)k : 3;
        i += (size_t)(k > 0 ? k : -k);
    }
    char *out = malloc(need + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_next(u + i, n - i, &cp);
        if (k > 0) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += (size_t)-k;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* ------------------------------------------------------------------ */
/* The GPT-2 byte-level alphabet                                       */

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes move to
 * U+0100..U+0143 in byte order, so every byte is a visible character. */
static uint32_t byte_to_cp(unsigned b)
{
    if (b <= 32)
        return 256 + b;
    if (b >= 127 && b <= 160)
        return b + 162;
    if (b == 173)
        return 323;
    return b;
}

static int cp_to_byte(uint32_t cp)
{
    if (cp >= 256 && cp <= 288)
        return (int)(cp - 256);
    if (cp >= 289 && cp <= 322)
        return (int)(cp - 162);
    if (cp == 323)
        return 173;
    if (cp < 256 && byte_to_cp(cp) == cp)
        return (int)cp;
    return -1;
}

/* UTF-8 of an alphabet character (all are below U+0800). */
static size_t put_alphabet_char(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* HF's ByteLevel decoder maps a token through the alphabet only when every
 * character of it belongs to the alphabet; any other token (such as an added
 * token made of plain spaces) contributes its own UTF-8 bytes. */
static bool token_to_bytes(const char *s, size_t n, byte_buf *out)
{
    size_t start = out->len;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        int k = utf8_next(u + i, n - i, &cp);
        int b = k > 0 ? cp_to_byte(cp) : -1;
        if (b < 0) {
            out->len = start;
            return buf_put(out, s, n);
        }
        unsigned char c = (unsigned char)b;
        if (!buf_put(out, &c, 1))
            return false;
        i += (size_t)k;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Hash tables (open addressing, linear probing, power-of-two sizes)   */

typedef struct {
    uint32_t off, len; /* into the table's arena */
    int32_t id;        /* < 0: empty slot */
} str_slot;

typedef struct {
    str_slot *slots;
    size_t mask, count;
    byte_buf arena;
} str_table;

typedef struct {
    uint64_t key; /* 0: empty slot */
    uint32_t rank;
    int32_t merged;
} merge_slot;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3u;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static size_t table_size_for(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

static bool str_table_init(str_table *t, size_t n)
{
    size_t cap = table_size_for(n);
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->slots)
        return false;
    for (size_t i = 0; i < cap; i++)
        t->slots[i].id = -1;
    t->mask = cap - 1;
    return true;
}

static str_slot *str_table_slot(const str_table *t, const char *s, size_t n)
{
    size_t i = (size_t)hash_bytes(s, n) & t->mask;
    for (;; i = (i + 1) & t->mask) {
        str_slot *e = &t->slots[i];
        if (e->id < 0 || (e->len == n && (n == 0 || memcmp(t->arena.p + e->off, s, n) == 0)))
            return e;
    }
}

static int32_t str_table_find(const str_table *t, const char *s, size_t n)
{
    return t->slots ? str_table_slot(t, s, n)->id : -1;
}

/* Adds S with ID; false when S is already there (*DUP) or memory runs out. */
static bool str_table_add(str_table *t, const char *s, size_t n, int32_t id, bool *dup)
{
    str_slot *e = str_table_slot(t, s, n);
    *dup = e->id >= 0;
    if (*dup)
        return false;
    size_t off = t->arena.len;
    if (!buf_put(&t->arena, s, n))
        return false;
    e->off = (uint32_t)off;
    e->len = (uint32_t)n;
    e->id = id;
    t->count++;
    return true;
}

static void str_table_free(str_table *t)
{
    free(t->slots);
    free(t->arena.p);
}

static uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)a + 1) << 32 | (uint32_t)b;
}

static merge_slot *merge_slot_for(merge_slot *slots, size_t mask, uint64_t key)
{
    size_t i = (size_t)hash_u64(key) & mask;
    while (slots[i].key && slots[i].key != key)
        i = (i + 1) & mask;
    return &slots[i];
}

/* ------------------------------------------------------------------ */
/* The tokenizer                                                       */

typedef struct {
    const char *content; /* as written in tokenizer.json */
    size_t len;
    const char *pattern; /* what is matched: NFC of content when normalized */
    size_t pattern_len;
    uint32_t content_off, pattern_off; /* into their arenas, while loading */
    int32_t id;
    bool normalized;
} added_token;

/* The added tokens matched at one stage, longest pattern first. */
typedef struct {
    const added_token **tok;
    size_t n;
    bool first[256]; /* bytes that start some pattern */
} added_set;

struct rk_tokenizer {
    str_table vocab;
    merge_slot *merges;
    size_t merge_mask;
    int32_t byte_id[256]; /* vocab id of each byte's alphabet character */
    int32_t unk_id;
    bool fuse_unk, ignore_merges;
    bool nfc, add_prefix_space, use_regex;
    pcre2_code *re;

    added_token *added;
    size_t n_added;
    str_table added_by_content;
    byte_buf patterns; /* NFC'd patterns of normalized added tokens */
    added_set raw_set, norm_set;

    int32_t n_ids;
    uint32_t *piece_off, *piece_len; /* per id, into pieces */
    byte_buf pieces;                 /* raw bytes of every token */
};

void rk_tok_free(rk_tokenizer *tok)
{
    if (!tok)
        return;
    str_table_free(&tok->vocab);
    free(tok->merges);
    pcre2_code_free(tok->re);
    free(tok->added);
    str_table_free(&tok->added_by_content);
    free(tok->patterns.p);
    free(tok->raw_set.tok);
    free(tok->norm_set.tok);
    free(tok->piece_off);
    free(tok->piece_len);
    free(tok->pieces.p);
    free(tok);
}

/* Code points that HF's NFC leaves alone but utf8proc does not: combining
 * marks added after Unicode 9.0 (HF's normalisation tables are Unicode 9's,
 * so it gives them combining class 0) and the Dives Akuru pair that utf8proc
 * composes into U+11938. Found by comparing HF tokenizers 0.23 with utf8proc's
 * Unicode 15.0 tables over every code point; a utf8proc with newer tables
 * would add the marks of its new Unicode versions to this list. */
static const uint32_t nfc_inert[][2] = {
    {0x7FD, 0x7FD}, {0x898, 0x89F}, {0x8CA, 0x8D3}, {0x9FE, 0x9FE}, {0xC3C, 0xC3C}, {0xD3B, 0xD3C},
    {0xEBA, 0xEBA}, {0x1715, 0x1715}, {0x1ABF, 0x1ACE}, {0x1DF6, 0x1DFA}, {0xA82C, 0xA82C},
    {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E},
    {0x11839, 0x1183A}, {0x11930, 0x11930}, {0x11935, 0x11935}, {0x1193D, 0x1193E},
    {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34}, {0x11A47, 0x11A47},
    {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97},
    {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136},
    {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

static bool is_nfc_inert(uint32_t cp)
{
    size_t lo = 0, hi = sizeof nfc_inert / sizeof *nfc_inert;
    if (cp < nfc_inert[0][0])
        return false;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < nfc_inert[mid][0])
            hi = mid;
        else if (cp > nfc_inert[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

static int ccc(utf8proc_int32_t cp)
{
    return utf8proc_get_property(cp)->combining_class;
}

/* Puts each run of combining marks into canonical order with a stable
 * counting sort. utf8proc's own reordering is a gnome sort, quadratic on a
 * long run of alternating marks; HF's is not. */
static bool canonical_order(utf8proc_int32_t *cp, size_t n)
{
    utf8proc_int32_t *tmp = NULL;
    for (size_t i = 0; i < n;) {
        if (ccc(cp[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i + 1;
        bool sorted = true;
        for (; j < n && ccc(cp[j]) != 0; j++)
            sorted = sorted && ccc(cp[j - 1]) <= ccc(cp[j]);
        if (!sorted) {
            if (!tmp && !(tmp = malloc(n * sizeof *tmp)))
                return false;
            size_t at[257] = {0};
            for (size_t k = i; k < j; k++)
                at[ccc(cp[k]) + 1]++;
            for (size_t c = 1; c < 257; c++)
                at[c] += at[c - 1];
            for (size_t k = i; k < j; k++)
                tmp[at[ccc(cp[k])]++] = cp[k];
            memcpy(cp + i, tmp, (j - i) * sizeof *cp);
        }
        i = j;
    }
    free(tmp);
    return true;
}

/* Appends the NFC of S: utf8proc decomposes each code point and composes
 * the result; the reordering in between is ours. */
static rk_status nfc_append(byte_buf *out, const char *s, size_t n)
{
    const utf8proc_option_t opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    utf8proc_int32_t *cp = NULL;
    size_t len = 0, cap = 0;
    rk_status st = RK_OK;
    for (size_t i = 0; i < n && st == RK_OK;) {
        uint32_t c;
        int k = utf8_next((const unsigned char *)s + i, n - i, &c);
        i += (size_t)k;
        utf8proc_ssize_t got = 0;
        for (;;) {
            /* Room for the decomposition and, later, the UTF-8 and its NUL. */
            utf8proc_int32_t *p = grow(cp, &cap, len + (size_t)got + 5, sizeof *p);
            if (!p) {
                st = rk_fail(RK_ENOMEM, "tokenizer: out of memory normalising text");
                break;
            }
            cp = p;
            int boundclass = 0;
            got = utf8proc_decompose_char((utf8proc_int32_t)c, cp + len,
                                          (utf8proc_ssize_t)(cap - len), opts, &boundclass);
            if (got < 0) {
                st = rk_fail(RK_EINVAL, "tokenizer: NFC normalisation failed: %s",
                             utf8proc_errmsg(got));
                break;
            }
            if ((size_t)got <= cap - len)
                break;
        }
        len += (size_t)got;
    }
    if (st == RK_OK && !canonical_order(cp, len))
        st = rk_fail(RK_ENOMEM, "tokenizer: out of memory normalising text");
    if (st == RK_OK && len) {
        utf8proc_ssize_t m = utf8proc_reencode(cp, (utf8proc_ssize_t)len, opts);
        if (m < 0)
            st = rk_fail(RK_EINVAL, "tokenizer: NFC normalisation failed: %s", utf8proc_errmsg(m));
        else if (!buf_put(out, cp, (size_t)m))
            st = rk_fail(RK_ENOMEM, "tokenizer: out of memory normalising text");
    }
    free(cp);
    return st;
}

/* NFC of S as HF computes it. *OUT is NULL when S is pure ASCII (already
 * NFC), else malloc'd. A code point HF leaves inert is a starter that
 * composes with nothing, so the text around it normalises independently. */
static rk_status nfc(const char *s, size_t n, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = n;
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80)
        i++;
    if (i == n)
        return RK_OK;
    byte_buf b = {0};
    size_t seg = 0;
    rk_status st = RK_OK;
    for (i = 0; i < n && st == RK_OK;) {
        uint32_t cp = (unsigned char)s[i];
        int k = cp < 0x80 ? 1 : utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (k > 0 && is_nfc_inert(cp)) {
            st = nfc_append(&b, s + seg, i - seg);
            if (st == RK_OK && !buf_put(&b, s + i, (size_t)k))
                st = rk_fail(RK_ENOMEM, "tokenizer: out of memory normalising text");
            seg = i + (size_t)k;
        }
        i += (size_t)(k > 0 ? k : 1);
    }
    if (st == RK_OK)
        st = nfc_append(&b, s + seg, n - seg);
    if (st == RK_OK && !buf_put(&b, "", 1))
        st = rk_fail(RK_ENOMEM, "tokenizer: out of memory normalising text");
    if (st != RK_OK) {
        free(b.p);
        return st;
    }
    *out = b.p;
    *out_len = b.len - 1;
    return RK_OK;
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

#define JSON_ERR(st, ...) rk_fail(st, "tokenizer.json: " __VA_ARGS__)

static const cJSON *item(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static bool is_absent(const cJSON *j)
{
    return !j || cJSON_IsNull(j);
}

/* Reads an optional boolean KEY of OBJ into *OUT (left as is when absent). */
static rk_status read_bool(const cJSON *obj, const char *where, const char *key, bool *out)
{
    const cJSON *j = item(obj, key);
    if (is_absent(j))
        return RK_OK;
    if (!cJSON_IsBool(j))
        return JSON_ERR(RK_EFORMAT, "%s.%s must be true or false", where, key);
    *out = cJSON_IsTrue(j);
    return RK_OK;
}

static bool json_id(const cJSON *j, int32_t *id)
{
    if (!cJSON_IsNumber(j))
        return false;
    double v = j->valuedouble;
    if (!(v >= 0 && v < MAX_ID) || v != (double)(int32_t)v)
        return false;
    *id = (int32_t)v;
    return true;
}

static const char *type_of(const cJSON *obj)
{
    const cJSON *t = item(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Top-level sections that would make HF's encode or decode differ from ours
 * are refused rather than silently ignored. */
static rk_status read_pipeline(rk_tokenizer *tok, const cJSON *root)
{
    static const char *const unsupported[] = {"truncation", "padding"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (!is_absent(item(root, unsupported[i])))
            return JSON_ERR(RK_ECONFIG, "\"%s\" is set; only null is supported", unsupported[i]);

    const cJSON *norm = item(root, "normalizer");
    if (!is_absent(norm)) {
        const char *t = type_of(norm);
        if (!t)
            return JSON_ERR(RK_EFORMAT, "normalizer must be an object with a string \"type\"");
        if (strcmp(t, "NFC") != 0)
            return JSON_ERR(RK_ECONFIG, "unsupported normalizer type \"%s\" (only NFC)", t);
        tok->nfc = true;
    }

    const cJSON *pre = item(root, "pre_tokenizer");
    if (is_absent(pre))
        return JSON_ERR(RK_ECONFIG, "pre_tokenizer is missing; only ByteLevel is supported");
    const char *t = type_of(pre);
    if (!t)
        return JSON_ERR(RK_EFORMAT, "pre_tokenizer must be an object with a string \"type\"");
    if (strcmp(t, "ByteLevel") != 0)
        return JSON_ERR(RK_ECONFIG, "unsupported pre_tokenizer type \"%s\" (only ByteLevel)", t);
    const cJSON *aps = item(pre, "add_prefix_space");
    if (!cJSON_IsBool(aps))
        return JSON_ERR(RK_EFORMAT, "pre_tokenizer.add_prefix_space must be true or false");
    tok->add_prefix_space = cJSON_IsTrue(aps);
    tok->use_regex = true;
    rk_status st = read_bool(pre, "pre_tokenizer", "use_regex", &tok->use_regex);
    if (st != RK_OK)
        return st;

    const cJSON *dec = item(root, "decoder");
    t = is_absent(dec) ? "none" : type_of(dec);
    if (!t || strcmp(t, "ByteLevel") != 0)
        return JSON_ERR(RK_ECONFIG, "unsupported decoder \"%s\" (only ByteLevel)", t ? t : "?");

    const cJSON *post = item(root, "post_processor");
    if (!is_absent(post)) {
        t = type_of(post);
        if (!t || strcmp(t, "ByteLevel") != 0)
            return JSON_ERR(RK_ECONFIG, "unsupported post_processor \"%s\" (only ByteLevel or null)",
                            t ? t : "?");
    }
    return RK_OK;
}

static rk_status read_model_options(rk_tokenizer *tok, const cJSON *model)
{
    const char *t = type_of(model);
    if (item(model, "type") && !t)
        return JSON_ERR(RK_EFORMAT, "model.type must be a string");
    if (t && strcmp(t, "BPE") != 0)
        return JSON_ERR(RK_ECONFIG, "unsupported model type \"%s\" (only BPE)", t);

    const cJSON *dropout = item(model, "dropout");
    if (!is_absent(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return JSON_ERR(RK_ECONFIG, "model.dropout must be null: BPE dropout is not supported");
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *j = item(model, affixes[i]);
        if (!is_absent(j) && !(cJSON_IsString(j) && j->valuestring[0] == '\0'))
            return JSON_ERR(RK_ECONFIG, "model.%s is not supported", affixes[i]);
    }
    bool byte_fallback = false;
    rk_status st = read_bool(model, "model", "byte_fallback", &byte_fallback);
    if (st == RK_OK && byte_fallback)
        st = JSON_ERR(RK_ECONFIG, "model.byte_fallback is not supported");
    if (st == RK_OK)
        st = read_bool(model, "model", "fuse_unk", &tok->fuse_unk);
    if (st == RK_OK)
        st = read_bool(model, "model", "ignore_merges", &tok->ignore_merges);
    return st;
}

static rk_status load_vocab(rk_tokenizer *tok, const cJSON *vocab, int32_t *max_id)
{
    if (!vocab)
        return JSON_ERR(RK_EMISSING, "model.vocab is missing");
    if (!cJSON_IsObject(vocab))
        return JSON_ERR(RK_EFORMAT, "model.vocab must be an object mapping tokens to ids");
    size_t n = 0;
    for (const cJSON *e = vocab->child; e; e = e->next)
        n++;
    if (n == 0)
        return JSON_ERR(RK_EFORMAT, "model.vocab is empty");
    if (!str_table_init(&tok->vocab, n))
        return rk_fail(RK_ENOMEM, "tokenizer: out of memory for the vocab");
    *max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id;
        if (!json_id(e, &id))
            return JSON_ERR(RK_EFORMAT, "model.vocab[\"%.64s\"]: id must be an integer in [0, %d)",
                            e->string, MAX_ID);
        bool dup;
        if (!str_table_add(&tok->vocab, e->string, strlen(e->string), id, &dup))
            return dup ? JSON_ERR(RK_EFORMAT, "model.vocab: token \"%.64s\" appears twice", e->string)
                       : rk_fail(RK_ENOMEM, "tokenizer: out of memory for the vocab");
        if (id > *max_id)
            *max_id = id;
    }
    return RK_OK;
}

/* HF re-derives added-token ids when it loads a file (a token already in the
 * vocab takes its vocab id, a new one the next id past the vocab) and only
 * warns when the file disagrees. A file whose ids HF would change is refused,
 * so the ids written in it are always the ids produced. */
static rk_status load_added(rk_tokenizer *tok, const cJSON *arr, int32_t *max_id)
{
    if (is_absent(arr))
        return RK_OK;
    if (!cJSON_IsArray(arr))
        return JSON_ERR(RK_EFORMAT, "added_tokens must be an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n == 0)
        return RK_OK;
    tok->added = calloc(n, sizeof *tok->added);
    if (!tok->added || !str_table_init(&tok->added_by_content, n))
        return rk_fail(RK_ENOMEM, "tokenizer: out of memory for added tokens");
    int64_t nv = (int64_t)tok->vocab.count, max_added = -1;
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        const cJSON *content = item(e, "content");
        int32_t id;
        if (!cJSON_IsObject(e) || !cJSON_IsString(content) || !json_id(item(e, "id"), &id))
            return JSON_ERR(RK_EFORMAT,
                            "added_tokens[%zu] needs a string \"content\" and an integer \"id\" in [0, %d)",
                            i, MAX_ID);
        size_t len = strlen(content->valuestring);
        if (len == 0)
            return JSON_ERR(RK_EFORMAT, "added_tokens[%zu] has empty content", i);
        static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
        for (size_t f = 0; f < 3; f++) {
            bool on = false;
            rk_status st = read_bool(e, "added_tokens[]", flags[f], &on);
            if (st != RK_OK)
                return st;
            if (on)
                return JSON_ERR(RK_ECONFIG, "added_tokens[%zu] (\"%.64s\"): %s is not supported", i,
                                content->valuestring, flags[f]);
        }
        bool special = false;
        rk_status st = read_bool(e, "added_tokens[]", "special", &special);
        bool normalized = !special;
        if (st == RK_OK)
            st = read_bool(e, "added_tokens[]", "normalized", &normalized);
        if (st != RK_OK)
            return st;

        if (str_table_find(&tok->added_by_content, content->valuestring, len) >= 0)
            return JSON_ERR(RK_EFORMAT, "added_tokens[%zu]: \"%.64s\" is listed twice", i,
                            content->valuestring);
        int64_t expect = str_table_find(&tok->vocab, content->valuestring, len);
        if (expect < 0)
            expect = max_added < nv ? nv : max_added + 1;
        if (id != expect)
            return JSON_ERR(RK_ECONFIG,
                            "added_tokens[%zu] (\"%.64s\") has id %d, but Hugging Face tokenizers "
                            "would give it id %lld",
                            i, content->valuestring, id, (long long)expect);
        if (expect > max_added)
            max_added = expect;
        bool dup;
        if (!str_table_add(&tok->added_by_content, content->valuestring, len, id, &dup))
            return rk_fail(RK_ENOMEM, "tokenizer: out of memory for added tokens");
        added_token *a = &tok->added[tok->n_added++];
        a->content_off = str_table_slot(&tok->added_by_content, content->valuestring, len)->off;
        a->len = len;
        a->id = id;
        a->normalized = normalized;
        if (id > *max_id)
            *max_id = id;
    }
    for (i = 0; i < tok->n_added; i++)
        tok->added[i].content = tok->added_by_content.arena.p + tok->added[i].content_off;
    return RK_OK;
}

/* Builds the id -> bytes table, refusing ids that name two tokens. HF keeps
 * a normalized added token in its normalised form, and decodes that. */
static rk_status build_id_table(rk_tokenizer *tok)
{
    size_t n = (size_t)tok->n_ids;
    tok->piece_off = calloc(n, sizeof *tok->piece_off);
    tok->piece_len = calloc(n, sizeof *tok->piece_len);
    uint32_t *owner = calloc(n, sizeof *owner); /* slot + 1 of the vocab token */
    rk_status st = RK_OK;
    if (!tok->piece_off || !tok->piece_len || !owner) {
        st = rk_fail(RK_ENOMEM, "tokenizer: out of memory for the id table");
        goto done;
    }
    const str_table *v = &tok->vocab;
    for (size_t s = 0; s <= v->mask && st == RK_OK; s++) {
        const str_slot *e = &v->slots[s];
        if (e->id < 0)
            continue;
        if (owner[e->id]) {
            const str_slot *o = &v->slots[owner[e->id] - 1];
            st = JSON_ERR(RK_EFORMAT, "model.vocab: id %d is given to both \"%.*s\" and \"%.*s\"",
                          e->id, (int)(o->len > 64 ? 64 : o->len), v->arena.p + o->off,
                          (int)(e->len > 64 ? 64 : e->len), v->arena.p + e->off);
            break;
        }
        owner[e->id] = (uint32_t)s + 1;
        size_t off = tok->pieces.len;
        if (!token_to_bytes(v->arena.p + e->off, e->len, &tok->pieces)) {
            st = rk_fail(RK_ENOMEM, "tokenizer: out of memory for the id table");
            break;
        }
        tok->piece_off[e->id] = (uint32_t)off;
        tok->piece_len[e->id] = (uint32_t)(tok->pieces.len - off);
    }
    for (size_t i = 0; i < tok->n_added && st == RK_OK; i++) {
        const added_token *a = &tok->added[i];
        if (str_table_find(v, a->content, a->len) >= 0)
            continue;
        if (owner[a->id]) {
            const str_slot *o = &v->slots[owner[a->id] - 1];
            st = JSON_ERR(RK_EFORMAT, "added token \"%.64s\" has id %d, which the vocab gives to \"%.*s\"",
                          a->content, a->id, (int)(o->len > 64 ? 64 : o->len), v->arena.p + o->off);
            break;
        }
        size_t off = tok->pieces.len;
        if (!token_to_bytes(a->pattern, a->pattern_len, &tok->pieces)) {
            st = rk_fail(RK_ENOMEM, "tokenizer: out of memory for the id table");
            break;
        }
        tok->piece_off[a->id] = (uint32_t)off;
        tok->piece_len[a->id] = (uint32_t)(tok->pieces.len - off);
    }
done:
    free(owner);
    return st;
}

/* A merge is "a b" (one space) or ["a", "b"], as HF accepts both. */
static bool merge_parts(const cJSON *m, const char **a, size_t *alen, const char **b, size_t *blen)
{
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring;
        const char *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return false;
        *a = s;
        *alen = (size_t)(sp - s);
        *b = sp + 1;
        *blen = strlen(sp + 1);
        return true;
    }
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2)
        return false;
    const cJSON *x = m->child, *y = x->next;
    if (!cJSON_IsString(x) || !cJSON_IsString(y))
        return false;
    *a = x->valuestring;
    *alen = strlen(*a);
    *b = y->valuestring;
    *blen = strlen(*b);
    return true;
}

static rk_status load_merges(rk_tokenizer *tok, const cJSON *merges)
{
    if (!merges)
        return JSON_ERR(RK_EMISSING, "model.merges is missing");
    if (!cJSON_IsArray(merges))
        return JSON_ERR(RK_EFORMAT, "model.merges must be an array");
    size_t n = (size_t)cJSON_GetArraySize(merges);
    size_t cap = table_size_for(n);
    tok->merges = calloc(cap, sizeof *tok->merges);
    if (!tok->merges)
        return rk_fail(RK_ENOMEM, "tokenizer: out of memory for merges");
    tok->merge_mask = cap - 1;
    byte_buf joined = {0};
    rk_status st = RK_OK;
    uint32_t rank = 0;
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        const char *a, *b;
        size_t alen, blen;
        if (!merge_parts(m, &a, &alen, &b, &blen)) {
            st = JSON_ERR(RK_EFORMAT, "model.merges[%u] must be \"a b\" or [\"a\", \"b\"]", rank);
            break;
        }
        joined.len = 0;
        if (!buf_put(&joined, a, alen) || !buf_put(&joined, b, blen)) {
            st = rk_fail(RK_ENOMEM, "tokenizer: out of memory for merges");
            break;
        }
        int32_t ia = str_table_find(&tok->vocab, a, alen);
        int32_t ib = str_table_find(&tok->vocab, b, blen);
        const char *ab = joined.len ? joined.p : "";
        size_t ablen = joined.len;
        int32_t im = str_table_find(&tok->vocab, ab, ablen);
        if (ia < 0 || ib < 0 || im < 0) {
            const char *s = ia < 0 ? a : ib < 0 ? b : ab;
            size_t len = ia < 0 ? alen : ib < 0 ? blen : ablen;
            st = JSON_ERR(RK_EFORMAT, "model.merges[%u] names \"%.*s\", which is not in the vocab",
                          rank, (int)(len > 64 ? 64 : len), s);
            break;
        }
        /* A repeated pair keeps its last rank, as HF's map insertion does. */
        merge_slot *e = merge_slot_for(tok->merges, tok->merge_mask, pair_key(ia, ib));
        e->key = pair_key(ia, ib);
        e->rank = rank;
        e->merged = im;
    }
    free(joined.p);
    return st;
}

static int cmp_added(const void *x, const void *y)
{
    const added_token *a = *(const added_token *const *)x, *b = *(const added_token *const *)y;
    if (a->pattern_len != b->pattern_len)
        return a->pattern_len > b->pattern_len ? -1 : 1;
    return a < b ? -1 : a > b;
}

static rk_status fill_set(added_set *set, const rk_tokenizer *tok, bool normalized)
{
    for (size_t i = 0; i < tok->n_added; i++)
        set->n += tok->added[i].normalized == normalized;
    if (set->n == 0)
        return RK_OK;
    set->tok = malloc(set->n * sizeof *set->tok);
    if (!set->tok)
        return rk_fail(RK_ENOMEM, "tokenizer: out of memory for added tokens");
    size_t k = 0;
    for (size_t i = 0; i < tok->n_added; i++) {
        const added_token *a = &tok->added[i];
        if (a->normalized != normalized)
            continue;
        set->tok[k++] = a;
        set->first[(unsigned char)a->pattern[0]] = true;
    }
    qsort(set->tok, set->n, sizeof *set->tok, cmp_added);
    return RK_OK;
}

/* Splits the added tokens into the set matched on the raw text and the set
 * matched on normalised text, whose patterns HF normalises too. */
static rk_status build_added_sets(rk_tokenizer *tok)
{
    for (size_t i = 0; i < tok->n_added; i++) {
        added_token *a = &tok->added[i];
        a->pattern_off = UINT32_MAX;
        if (!a->normalized || !tok->nfc)
            continue;
        char *norm;
        size_t len;
        rk_status st = nfc(a->content, a->len, &norm, &len);
        if (st != RK_OK)
            return st;
        if (!norm)
            continue;
        a->pattern_off = (uint32_t)tok->patterns.len;
        a->pattern_len = len;
        bool ok = buf_put(&tok->patterns, norm, len);
        free(norm);
        if (!ok)
            return rk_fail(RK_ENOMEM, "tokenizer: out of memory for added tokens");
    }
    for (size_t i = 0; i < tok->n_added; i++) {
        added_token *a = &tok->added[i];
        if (a->pattern_off == UINT32_MAX) {
            a->pattern = a->content;
            a->pattern_len = a->len;
        } else {
            a->pattern = tok->patterns.p + a->pattern_off;
        }
    }
    rk_status st = fill_set(&tok->raw_set, tok, false);
    if (st == RK_OK)
        st = fill_set(&tok->norm_set, tok, true);
    return st;
}

/* The GPT-2 split pattern. HF runs it with Oniguruma, whose \s is
 * White_Space-like (tab..CR, space, U+0085, category Z) while PCRE2's \s also
 * takes U+180E, so whitespace is spelled out instead of written \s. */
#define WS "\\t\\n\\x0B\\f\\r \\x{85}\\p{Z}"

/* Letters and numbers assigned in Unicode 15.0-16.0. HF's Oniguruma knows
 * them; Debian's PCRE2 10.42 has Unicode 14 tables and would call them
 * unassigned, splitting e.g. CJK Extension H text differently. */
#define NEW_LETTERS \
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}" \
    "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}" \
    "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}" \
    "\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}" \
    "\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}" \
    "\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}" \
    "\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}" \
    "\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"
#define NEW_NUMBERS \
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}" \
    "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}" \
    "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"
#define LETTER "\\p{L}" NEW_LETTERS
#define NUMBER "\\p{N}" NEW_NUMBERS

static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?[" LETTER "]+| ?[" NUMBER "]+| ?[^" WS LETTER NUMBER "]+"
    "|[" WS "]+(?![^" WS "])|[" WS "]+";

static rk_status compile_regex(rk_tokenizer *tok)
{
    int err;
    PCRE2_SIZE at;
    tok->re = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &at,
                            NULL);
    if (!tok->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return rk_fail(RK_ECONFIG, "tokenizer: PCRE2 rejects the split pattern at %zu: %s",
                       (size_t)at, (const char *)msg);
    }
    /* JIT is an optimisation only; the interpreter gives the same matches. */
    pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE);
    return RK_OK;
}

static rk_status read_unk(rk_tokenizer *tok, const cJSON *model)
{
    tok->unk_id = -1;
    const cJSON *unk = item(model, "unk_token");
    if (is_absent(unk))
        return RK_OK;
    if (!cJSON_IsString(unk))
        return JSON_ERR(RK_EFORMAT, "model.unk_token must be a string or null");
    tok->unk_id = str_table_find(&tok->vocab, unk->valuestring, strlen(unk->valuestring));
    if (tok->unk_id < 0)
        return JSON_ERR(RK_EFORMAT, "model.unk_token \"%.64s\" is not in the vocab", unk->valuestring);
    return RK_OK;
}

static rk_status build(rk_tokenizer *tok, const cJSON *root)
{
    if (!cJSON_IsObject(root))
        return JSON_ERR(RK_EFORMAT, "the top level must be an object");
    rk_status st = read_pipeline(tok, root);
    if (st != RK_OK)
        return st;
    const cJSON *model = item(root, "model");
    if (!model)
        return JSON_ERR(RK_EMISSING, "\"model\" is missing");
    if (!cJSON_IsObject(model))
        return JSON_ERR(RK_EFORMAT, "\"model\" must be an object");
    int32_t max_id = -1;
    st = read_model_options(tok, model);
    if (st == RK_OK)
        st = load_vocab(tok, item(model, "vocab"), &max_id);
    if (st == RK_OK)
        st = read_unk(tok, model);
    if (st == RK_OK)
        st = load_added(tok, item(root, "added_tokens"), &max_id);
    if (st != RK_OK)
        return st;
    tok->n_ids = max_id + 1;
    st = build_added_sets(tok);
    if (st == RK_OK)
        st = build_id_table(tok);
    if (st == RK_OK)
        st = load_merges(tok, item(model, "merges"));
    if (st == RK_OK && tok->use_regex)
        st = compile_regex(tok);
    if (st != RK_OK)
        return st;
    for (unsigned b = 0; b < 256; b++) {
        char ch[2];
        size_t n = put_alphabet_char(ch, byte_to_cp(b));
        tok->byte_id[b] = str_table_find(&tok->vocab, ch, n);
    }
    return RK_OK;
}

rk_status rk_tok_load_memory(const char *json, size_t len, rk_tokenizer **out)
{
    if (!out || (!json && len))
        return rk_fail(RK_EINVAL, "rk_tok_load_memory: NULL argument");
    *out = NULL;
    if (len > MAX_JSON)
        return rk_fail(RK_ELIMIT, "tokenizer.json: %zu bytes is more than the %zu supported", len,
                       MAX_JSON);
    size_t bad = 0;
    if (!utf8_valid(json, len, &bad))
        return JSON_ERR(RK_EFORMAT, "not valid UTF-8 (byte %zu)", bad);
    const char *end = NULL;
    cJSON *root = len ? cJSON_ParseWithLengthOpts(json, len, &end, false) : NULL;
    if (!root)
        return JSON_ERR(RK_EFORMAT, "not valid JSON (error near byte %zu)",
                        end ? (size_t)(end - json) : (size_t)0);
    for (; (size_t)(end - json) < len; end++)
        if (!strchr(" \t\r\n", *end) || *end == '\0') {
            cJSON_Delete(root);
            return JSON_ERR(RK_EFORMAT, "not valid JSON (trailing data at byte %zu)",
                            (size_t)(end - json));
        }
    rk_tokenizer *tok = calloc(1, sizeof *tok);
    rk_status st = tok ? build(tok, root) : rk_fail(RK_ENOMEM, "tokenizer: out of memory");
    cJSON_Delete(root);
    if (st != RK_OK) {
        rk_tok_free(tok);
        return st;
    }
    *out = tok;
    return RK_OK;
}

rk_status rk_tok_load(const char *path, rk_tokenizer **out)
{
    if (!path || !out)
        return rk_fail(RK_EINVAL, "rk_tok_load: NULL argument");
    *out = NULL;
    char *text;
    size_t len;
    rk_status st = rk_read_file(path, MAX_JSON, &text, &len);
    if (st != RK_OK)
        return st;
    st = rk_tok_load_memory(text, len, out);
    free(text);
    if (st != RK_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", rk_last_error());
        st = rk_fail(st, "%s: %s", path, msg);
    }
    return st;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */

typedef struct {
    int32_t id;
    int32_t prev, next; /* neighbours in the word, -1 at the ends */
    bool gone;          /* merged into its left neighbour */
} bpe_sym;

typedef struct {
    uint32_t rank;
    uint32_t pos; /* index of the left symbol */
    int32_t merged;
} bpe_cand;

typedef struct {
    const rk_tokenizer *tok;
    int32_t *ids;
    size_t n_ids, ids_cap;
    bpe_sym *sym;
    size_t sym_cap;
    bpe_cand *heap;
    size_t heap_len, heap_cap;
    byte_buf word;   /* a pre-token in the byte-level alphabet */
    byte_buf prefix; /* a piece with the prefix space added */
    pcre2_match_data *md;
} encoder;

static rk_status emit(encoder *e, int32_t id)
{
    int32_t *p = grow(e->ids, &e->ids_cap, e->n_ids + 1, sizeof *p);
    if (!p)
        return rk_fail(RK_ENOMEM, "rk_tok_encode: out of memory");
    e->ids = p;
    e->ids[e->n_ids++] = id;
    return RK_OK;
}

/* Candidates pop by lowest rank, then leftmost position, as in HF. */
static bool cand_before(const bpe_cand *a, const bpe_cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(encoder *e, bpe_cand c)
{
    size_t i = e->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(&c, &e->heap[parent]))
            break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = c;
}

static bpe_cand heap_pop(encoder *e)
{
    bpe_cand top = e->heap[0], last = e->heap[--e->heap_len];
    size_t i = 0, n = e->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_before(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!cand_before(&e->heap[c], &last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n)
        e->heap[i] = last;
    return top;
}

static const merge_slot *find_merge(const rk_tokenizer *tok, int32_t a, int32_t b)
{
    const merge_slot *m = merge_slot_for(tok->merges, tok->merge_mask, pair_key(a, b));
    return m->key ? m : NULL;
}

static void push_pair(encoder *e, size_t left)
{
    const merge_slot *m = find_merge(e->tok, e->sym[left].id, e->sym[e->sym[left].next].id);
    if (m)
        heap_push(e, (bpe_cand){m->rank, (uint32_t)left, m->merged});
}

/* Adds a symbol for the next byte. Bytes without a vocab entry become the
 * unknown token (fused with a preceding one when fuse_unk) or, without one,
 * vanish, as in HF's BPE::merge_word. */
static size_t add_symbol(encoder *e, size_t m, int32_t id, bool *last_unk)
{
    const rk_tokenizer *tok = e->tok;
    if (id < 0) {
        if (tok->unk_id < 0 || (*last_unk && tok->fuse_unk))
            return m;
        id = tok->unk_id;
        *last_unk = true;
    } else {
        *last_unk = false;
    }
    e->sym[m] = (bpe_sym){id, (int32_t)m - 1, (int32_t)m + 1, false};
    return m + 1;
}

/* BPE over one pre-token given as raw bytes, as HF's Word::merge_all does:
 * repeatedly merge the pair with the lowest merge rank, leftmost first. */
static rk_status encode_piece(encoder *e, const char *s, size_t n)
{
    const rk_tokenizer *tok = e->tok;
    if (tok->ignore_merges) {
        e->word.len = 0;
        for (size_t i = 0; i < n; i++) {
            char ch[2];
            if (!buf_put(&e->word, ch, put_alphabet_char(ch, byte_to_cp((unsigned char)s[i]))))
                return rk_fail(RK_ENOMEM, "rk_tok_encode: out of memory");
        }
        int32_t id = str_table_find(&tok->vocab, e->word.p, e->word.len);
        if (id >= 0)
            return emit(e, id);
    }
    bpe_sym *sym = grow(e->sym, &e->sym_cap, n, sizeof *sym);
    if (!sym)
        return rk_fail(RK_ENOMEM, "rk_tok_encode: out of memory");
    e->sym = sym;
    size_t m = 0;
    bool last_unk = false;
    for (size_t i = 0; i < n; i++)
        m = add_symbol(e, m, tok->byte_id[(unsigned char)s[i]], &last_unk);
    if (m == 0)
        return RK_OK;
    sym[m - 1].next = -1;

    /* Each merge adds at most two candidates to the m - 1 initial ones. */
    bpe_cand *heap = grow(e->heap, &e->heap_cap, 3 * m, sizeof *heap);
    if (!heap)
        return rk_fail(RK_ENOMEM, "rk_tok_encode: out of memory");
    e->heap = heap;
    e->heap_len = 0;
    for (size_t i = 0; i + 1 < m; i++)
        push_pair(e, i);
    while (e->heap_len) {
        bpe_cand c = heap_pop(e);
        bpe_sym *left = &sym[c.pos];
        if (left->gone || left->next < 0)
            continue;
        /* A stale candidate: one of the two symbols has changed since. */
        const merge_slot *now = find_merge(tok, left->id, sym[left->next].id);
        if (!now || now->merged != c.merged)
            continue;
        bpe_sym *right = &sym[left->next];
        left->id = c.merged;
        right->gone = true;
        left->next = right->next;
        if (right->next >= 0)
            sym[right->next].prev = (int32_t)c.pos;
        if (left->prev >= 0)
            push_pair(e, (size_t)left->prev);
        if (left->next >= 0)
            push_pair(e, c.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        rk_status st = emit(e, sym[i].id);
        if (st != RK_OK)
            return st;
    }
    return RK_OK;
}

/* The ByteLevel pre-tokenizer on one piece between added tokens. */
static rk_status encode_words(encoder *e, const char *s, size_t n)
{
    const rk_tokenizer *tok = e->tok;
    if (tok->add_prefix_space && s[0] != ' ') {
        e->prefix.len = 0;
        if (!buf_put(&e->prefix, " ", 1) || !buf_put(&e->prefix, s, n))
            return rk_fail(RK_ENOMEM, "rk_tok_encode: out of memory");
        s = e->prefix.p;
        n = e->prefix.len;
    }
    if (!tok->use_regex)
        return encode_piece(e, s, n);
    size_t off = 0;
    while (off < n) {
        int rc = pcre2_match(tok->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return rk_fail(RK_ELIMIT, "rk_tok_encode: splitting the text failed: %s",
                           (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        rk_status st = RK_OK;
        if (ov[0] > off)
            st = encode_piece(e, s + off, ov[0] - off);
        if (st == RK_OK)
            st = encode_piece(e, s + ov[0], ov[1] - ov[0]);
        if (st != RK_OK)
            return st;
        off = ov[1];
    }
    return off < n ? encode_piece(e, s + off, n - off) : RK_OK;
}

/* Leftmost match of SET in S, the longest one at that position: the
 * LeftmostLongest semantics of HF's added-token matcher. */
static const added_token *find_added(const added_set *set, const char *s, size_t n, size_t *at)
{
    if (set->n == 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!set->first[(unsigned char)s[i]])
            continue;
        for (size_t k = 0; k < set->n; k++) {
            const added_token *a = set->tok[k];
            if (a->pattern_len <= n - i && memcmp(s + i, a->pattern, a->pattern_len) == 0) {
                *at = i;
                return a;
            }
        }
    }
    return NULL;
}

typedef rk_status (*piece_fn)(encoder *, const char *, size_t);

/* Emits the added tokens of SET found in S and hands the non-empty pieces
 * between them to FN. */
static rk_status split_added(encoder *e, const added_set *set, const char *s, size_t n, piece_fn fn)
{
    size_t at = 0;
    const added_token *a;
    while (n && (a = find_added(set, s, n, &at))) {
        rk_status st = at ? fn(e, s, at) : RK_OK;
        if (st == RK_OK)
            st = emit(e, a->id);
        if (st != RK_OK)
            return st;
        s += at + a->pattern_len;
        n -= at + a->pattern_len;
    }
    return n ? fn(e, s, n) : RK_OK;
}

static rk_status encode_unnormalized(encoder *e, const char *s, size_t n)
{
    char *norm = NULL;
    size_t len = n;
    if (e->tok->nfc) {
        rk_status st = nfc(s, n, &norm, &len);
        if (st != RK_OK)
            return st;
    }
    rk_status st = split_added(e, &e->tok->norm_set, norm ? norm : s, len, encode_words);
    free(norm);
    return st;
}

rk_status rk_tok_encode(const rk_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                        size_t *n_ids)
{
    if (!tok || !ids || !n_ids || (!text && len))
        return rk_fail(RK_EINVAL, "rk_tok_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    /* Symbol links are 32-bit; a prefix space may add one byte. */
    if (len >= INT32_MAX)
        return rk_fail(RK_ELIMIT, "rk_tok_encode: %zu bytes is more than the 2 GiB supported", len);
    size_t bad = 0;
    if (!utf8_valid(text, len, &bad))
        return rk_fail(RK_EINVAL, "rk_tok_encode: the text is not valid UTF-8 (byte %zu)", bad);
    encoder e = {.tok = tok};
    rk_status st = RK_OK;
    if (tok->use_regex) {
        e.md = pcre2_match_data_create_from_pattern(tok->re, NULL);
        if (!e.md)
            st = rk_fail(RK_ENOMEM, "rk_tok_encode: out of memory");
    }
    if (st == RK_OK)
        st = split_added(&e, &tok->raw_set, text, len, encode_unnormalized);
    /* Hand back a block even for no ids, so success always means non-NULL. */
    if (st == RK_OK && !e.ids && !(e.ids = malloc(sizeof *e.ids)))
        st = rk_fail(RK_ENOMEM, "rk_tok_encode: out of memory");
    pcre2_match_data_free(e.md);
    free(e.sym);
    free(e.heap);
    free(e.word.p);
    free(e.prefix.p);
    if (st != RK_OK) {
        free(e.ids);
        return st;
    }
    *ids = e.ids;
    *n_ids = e.n_ids;
    return RK_OK;
}

/* ------------------------------------------------------------------ */
/* Decoding and lookups                                                */

size_t rk_tok_token_bytes(const rk_tokenizer *tok, int32_t id, const char **bytes)
{
    if (!tok || id < 0 || id >= tok->n_ids) {
        if (bytes)
            *bytes = "";
        return 0;
    }
    if (bytes)
        *bytes = tok->pieces.p ? tok->pieces.p + tok->piece_off[id] : "";
    return tok->piece_len[id];
}

rk_status rk_tok_decode(const rk_tokenizer *tok, const int32_t *ids, size_t n, char **text,
                        size_t *len)
{
    if (!tok || !text || !len || (!ids && n))
        return rk_fail(RK_EINVAL, "rk_tok_decode: NULL argument");
    *text = NULL;
    *len = 0;
    /* Unknown ids are skipped, as HF's decode drops ids it cannot name. */
    byte_buf raw = {0};
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t k = rk_tok_token_bytes(tok, ids[i], &p);
        if (!buf_put(&raw, p, k)) {
            free(raw.p);
            return rk_fail(RK_ENOMEM, "rk_tok_decode: out of memory");
        }
    }
    *text = utf8_lossy(raw.p ? raw.p : "", raw.len, len);
    free(raw.p);
    if (!*text)
        return rk_fail(RK_ENOMEM, "rk_tok_decode: out of memory");
    return RK_OK;
}

int rk_tok_vocab_size(const rk_tokenizer *tok)
{
    return tok ? tok->n_ids : 0;
}

/* Text is tokenized in pieces of about this many bytes. */
enum { TOKENIZE_PIECE = 1 << 16 };

static int printable(char c) { return c > ' ' && c < 0x7f; }

/* Where a piece may end: the first space at or after TOKENIZE_PIECE between
 * two printable ASCII characters ("a b"), or LEN. There the GPT-2 pattern
 * that pre-tokenizes always ends a pre-token and starts the next (" b"),
 * NFC composes nothing across it, and (rk_tok_splits_at_spaces) neither a
 * prefix space nor an added token spans it: the pieces' ids, joined, are
 * the whole text's. */
size_t rk_tok_piece_end(const rk_tokenizer *tok, const char *s, size_t len)
{
    if (!rk_tok_splits_at_spaces(tok) || len <= TOKENIZE_PIECE)
        return len;
    for (size_t j = TOKENIZE_PIECE; j + 1 < len; j++)
        if (s[j] == ' ' && printable(s[j - 1]) && printable(s[j + 1]))
            return j;
    return len;
}

rk_status rk_tok_encode_append(const rk_tokenizer *tok, const char *text, size_t len,
                               size_t at, int32_t **ids, size_t *n, size_t *cap)
{
    int32_t *piece;
    size_t k;
    if (rk_tok_encode(tok, text, len, &piece, &k) != RK_OK)
        return rk_fail(RK_EINVAL, "%s, counting from byte %zu", rk_last_error(), at);
    if (*n + k > *cap) {
        const size_t grown_cap = 2 * (*n + k);
        int32_t *grown = realloc(*ids, grown_cap * sizeof *grown);
        if (!grown) {
            free(piece);
            return rk_fail(RK_ENOMEM, "out of memory for %zu token ids", grown_cap);
        }
        *ids = grown;
        *cap = grown_cap;
    }
    memcpy(*ids + *n, piece, k * sizeof *piece);
    *n += k;
    free(piece);
    return RK_OK;
}

rk_status rk_tok_encode_prefix(const rk_tokenizer *tok, const char *text, size_t len,
                               size_t limit, int32_t **ids, size_t *n)
{
    size_t cap = 0;
    rk_status st = RK_OK;
    *ids = NULL;
    *n = 0;
    for (size_t at = 0; st == RK_OK && at < len && (!limit || *n < limit);) {
        const size_t end = at + rk_tok_piece_end(tok, text + at, len - at);
        st = rk_tok_encode_append(tok, text + at, end - at, at, ids, n, &cap);
        at = end;
    }
    if (st != RK_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return st;
}

bool rk_tok_splits_at_spaces(const rk_tokenizer *tok)
{
    if (!tok->use_regex || tok->add_prefix_space)
        return false;
    /* Runs of spaces (Pythia's added tokens) cannot match across "a b";
     * a token that mixes a space with anything else might. */
    for (size_t i = 0; i < tok->n_added; i++) {
        const added_token *a = &tok->added[i];
        size_t spaces = 0;
        for (size_t j = 0; j < a->pattern_len; j++)
            spaces += a->pattern[j] == ' ';
        if (spaces && spaces != a->pattern_len)
            return false;
    }
    return true;
}

rk_status rk_tok_check_vocab(const rk_tokenizer *tok, int vocab)
{
    if (tok->n_ids > vocab)
        return rk_fail(RK_ECONFIG,
                       "the tokenizer has ids up to %d but the model's vocab_size is %d: "
                       "tokenizer and model do not belong together",
                       tok->n_ids - 1, vocab);
    return RK_OK;
}

int32_t rk_tok_special_id(const rk_tokenizer *tok, const char *content)
{
    if (!tok || !content)
        return -1;
    return str_table_find(&tok->added_by_content, content, strlen(content));
}
