#include "safetensors.h"

#include "textio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation's limit; real headers are tens of KiB. */
#define RK_ST_MAX_HEADER 100000000ull
/* Index files list a few thousand names; beyond this it is not an index. */
#define RK_ST_MAX_INDEX (64u << 20)
/* Checkpoints come in at most a few hundred shards. */
#define RK_ST_MAX_SHARDS 4096
/* Integers in a header arrive as JSON doubles; above 2^53 they are no longer
 * exact, and no real file has offsets or dimensions that large. */
#define RK_ST_MAX_INT 9007199254740992.0

typedef struct {
    rk_tensor t; /* first, so that a tensor handed out is its entry */
    int shard;   /* index into rk_safetensors.labels, for messages */
    uint64_t begin, end; /* data_offsets, within its file's data section */
} rk_st_entry;

typedef struct {
    void *addr;
    size_t len;
} rk_st_map;

struct rk_safetensors {
    rk_st_entry *entries; /* sorted by name once opening finishes */
    int count;
    int cap;
    rk_st_map *maps;
    int nmaps;
    char **labels; /* file names (or "<memory>"), one per parsed image */
    int nlabels;
};

size_t rk_dtype_size(rk_dtype dt)
{
    switch (dt) {
    case RK_F32: return 4;
    case RK_F16: return 2;
    case RK_BF16: return 2;
    case RK_DTYPE_OTHER: return 0;
    }
    return 0;
}

const char *rk_dtype_name(rk_dtype dt)
{
    switch (dt) {
    case RK_F32: return "F32";
    case RK_F16: return "F16";
    case RK_BF16: return "BF16";
    case RK_DTYPE_OTHER: return "OTHER";
    }
    return "OTHER";
}

/* Element widths in bits of every dtype of the safetensors spec; 0 for a
 * name outside it. The runtime computes only with F32, F16 and BF16, but
 * knowing the others keeps the size check and the tiling of the data section
 * exact for the buffers checkpoints carry (BOOL attention masks). */
static unsigned spec_dtype_bits(const char *name)
{
    static const struct {
        const char *name;
        unsigned bits;
    } spec[] = {
        {"BOOL", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8}, {"I8", 8},
        {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16}, {"U16", 16},
        {"F16", 16}, {"BF16", 16}, {"I32", 32}, {"U32", 32}, {"F32", 32}, {"C64", 64},
        {"F64", 64}, {"I64", 64}, {"U64", 64},
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++)
        if (strcmp(name, spec[i].name) == 0)
            return spec[i].bits;
    return 0;
}

float rk_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    float f;

    if (exp == 0) {
        /* Zero and subnormals are exactly mant * 2^-24, representable in float. */
        f = (float)mant * 0x1p-24f;
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    memcpy(&f, &bits, sizeof f);
    return f;
}

float rk_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t rk_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t mant = x & 0x7fffff;
    int e = (int)exp - 127 + 15;

    if (exp == 0xff) /* keep NaNs NaN (and quiet) even when the payload is in the low bits */
        return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 | (mant >> 13) : 0));
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        /* Half subnormal: the value is M * 2^(e-14) with the implicit bit
         * restored; below 2^-25 (shift > 24) even ties round to zero. */
        uint32_t m = mant | 0x800000;
        int shift = 14 - e;
        uint32_t k, rem, half;
        if (shift > 24)
            return sign;
        k = m >> shift;
        rem = m & ((1u << shift) - 1);
        half = 1u << (shift - 1);
        if (rem > half || (rem == half && (k & 1)))
            k++; /* may carry into the smallest normal, which is the right answer */
        return (uint16_t)(sign | k);
    }
    {
        uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
        uint32_t rem = mant & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
            h++; /* a carry out of the mantissa bumps the exponent, up to inf */
        return (uint16_t)(sign | h);
    }
}

/* Elements scanned between two looks at the flag: no early exit inside a
 * block, so compilers vectorize the scan; the whole checkpoint passes
 * through it at load. */
#define RK_ST_SCAN_BLOCK 4096

/* Index of the first of the N 2-byte elements at P whose bits under EXP
 * (the exponent field) are all set, which is NaN or infinity; N if none. */
static size_t first_nonfinite16(const unsigned char *p, size_t n, uint16_t exp)
{
    for (size_t b = 0; b < n; b += RK_ST_SCAN_BLOCK) {
        const size_t m = n - b < RK_ST_SCAN_BLOCK ? n - b : RK_ST_SCAN_BLOCK;
        unsigned bad = 0;
        for (size_t i = 0; i < m; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * (b + i), 2);
            bad |= (h & exp) == exp;
        }
        for (size_t i = 0; bad && i < m; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * (b + i), 2);
            if ((h & exp) == exp)
                return b + i;
        }
    }
    return n;
}

static size_t first_nonfinite32(const unsigned char *p, size_t n)
{
    const uint32_t exp = 0x7f800000u;
    for (size_t b = 0; b < n; b += RK_ST_SCAN_BLOCK) {
        const size_t m = n - b < RK_ST_SCAN_BLOCK ? n - b : RK_ST_SCAN_BLOCK;
        unsigned bad = 0;
        for (size_t i = 0; i < m; i++) {
            uint32_t x;
            memcpy(&x, p + 4 * (b + i), 4);
            bad |= (x & exp) == exp;
        }
        for (size_t i = 0; bad && i < m; i++) {
            uint32_t x;
            memcpy(&x, p + 4 * (b + i), 4);
            if ((x & exp) == exp)
                return b + i;
        }
    }
    return n;
}

float rk_tensor_value(const rk_tensor *t, size_t i)
{
    const unsigned char *p = t->data;
    uint16_t h;
    float f;
    if (t->dtype == RK_F32) {
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    memcpy(&h, p + 2 * i, 2);
    return t->dtype == RK_F16 ? rk_f16_to_f32(h) : rk_bf16_to_f32(h);
}

/* "[i, j] of [m, n]": where flat index I, of an element T has (so no
 * dimension is 0), lies in T's shape. */
static void place(const rk_tensor *t, size_t i, char *buf, size_t len)
{
    char at[RK_MAX_DIMS * 24] = "", of[RK_MAX_DIMS * 24] = "";
    size_t a = 0, o = 0;
    int64_t index[RK_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        index[d] = (int64_t)(i % (size_t)t->shape[d]);
        i /= (size_t)t->shape[d];
    }
    for (int d = 0; d < t->ndim; d++) {
        a += (size_t)snprintf(at + a, sizeof at - a, "%s%lld", d ? ", " : "", (long long)index[d]);
        o += (size_t)snprintf(of + o, sizeof of - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    }
    snprintf(buf, len, "[%s] of [%s]", at, of);
}

rk_status rk_st_check_finite(const rk_safetensors *st, const rk_tensor *t)
{
    const rk_st_entry *e = (const rk_st_entry *)t;
    size_t n, bad;
    char where[RK_MAX_DIMS * 48 + 8];
    float f;

    if (t->dtype == RK_DTYPE_OTHER)
        return rk_fail(RK_EDTYPE, "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are checked for "
                       "finite values", st->labels[e->shard], t->name, t->dtype_name);
    n = t->nbytes / rk_dtype_size(t->dtype);
    bad = t->dtype == RK_F32 ? first_nonfinite32(t->data, n)
                             : first_nonfinite16(t->data, n, t->dtype == RK_F16 ? 0x7c00 : 0x7f80);
    if (bad == n)
        return RK_OK;
    f = rk_tensor_value(t, bad);
    place(t, bad, where, sizeof where);
    return rk_fail(RK_EFORMAT,
                   "%s: tensor '%s' holds %s at element %zu (%s); a checkpoint with non-finite "
                   "weights is damaged, or was saved after its training diverged",
                   st->labels[e->shard], t->name, isnan(f) ? "NaN" : f > 0 ? "+Inf" : "-Inf", bad, where);
}

static rk_status add_label(rk_safetensors *st, const char *label, int *index)
{
    char **labels = realloc(st->labels, (size_t)(st->nlabels + 1) * sizeof *labels);
    if (!labels)
        return rk_fail(RK_ENOMEM, "out of memory opening %s", label);
    st->labels = labels;
    labels[st->nlabels] = strdup(label);
    if (!labels[st->nlabels])
        return rk_fail(RK_ENOMEM, "out of memory opening %s", label);
    *index = st->nlabels++;
    return RK_OK;
}

/* A JSON value as a message shows it: numbers as written, others by kind. */
static const char *brief(const cJSON *v, char *buf, size_t n)
{
    if (cJSON_IsNumber(v))
        snprintf(buf, n, "%.17g", v->valuedouble);
    else
        snprintf(buf, n, "%s", cJSON_IsString(v) ? "a string" : cJSON_IsArray(v) ? "an array"
                               : cJSON_IsObject(v) ? "an object" : cJSON_IsBool(v) ? "a boolean" : "null");
    return buf;
}

/* True when V is a JSON number holding an integer in [0, 2^53]. */
static int header_uint(const cJSON *v, uint64_t *out)
{
    double d;
    if (!cJSON_IsNumber(v))
        return 0;
    d = v->valuedouble;
    if (!isfinite(d) || d < 0.0 || d > RK_ST_MAX_INT || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

/* The dtype of entry V: one of the spec's, whose width in bits goes to *BITS. */
static rk_status parse_dtype(rk_st_entry *e, const cJSON *dtype, const char *label, unsigned *bits)
{
    const char *name = e->t.name;
    if (!dtype)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s' has no dtype", label, name);
    if (!cJSON_IsString(dtype))
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': dtype is not a string (expected e.g. \"F16\")", label, name);
    *bits = strlen(dtype->valuestring) < sizeof e->t.dtype_name ? spec_dtype_bits(dtype->valuestring) : 0;
    /* An unknown dtype has no known size, so its byte range could not be
     * checked: refused, as the reference implementation does. */
    if (!*bits)
        return rk_fail(RK_EDTYPE,
                       "%s: tensor '%s': dtype '%.20s' is not a safetensors dtype (BOOL, U8, I8, I16, U16, "
                       "F16, BF16, I32, U32, F32, F64, I64, U64, C64, F4, F6_E2M3, F6_E3M2, F8_E4M3, "
                       "F8_E5M2, F8_E8M0)",
                       label, name, dtype->valuestring);
    strcpy(e->t.dtype_name, dtype->valuestring);
    if (strcmp(dtype->valuestring, "F32") == 0)
        e->t.dtype = RK_F32;
    else if (strcmp(dtype->valuestring, "F16") == 0)
        e->t.dtype = RK_F16;
    else if (strcmp(dtype->valuestring, "BF16") == 0)
        e->t.dtype = RK_BF16;
    else
        e->t.dtype = RK_DTYPE_OTHER;
    return RK_OK;
}

/* The shape of entry V into E; its element count into *ELEMS. */
static rk_status parse_shape(rk_st_entry *e, const cJSON *shape, const char *label, uint64_t *elems)
{
    const char *name = e->t.name;
    const cJSON *d;
    int n;
    if (!shape)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s' has no shape", label, name);
    if (!cJSON_IsArray(shape))
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': shape is not an array of integers", label, name);
    n = cJSON_GetArraySize(shape);
    if (n > RK_MAX_DIMS)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': shape has %d dimensions; at most %d are supported",
                       label, name, n, RK_MAX_DIMS);
    *elems = 1;
    e->t.ndim = 0;
    cJSON_ArrayForEach(d, shape) {
        uint64_t dim;
        if (!header_uint(d, &dim)) {
            char got[48];
            return rk_fail(RK_EFORMAT, "%s: tensor '%s': shape entry %d is %s; expected a non-negative integer",
                           label, name, e->t.ndim, brief(d, got, sizeof got));
        }
        e->t.shape[e->t.ndim++] = (int64_t)dim;
        if (__builtin_mul_overflow(*elems, dim, elems))
            return rk_fail(RK_EFORMAT, "%s: tensor '%s': shape element count overflows", label, name);
    }
    return RK_OK;
}

static rk_status parse_offsets(rk_st_entry *e, const cJSON *offs, const char *label, uint64_t dlen)
{
    const char *name = e->t.name;
    if (!offs)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s' has no data_offsets", label, name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !header_uint(cJSON_GetArrayItem(offs, 0), &e->begin) || !header_uint(cJSON_GetArrayItem(offs, 1), &e->end))
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': data_offsets is not [begin, end] with non-negative integers",
                       label, name);
    if (e->begin > e->end)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                       label, name, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > dlen)
        return rk_fail(RK_EFORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] run past the data buffer (%llu bytes)",
                       label, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)dlen);
    e->t.nbytes = (size_t)(e->end - e->begin);
    return RK_OK;
}

/* ELEMS elements of BITS bits each must fill the byte range exactly. */
static rk_status check_size(const rk_st_entry *e, uint64_t elems, unsigned bits, const char *label)
{
    char dims[RK_MAX_DIMS * 24 + 4];
    size_t at = 0;
    uint64_t total;
    const int overflows = __builtin_mul_overflow(elems, (uint64_t)bits, &total);

    if (!overflows && total % 8 != 0)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': %llu elements of %s are %llu bits, not a whole number of bytes",
                       label, e->t.name, (unsigned long long)elems, e->t.dtype_name, (unsigned long long)total);
    if (!overflows && total / 8 == e->t.nbytes)
        return RK_OK;
    dims[at++] = '[';
    for (int i = 0; i < e->t.ndim; i++)
        at += (size_t)snprintf(dims + at, sizeof dims - at, "%s%lld", i ? ", " : "", (long long)e->t.shape[i]);
    snprintf(dims + at, sizeof dims - at, "]");
    return rk_fail(RK_EFORMAT,
                   "%s: tensor '%s': data_offsets span %zu bytes but shape %s of %s needs %llu elements x %u bits",
                   label, e->t.name, e->t.nbytes, dims, e->t.dtype_name, (unsigned long long)elems, bits);
}

static rk_status parse_entry(rk_st_entry *e, const cJSON *v, const char *label,
                             const unsigned char *data, uint64_t dlen)
{
    const char *name = v->string;
    uint64_t elems = 1;
    unsigned bits = 0;
    rk_status st;

    memset(e, 0, sizeof *e);
    if (strlen(name) >= RK_MAX_NAME)
        return rk_fail(RK_EFORMAT, "%s: tensor name '%.60s...' is %zu bytes; at most %d are supported",
                       label, name, strlen(name), RK_MAX_NAME - 1);
    if (!cJSON_IsObject(v))
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': entry is not an object with dtype, shape and data_offsets",
                       label, name);
    strcpy(e->t.name, name);
    if ((st = parse_dtype(e, cJSON_GetObjectItemCaseSensitive(v, "dtype"), label, &bits)) != RK_OK ||
        (st = parse_shape(e, cJSON_GetObjectItemCaseSensitive(v, "shape"), label, &elems)) != RK_OK ||
        (st = parse_offsets(e, cJSON_GetObjectItemCaseSensitive(v, "data_offsets"), label, dlen)) != RK_OK ||
        (st = check_size(e, elems, bits, label)) != RK_OK)
        return st;
    /* Tensors may start at any byte offset, so DATA is not aligned for its
     * element type; readers copy elements out with memcpy. */
    e->t.data = e->t.dtype == RK_DTYPE_OTHER ? NULL : data + e->begin;
    return RK_OK;
}

/* The offset of the first byte of S[0..n) that is not part of well-formed
 * UTF-8 (overlong forms, surrogates and code points past U+10FFFF are not),
 * or N. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                   : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        /* The second byte's range is what rules out overlongs, surrogates
         * and values past U+10FFFF. */
        unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (!len || len > n - i)
            return i;
        for (size_t k = 1; k < len; k++)
            if (s[i + k] < (k == 1 ? lo : 0x80) || s[i + k] > (k == 1 ? hi : 0xbf))
                return i;
        i += len;
    }
    return n;
}

/* The header length stored in the first 8 bytes, checked against the image. */
static rk_status header_length(const unsigned char *img, size_t len, const char *label, uint64_t *hlen)
{
    *hlen = 0;
    if (len < 8)
        return rk_fail(RK_EFORMAT, "%s: truncated: %zu bytes, but a safetensors file starts with an 8-byte header length",
                       label, len);
    for (int i = 0; i < 8; i++)
        *hlen |= (uint64_t)img[i] << (8 * i);
    if (*hlen > RK_ST_MAX_HEADER)
        return rk_fail(RK_EFORMAT, "%s: header length %llu is absurd (limit %llu); not a safetensors file?",
                       label, (unsigned long long)*hlen, RK_ST_MAX_HEADER);
    if (*hlen > len - 8)
        return rk_fail(RK_EFORMAT, "%s: header length %llu is larger than the %zu bytes that follow it (truncated?)",
                       label, (unsigned long long)*hlen, len - 8);
    return RK_OK;
}

/* The header as JSON: UTF-8 text of one object, padded with whitespace. */
static rk_status parse_header(const unsigned char *header, uint64_t hlen, const char *label, cJSON **root)
{
    const size_t bad = utf8_invalid_at(header, (size_t)hlen);
    const char *end = NULL;
    char *text;

    *root = NULL;
    if (bad != hlen)
        return rk_fail(RK_EFORMAT, "%s: header is not valid UTF-8 (at header byte %zu)", label, bad);
    if (hlen && header[0] != '{')
        return rk_fail(RK_EFORMAT, "%s: header does not start with '{': not a JSON object of tensors", label);
    /* A terminated private copy keeps cJSON (not built with our sanitizers)
     * from reading past the header or the end of a mapping. */
    text = malloc((size_t)hlen + 1);
    if (!text)
        return rk_fail(RK_ENOMEM, "%s: out of memory copying a %llu-byte header", label, (unsigned long long)hlen);
    memcpy(text, header, (size_t)hlen);
    text[hlen] = '\0';
    *root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
    if (!*root) {
        size_t at = end ? (size_t)(end - text) : 0;
        free(text);
        return rk_fail(RK_EFORMAT, "%s: header is not valid JSON (error near header byte %zu)", label, at);
    }
    /* Writers pad the header with spaces to align the data buffer. */
    while (end < text + hlen && *end != '\0' && strchr(" \t\r\n", *end))
        end++;
    const size_t at = (size_t)(end - text);
    free(text);
    if (at != hlen)
        return rk_fail(RK_EFORMAT, "%s: header has stray bytes after the JSON (at header byte %zu)", label, at);
    if (!cJSON_IsObject(*root))
        return rk_fail(RK_EFORMAT, "%s: header is not a JSON object of tensors", label);
    return RK_OK;
}

/* Appends the tensor entries of the header ROOT. */
static rk_status add_entries(rk_safetensors *st, const cJSON *root, const char *label, int shard,
                             const unsigned char *data, uint64_t dlen)
{
    const int n = cJSON_GetArraySize(root);
    const cJSON *v;
    rk_status status;

    if (n > INT_MAX - st->count)
        return rk_fail(RK_ELIMIT, "%s: too many tensors", label);
    if (st->count + n > st->cap) {
        rk_st_entry *grown = realloc(st->entries, (size_t)(st->count + n) * sizeof *grown);
        if (!grown)
            return rk_fail(RK_ENOMEM, "%s: out of memory for %d tensor entries", label, n);
        st->entries = grown;
        st->cap = st->count + n;
    }
    cJSON_ArrayForEach(v, root) {
        if (!v->string)
            return rk_fail(RK_EFORMAT, "%s: header entry without a name", label);
        if (strcmp(v->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(v))
                return rk_fail(RK_EFORMAT, "%s: __metadata__ is not an object", label);
            continue;
        }
        if ((status = parse_entry(&st->entries[st->count], v, label, data, dlen)) != RK_OK)
            return status;
        st->entries[st->count++].shard = shard;
    }
    return RK_OK;
}

static int by_offsets(const void *a, const void *b)
{
    const rk_st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The tensors E[0..n) of one file, sorted by offset, must cover its DLEN
 * data bytes exactly: a gap, an overlap or bytes after the last tensor mean
 * a header that does not describe its data (a header length off by one
 * shifts every tensor and leaves one byte over). */
static rk_status check_tiling(rk_st_entry *e, int n, const char *label, uint64_t dlen)
{
    uint64_t at = 0;
    if (n > 1)
        qsort(e, (size_t)n, sizeof *e, by_offsets);
    for (int i = 0; i < n; i++) {
        if (e[i].begin != at && i == 0)
            return rk_fail(RK_EFORMAT,
                           "%s: tensor '%s' starts at data byte %llu, but the data section starts at 0 "
                           "(the tensors must cover it exactly)",
                           label, e[i].t.name, (unsigned long long)e[i].begin);
        if (e[i].begin != at)
            return rk_fail(RK_EFORMAT,
                           "%s: tensor '%s' starts at data byte %llu, but the previous tensor '%s' ends at "
                           "%llu (the tensors must cover the data section without %s)",
                           label, e[i].t.name, (unsigned long long)e[i].begin, e[i - 1].t.name,
                           (unsigned long long)at, e[i].begin > at ? "gaps" : "overlapping");
        at = e[i].end;
    }
    if (at != dlen)
        return rk_fail(RK_EFORMAT,
                       "%s: %llu byte%s after the last tensor (the data section is %llu bytes, the tensors "
                       "end at %llu): the header length or data_offsets are wrong",
                       label, (unsigned long long)(dlen - at), dlen - at == 1 ? "" : "s",
                       (unsigned long long)dlen, (unsigned long long)at);
    return RK_OK;
}

/* Parses one whole file image and appends its tensors. LABEL names the file
 * in messages; SHARD is its index in st->labels. */
static rk_status parse_image(rk_safetensors *st, const unsigned char *img, size_t len,
                             const char *label, int shard)
{
    const int first = st->count;
    uint64_t hlen;
    cJSON *root = NULL;
    rk_status status;

    if ((status = header_length(img, len, label, &hlen)) == RK_OK &&
        (status = parse_header(img + 8, hlen, label, &root)) == RK_OK &&
        (status = add_entries(st, root, label, shard, img + 8 + hlen, len - 8 - hlen)) == RK_OK)
        status = check_tiling(st->entries + first, st->count - first, label, len - 8 - hlen);
    cJSON_Delete(root);
    return status;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const rk_st_entry *)a)->t.name, ((const rk_st_entry *)b)->t.name);
}

/* Sorts the table for binary search; adjacent equal names are duplicates,
 * within one header or across shards. */
static rk_status finish(rk_safetensors *st)
{
    if (st->count > 1)
        qsort(st->entries, (size_t)st->count, sizeof *st->entries, entry_cmp);
    for (int i = 1; i < st->count; i++) {
        const rk_st_entry *a = &st->entries[i - 1], *b = &st->entries[i];
        if (strcmp(a->t.name, b->t.name) != 0)
            continue;
        if (a->shard == b->shard)
            return rk_fail(RK_EFORMAT, "%s: tensor '%s' appears twice in the header",
                           st->labels[a->shard], a->t.name);
        return rk_fail(RK_EFORMAT, "tensor '%s' appears in both %s and %s", a->t.name,
                       st->labels[a->shard], st->labels[b->shard]);
    }
    return RK_OK;
}

static rk_status map_file(rk_safetensors *st, const char *path, const unsigned char **img, size_t *len)
{
    int fd;
    size_t size;
    rk_status status = rk_open_regular(path, &fd, &size);
    if (status != RK_OK)
        return status;
    if (size < 8) {
        close(fd);
        return rk_fail(RK_EFORMAT, "%s: truncated: %zu bytes, but a safetensors file starts with an 8-byte header length",
                       path, size);
    }
    rk_st_map *maps = realloc(st->maps, (size_t)(st->nmaps + 1) * sizeof *maps);
    if (!maps) {
        close(fd);
        return rk_fail(RK_ENOMEM, "out of memory opening %s", path);
    }
    st->maps = maps;
    void *addr = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (addr == MAP_FAILED)
        return rk_fail(RK_EIO, "cannot map %s: %s", path, strerror(errno));
    maps[st->nmaps].addr = addr;
    maps[st->nmaps].len = size;
    st->nmaps++;
    *img = addr;
    *len = size;
    return RK_OK;
}

static rk_status open_file(rk_safetensors *st, const char *path)
{
    const unsigned char *img = NULL;
    size_t len = 0;
    int shard = 0;
    rk_status status;

    if ((status = add_label(st, path, &shard)) != RK_OK || (status = map_file(st, path, &img, &len)) != RK_OK)
        return status;
    return parse_image(st, img, len, path, shard);
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Shard names come from the index file; keep them inside its directory. */
static int safe_shard_name(const char *s)
{
    const char *p = s;
    if (!*s || *s == '/')
        return 0;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return 1;
}

static const rk_st_entry *find_entry(const rk_safetensors *st, const char *name)
{
    int lo = 0, hi = st->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->entries[mid].t.name);
        if (c == 0)
            return &st->entries[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

static rk_status open_index(rk_safetensors *st, const char *path)
{
    char *text = NULL, *dir = NULL, *slash;
    const char **shards = NULL;
    int nshards = 0;
    size_t len = 0;
    cJSON *root = NULL;
    const cJSON *map, *v;
    rk_status status;

    if ((status = rk_read_file(path, RK_ST_MAX_INDEX, &text, &len)) != RK_OK)
        return status;
    root = cJSON_ParseWithLength(text, len);
    if (!root) {
        status = rk_fail(RK_EFORMAT, "%s: not valid JSON", path);
        goto out;
    }
    map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !map) {
        status = rk_fail(RK_EFORMAT, "%s: no weight_map; expected {\"weight_map\": {tensor: shard file}}", path);
        goto out;
    }
    if (!cJSON_IsObject(map) || !map->child) {
        status = rk_fail(RK_EFORMAT, "%s: weight_map is not a non-empty object of tensor: shard file", path);
        goto out;
    }

    dir = strdup(path);
    if (!dir) {
        status = rk_fail(RK_ENOMEM, "out of memory opening %s", path);
        goto out;
    }
    slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");

    cJSON_ArrayForEach(v, map) {
        int known = 0;
        if (!cJSON_IsString(v) || !safe_shard_name(v->valuestring)) {
            status = rk_fail(RK_EFORMAT, "%s: weight_map entry for '%.100s' is not a shard file name in this directory",
                             path, v->string ? v->string : "");
            goto out;
        }
        for (int i = 0; i < nshards && !known; i++)
            known = strcmp(shards[i], v->valuestring) == 0;
        if (!known && nshards == RK_ST_MAX_SHARDS) {
            status = rk_fail(RK_ELIMIT, "%s: weight_map names more than %d shard files", path, RK_ST_MAX_SHARDS);
            goto out;
        }
        if (!known) {
            const char **grown = realloc(shards, (size_t)(nshards + 1) * sizeof *grown);
            if (!grown) {
                status = rk_fail(RK_ENOMEM, "out of memory opening %s", path);
                goto out;
            }
            shards = grown;
            shards[nshards++] = v->valuestring;
        }
    }

    for (int i = 0; i < nshards; i++) {
        char *file = join_path(dir, shards[i]);
        if (!file) {
            status = rk_fail(RK_ENOMEM, "out of memory opening %s", path);
            goto out;
        }
        status = open_file(st, file);
        free(file);
        if (status != RK_OK)
            goto out;
    }
    if ((status = finish(st)) != RK_OK)
        goto out;

    /* Labels were added in shard order, so shard i has label i. */
    cJSON_ArrayForEach(v, map) {
        const rk_st_entry *e = find_entry(st, v->string);
        int want = 0;
        while (strcmp(shards[want], v->valuestring) != 0)
            want++;
        if (!e) {
            status = rk_fail(RK_EMISSING, "%s: tensor '%.200s' is listed in %s but is not in that shard",
                             path, v->string, st->labels[want]);
            goto out;
        }
        if (e->shard != want) {
            status = rk_fail(RK_EFORMAT, "%s: tensor '%.200s' is listed in %s but found in %s",
                             path, v->string, st->labels[want], st->labels[e->shard]);
            goto out;
        }
    }
out:
    free(shards);
    free(dir);
    cJSON_Delete(root);
    free(text);
    return status;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static rk_status open_path(rk_safetensors *st, const char *path)
{
    struct stat sb;
    rk_status status;

    if (stat(path, &sb) != 0)
        return rk_fail(RK_EIO, "cannot open %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        char *index = join_path(path, "model.safetensors.index.json");
        char *single = join_path(path, "model.safetensors");
        if (!index || !single)
            status = rk_fail(RK_ENOMEM, "out of memory opening %s", path);
        else if (access(index, F_OK) == 0)
            status = open_index(st, index);
        else if (access(single, F_OK) == 0) {
            if ((status = open_file(st, single)) == RK_OK)
                status = finish(st);
        }
        else
            status = rk_fail(RK_EIO, "%s holds neither model.safetensors.index.json nor model.safetensors", path);
        free(index);
        free(single);
        return status;
    }
    if (ends_with(path, ".json"))
        return open_index(st, path);
    if ((status = open_file(st, path)) != RK_OK)
        return status;
    return finish(st);
}

rk_status rk_st_open(const char *path, rk_safetensors **out)
{
    rk_safetensors *st;
    rk_status status;

    if (!path || !out)
        return rk_fail(RK_EINVAL, "rk_st_open: NULL argument");
    *out = NULL;
    st = calloc(1, sizeof *st);
    if (!st)
        return rk_fail(RK_ENOMEM, "out of memory opening %s", path);
    status = open_path(st, path);
    if (status != RK_OK) {
        rk_st_close(st);
        return status;
    }
    *out = st;
    return RK_OK;
}

rk_status rk_st_open_memory(const void *image, size_t len, rk_safetensors **out)
{
    rk_safetensors *st;
    rk_status status;
    int shard = 0;

    if (!out || (!image && len))
        return rk_fail(RK_EINVAL, "rk_st_open_memory: NULL argument");
    *out = NULL;
    st = calloc(1, sizeof *st);
    if (!st)
        return rk_fail(RK_ENOMEM, "out of memory parsing a safetensors image");
    if ((status = add_label(st, "<memory>", &shard)) != RK_OK ||
        (status = parse_image(st, image, len, "<memory>", shard)) != RK_OK ||
        (status = finish(st)) != RK_OK) {
        rk_st_close(st);
        return status;
    }
    *out = st;
    return RK_OK;
}

void rk_st_close(rk_safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->nmaps; i++)
        munmap(st->maps[i].addr, st->maps[i].len);
    for (int i = 0; i < st->nlabels; i++)
        free(st->labels[i]);
    free(st->labels);
    free(st->maps);
    free(st->entries);
    free(st);
}

int rk_st_count(const rk_safetensors *st) { return st ? st->count : 0; }

const rk_tensor *rk_st_at(const rk_safetensors *st, int i)
{
    if (!st || i < 0 || i >= st->count)
        return NULL;
    return &st->entries[i].t;
}

const rk_tensor *rk_st_find(const rk_safetensors *st, const char *name)
{
    const rk_st_entry *e;
    if (!st || !name)
        return NULL;
    e = find_entry(st, name);
    return e ? &e->t : NULL;
}
