/* safetensors reading: the committed pythia-nano checkpoint, synthetic
 * images for every kind of malformed header, sharded checkpoints in a temp
 * directory, and the half-precision conversions. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rk_test.h"
#include "safetensors.h"
#include "textio.h"

/* A whole file image: 8-byte little-endian CLAIMED header length, the header
 * text, then DATA_LEN bytes counting up from 0. */
static unsigned char *image_claiming(uint64_t claimed, const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    unsigned char *img = malloc(8 + h + data_len + 1);
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)(claimed >> (8 * i));
    memcpy(img + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        img[8 + h + i] = (unsigned char)i;
    *len = 8 + h + data_len;
    return img;
}

static unsigned char *image(const char *header, size_t data_len, size_t *len)
{
    return image_claiming(strlen(header), header, data_len, len);
}

static void refused_image(const unsigned char *img, size_t len, const char *want, const char *what)
{
    rk_safetensors *st = (rk_safetensors *)1;
    rk_status status = rk_st_open_memory(img, len, &st);
    CHECKF(status != RK_OK, "%s: accepted", what);
    CHECKF(st == NULL, "%s: out set on failure", what);
    CHECKF(strstr(rk_last_error(), want) != NULL, "%s: message \"%s\" lacks \"%s\"", what, rk_last_error(), want);
    if (status == RK_OK)
        rk_st_close(st);
}

static void refused(const char *header, size_t data_len, const char *want)
{
    size_t len;
    unsigned char *img = image(header, data_len, &len);
    refused_image(img, len, want, header);
    free(img);
}

static void test_nano(void)
{
    rk_safetensors *st = NULL;
    const rk_tensor *t;
    rk_status status = rk_st_open(RK_MODELS_DIR "/pythia-nano/model.safetensors", &st);
    int finite = 1, sorted = 1, found = 1;

    CHECKF(status == RK_OK, "nano: %s", rk_last_error());
    if (status != RK_OK)
        return;
    /* 4 layers x 12 + 4: the header's 53 entries less __metadata__. */
    CHECKF(rk_st_count(st) == 52, "count %d", rk_st_count(st));
    t = rk_st_find(st, "embed_out.weight");
    CHECK(t != NULL);
    if (t) {
        CHECK(t->dtype == RK_F16 && strcmp(t->dtype_name, "F16") == 0);
        CHECK(t->ndim == 2 && t->shape[0] == 8192 && t->shape[1] == 160);
        CHECK(t->nbytes == (size_t)8192 * 160 * 2);
        CHECK(t->data != NULL);
        for (size_t i = 0; t->data && i < t->nbytes / 2; i++) {
            uint16_t h;
            memcpy(&h, (const unsigned char *)t->data + 2 * i, 2);
            finite &= isfinite(rk_f16_to_f32(h)) != 0;
        }
        CHECK(finite);
    }
    t = rk_st_find(st, "gpt_neox.layers.3.mlp.dense_4h_to_h.weight");
    CHECK(t && t->ndim == 2 && t->shape[0] == 160 && t->shape[1] == 640);
    CHECK(rk_st_find(st, "gpt_neox.layers.4.mlp.dense_4h_to_h.weight") == NULL);
    CHECK(rk_st_find(st, "") == NULL);
    CHECK(rk_st_at(st, -1) == NULL && rk_st_at(st, 52) == NULL);
    for (int i = 0; i < rk_st_count(st); i++) {
        t = rk_st_at(st, i);
        found &= rk_st_find(st, t->name) == t;
        if (i > 0)
            sorted &= strcmp(rk_st_at(st, i - 1)->name, t->name) < 0;
    }
    CHECK(found && sorted);
    rk_st_close(st);

    /* The directory form finds model.safetensors. */
    status = rk_st_open(RK_MODELS_DIR "/pythia-nano", &st);
    CHECKF(status == RK_OK && rk_st_count(st) == 52, "nano dir: %s", rk_last_error());
    if (status == RK_OK)
        rk_st_close(st);
}

static void test_synthetic_good(void)
{
    /* Padded with spaces as writers do; tensors at odd offsets, listed out of
     * offset order; a BOOL buffer like Pythia's attention.bias; a scalar; an
     * empty tensor; sub-byte and complex dtypes of the spec, kept as OTHER. */
    const char *header =
        "{\"__metadata__\": {\"format\": \"pt\"},"
        " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [12, 20]},"
        " \"a\": {\"dtype\": \"F16\", \"shape\": [2, 3], \"data_offsets\": [0, 12]},"
        " \"mask\": {\"dtype\": \"BOOL\", \"shape\": [1, 1, 2, 2], \"data_offsets\": [20, 24]},"
        " \"s\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [24, 26]},"
        " \"z\": {\"dtype\": \"F32\", \"shape\": [0, 7], \"data_offsets\": [26, 26]},"
        " \"q\": {\"dtype\": \"F4\", \"shape\": [4], \"data_offsets\": [26, 28]},"
        " \"c\": {\"dtype\": \"C64\", \"shape\": [1], \"data_offsets\": [28, 36]}}   ";
    size_t len, h = strlen(header);
    unsigned char *img = image(header, 36, &len);
    rk_safetensors *st = NULL;
    const rk_tensor *t;
    rk_status status = rk_st_open_memory(img, len, &st);

    CHECKF(status == RK_OK, "synthetic: %s", rk_last_error());
    if (status == RK_OK) {
        CHECK(rk_st_count(st) == 7);
        CHECK(rk_st_find(st, "__metadata__") == NULL);
        t = rk_st_find(st, "a");
        CHECK(t && t->dtype == RK_F16 && t->ndim == 2 && t->shape[1] == 3 && t->nbytes == 12 &&
              t->data == img + 8 + h);
        t = rk_st_find(st, "b");
        CHECK(t && t->dtype == RK_F32 && t->data == img + 8 + h + 12 && t->nbytes == 8);
        t = rk_st_find(st, "mask");
        CHECK(t && t->dtype == RK_DTYPE_OTHER && strcmp(t->dtype_name, "BOOL") == 0 && t->data == NULL &&
              t->ndim == 4 && t->nbytes == 4);
        t = rk_st_find(st, "s");
        CHECK(t && t->dtype == RK_BF16 && t->ndim == 0 && t->nbytes == 2);
        t = rk_st_find(st, "z");
        CHECK(t && t->nbytes == 0 && t->shape[0] == 0 && t->shape[1] == 7);
        t = rk_st_find(st, "q");
        CHECK(t && t->dtype == RK_DTYPE_OTHER && strcmp(t->dtype_name, "F4") == 0 && t->nbytes == 2);
        t = rk_st_find(st, "c");
        CHECK(t && t->dtype == RK_DTYPE_OTHER && strcmp(t->dtype_name, "C64") == 0 && t->nbytes == 8);
        rk_st_close(st);
    }
    free(img);

    img = image("{}", 0, &len);
    CHECK(rk_st_open_memory(img, len, &st) == RK_OK && rk_st_count(st) == 0);
    rk_st_close(st);
    free(img);

    /* Every dtype of the safetensors spec is accepted. */
    {
        const char *spec[] = {"BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "F8_E8M0", "I16", "U16",
                              "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64", "C64",
                              "F4", "F6_E2M3", "F6_E3M2"};
        const int bits[] = {8, 8, 8, 8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64, 4, 6, 6};
        char one[160];
        for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
            snprintf(one, sizeof one, "{\"t\": {\"dtype\": \"%s\", \"shape\": [8], \"data_offsets\": [0, %d]}}",
                     spec[i], bits[i]);
            img = image(one, (size_t)bits[i], &len);
            CHECKF(rk_st_open_memory(img, len, &st) == RK_OK, "%s: %s", spec[i], rk_last_error());
            rk_st_close(st);
            free(img);
        }
    }
}

/* The bundled checkpoint with its header length one short: the header's
 * padding hides that from the JSON parser, and every tensor would then start
 * one byte early, reading the wrong bytes as weights. */
static void refused_header_one_short(void)
{
    char *img = NULL;
    size_t len = 0;
    uint64_t hlen = 0;

    CHECK(rk_read_file(RK_MODELS_DIR "/pythia-nano/model.safetensors", SIZE_MAX, &img, &len) == RK_OK);
    if (!img)
        return;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)(unsigned char)img[i] << (8 * i);
    CHECK(img[8 + hlen - 1] == ' ');
    hlen--;
    for (int i = 0; i < 8; i++)
        img[i] = (char)(hlen >> (8 * i));
    refused_image((const unsigned char *)img, len, "1 byte after the last tensor", "nano, header length - 1");
    free(img);
}

static void test_synthetic_bad(void)
{
    char name[300], header[600];
    size_t len;
    unsigned char *img;
    unsigned char tiny[7] = {2, 0, 0, 0, 0, 0, 0};

    refused_image(tiny, 0, "truncated", "empty");
    refused_image(tiny, 7, "truncated", "7 bytes");

    img = image_claiming(100, "{}", 10, &len);
    refused_image(img, len, "header length 100 is larger", "long header length");
    free(img);
    img = image_claiming(UINT64_MAX, "{}", 10, &len);
    refused_image(img, len, "absurd", "huge header length");
    free(img);
    img = image_claiming(0, "{}", 0, &len);
    refused_image(img, len, "not valid JSON", "zero header length");
    free(img);

    refused("{\"a\": {\"dtype\": \"F16\"", 0, "not valid JSON");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [], \"data_offsets\": [0, 2]}} x", 2, "stray bytes");
    refused("[]", 0, "not a JSON object");
    refused("\"F16\"", 0, "not a JSON object");
    refused("{\"a\": 5}", 0, "'a': entry is not an object");
    refused("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 2]}}", 2, "'a' has no dtype");
    refused("{\"a\": {\"dtype\": 16, \"shape\": [1], \"data_offsets\": [0, 2]}}", 2, "dtype is not a string");
    refused("{\"a\": {\"dtype\": \"\", \"shape\": [1], \"data_offsets\": [0, 2]}}", 2, "dtype");
    refused("{\"a\": {\"dtype\": \"F16_WITH_A_LONG_NAME\", \"shape\": [1], \"data_offsets\": [0, 2]}}", 2, "dtype");
    refused("{\"a\": {\"dtype\": \"F16\", \"data_offsets\": [0, 2]}}", 2, "'a' has no shape");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": 1, \"data_offsets\": [0, 2]}}", 2, "shape");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [-1], \"data_offsets\": [0, 2]}}", 2, "shape entry 0");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1.5], \"data_offsets\": [0, 2]}}", 2, "shape entry 0");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1, \"2\"], \"data_offsets\": [0, 4]}}", 4, "shape entry 1");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1, 1, 1, 1, 1], \"data_offsets\": [0, 2]}}", 2,
            "5 dimensions");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1e20], \"data_offsets\": [0, 2]}}", 2, "shape entry 0");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [4294967296, 4294967296, 4294967296], "
            "\"data_offsets\": [0, 2]}}", 2, "overflows");
    refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 2]}}", 2,
            "shape entry 0");
    refused("{\"a\": {\"dtype\": \"F32\", \"shape\": [2251799813685248], \"data_offsets\": [0, 8]}}", 8,
            "needs 2251799813685248 elements");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1]}}", 2, "'a' has no data_offsets");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0]}}", 2, "data_offsets");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2, 4]}}", 4, "data_offsets");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [-2, 0]}}", 2, "data_offsets");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0.5, 2]}}", 2, "data_offsets");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": \"0-2\"}}", 2, "data_offsets");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [0], \"data_offsets\": [4, 2]}}", 4, "end before");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 3, "run past the data buffer");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [100, 102]}}", 2,
            "run past the data buffer");
    refused("{\"m\": {\"dtype\": \"BOOL\", \"shape\": [4], \"data_offsets\": [0, 8]}}", 4,
            "run past the data buffer");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [2, 3], \"data_offsets\": [0, 10]}}", 12,
            "'a': data_offsets span 10 bytes");
    refused("{\"m\": {\"dtype\": \"BOOL\", \"shape\": [4], \"data_offsets\": [0, 3]}}", 4, "span 3 bytes");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]},"
            " \"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [2, 4]}}", 4, "'a' appears twice");
    refused("{\"__metadata__\": [1]}", 0, "__metadata__");

    /* The tensors must tile the data section exactly, in offset order. */
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]},"
            " \"b\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [3, 5]}}", 5,
            "'b' starts at data byte 3, but the previous tensor 'a' ends at 2");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]},"
            " \"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [2, 6]}}", 6,
            "'b' starts at data byte 2, but the previous tensor 'a' ends at 4");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [2, 4]}}", 4,
            "'a' starts at data byte 2, but the data section starts at 0");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]},"
            " \"b\": {\"dtype\": \"F16\", \"shape\": [0], \"data_offsets\": [1, 1]}}", 2,
            "'b' starts at data byte 1");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]}}", 3,
            "1 byte after the last tensor");
    refused("{}", 8, "8 bytes after the last tensor");
    refused_header_one_short();

    /* The header is UTF-8 text that opens a JSON object. */
    refused("{\"a\xff\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]}}", 2,
            "header is not valid UTF-8 (at header byte 3)");
    refused("{\"a\xc0\xaf\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]}}", 2,
            "not valid UTF-8");
    refused("{\"a\xed\xa0\x80\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]}}", 2,
            "not valid UTF-8");
    refused("{\"a\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]}}  \xe2\x82", 2,
            "not valid UTF-8");
    refused(" {}", 0, "does not start with '{'");

    /* Dtypes outside the spec are refused, not waved through as OTHER. */
    refused("{\"w\": {\"dtype\": \"F4_FUTURE\", \"shape\": [3], \"data_offsets\": [0, 2]}}", 2,
            "tensor 'w': dtype 'F4_FUTURE' is not a safetensors dtype");
    refused("{\"w\": {\"dtype\": \"f16\", \"shape\": [1], \"data_offsets\": [0, 2]}}", 2,
            "dtype 'f16' is not a safetensors dtype");
    refused("{\"w\": {\"dtype\": \"Q4_0\", \"shape\": [32], \"data_offsets\": [0, 18]}}", 18,
            "dtype 'Q4_0'");
    refused("{\"w\": {\"dtype\": \"F4\", \"shape\": [3], \"data_offsets\": [0, 2]}}", 2,
            "3 elements of F4 are 12 bits, not a whole number of bytes");
    refused("{\"w\": {\"dtype\": \"F6_E2M3\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 4,
            "span 4 bytes");

    memset(name, 'n', 200);
    name[200] = '\0';
    snprintf(header, sizeof header, "{\"%s\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 2]}}", name);
    refused(header, 2, "at most 191");

    /* Deep nesting must fail cleanly, not exhaust the stack. */
    {
        size_t depth = 100000;
        char *deep = malloc(2 * depth + 8);
        memcpy(deep, "{\"a\": ", 6);
        memset(deep + 6, '[', depth);
        memset(deep + 6 + depth, ']', depth);
        strcpy(deep + 6 + 2 * depth, "}");
        refused(deep, 0, "not valid JSON");
        free(deep);
    }
}

/* One tensor NAME of DTYPE holding N elements of BYTES each, all 1.0 except
 * element AT, which gets the BYTES bytes of BAD; checked for finite values. */
static rk_status check_one(const char *dtype, size_t n, size_t bytes, const void *one, size_t at,
                           const void *bad)
{
    char header[160];
    size_t len;
    unsigned char *img;
    rk_safetensors *st = NULL;
    rk_status status;

    snprintf(header, sizeof header, "{\"w\": {\"dtype\": \"%s\", \"shape\": [2, %zu], \"data_offsets\": [0, %zu]}}",
             dtype, n / 2, n * bytes);
    img = image(header, n * bytes, &len);
    for (size_t i = 0; i < n; i++)
        memcpy(img + len - n * bytes + i * bytes, i == at ? bad : one, bytes);
    status = rk_st_open_memory(img, len, &st);
    CHECKF(status == RK_OK, "%s: %s", dtype, rk_last_error());
    if (status == RK_OK)
        status = rk_st_check_finite(st, rk_st_find(st, "w"));
    rk_st_close(st);
    free(img);
    return status;
}

static void test_finite(void)
{
    const float f32_one = 1.0f, f32_nan = NAN, f32_inf = INFINITY, f32_max = 3.4028235e38f;
    const uint16_t f16_one = 0x3c00, f16_nan = 0x7e01, f16_ninf = 0xfc00, f16_max = 0x7bff;
    const uint16_t bf16_one = 0x3f80, bf16_nan = 0x7fc0, bf16_inf = 0x7f80, bf16_max = 0x7f7f;
    const size_t n = 10000; /* past one scan block */

    CHECK(check_one("F32", n, 4, &f32_one, 9999, &f32_max) == RK_OK);
    CHECK(check_one("F16", n, 2, &f16_one, 0, &f16_max) == RK_OK);
    CHECK(check_one("BF16", n, 2, &bf16_one, 5000, &bf16_max) == RK_OK);
    CHECK(check_one("F32", n, 4, &f32_one, 9999, &f32_nan) == RK_EFORMAT);
    CHECKF(strstr(rk_last_error(), "<memory>: tensor 'w' holds NaN at element 9999 ([1, 4999] of [2, 5000])"),
           "%s", rk_last_error());
    CHECK(check_one("F32", n, 4, &f32_one, 4096, &f32_inf) == RK_EFORMAT);
    CHECKF(strstr(rk_last_error(), "+Inf at element 4096 ([0, 4096]"), "%s", rk_last_error());
    CHECK(check_one("F16", n, 2, &f16_one, 4095, &f16_nan) == RK_EFORMAT);
    CHECKF(strstr(rk_last_error(), "NaN at element 4095"), "%s", rk_last_error());
    CHECK(check_one("F16", n, 2, &f16_one, 0, &f16_ninf) == RK_EFORMAT);
    CHECKF(strstr(rk_last_error(), "-Inf at element 0 ([0, 0]"), "%s", rk_last_error());
    CHECK(check_one("BF16", n, 2, &bf16_one, 8191, &bf16_nan) == RK_EFORMAT);
    CHECKF(strstr(rk_last_error(), "NaN at element 8191"), "%s", rk_last_error());
    CHECK(check_one("BF16", n, 2, &bf16_one, 8192, &bf16_inf) == RK_EFORMAT);
    CHECKF(strstr(rk_last_error(), "+Inf at element 8192"), "%s", rk_last_error());
}

/* Temp-directory fixtures, removed at the end. */
static char tmpdir[] = "/tmp/rk_test_st_XXXXXX";
static char created[16][512];
static int ncreated;

static const char *write_file(const char *name, const void *bytes, size_t len)
{
    char *path = created[ncreated++];
    FILE *f;
    snprintf(path, sizeof created[0], "%s/%s", tmpdir, name);
    f = fopen(path, "wb");
    CHECKF(f != NULL, "cannot write %s", path);
    if (f) {
        fwrite(bytes, 1, len, f);
        fclose(f);
    }
    return path;
}

static const char *write_image(const char *name, const char *header, size_t data_len)
{
    size_t len;
    unsigned char *img = image(header, data_len, &len);
    const char *path = write_file(name, img, len);
    free(img);
    return path;
}

static const char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text));
}

static rk_status open_refused(const char *path, const char *want)
{
    rk_safetensors *st = NULL;
    rk_status status = rk_st_open(path, &st);
    CHECKF(status != RK_OK, "%s: accepted", path);
    CHECKF(strstr(rk_last_error(), want) != NULL, "%s: message \"%s\" lacks \"%s\"", path, rk_last_error(), want);
    rk_st_close(st);
    return status;
}

static void test_sharded(void)
{
    char path[600], sub[600];
    const char *index;
    rk_safetensors *st = NULL;
    rk_status status;
    const rk_tensor *t;

    if (!mkdtemp(tmpdir)) {
        CHECKF(0, "mkdtemp failed");
        return;
    }
    write_image("model-00001-of-00002.safetensors",
                "{\"x.weight\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]},"
                " \"x.bias\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [8, 12]}}",
                12);
    write_image("model-00002-of-00002.safetensors",
                "{\"y.weight\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 6]},"
                " \"y.mask\": {\"dtype\": \"BOOL\", \"shape\": [2], \"data_offsets\": [6, 8]}}",
                8);
    index = write_text("model.safetensors.index.json",
                       "{\"metadata\": {\"total_size\": 26}, \"weight_map\": {"
                       "\"x.weight\": \"model-00001-of-00002.safetensors\","
                       "\"x.bias\": \"model-00001-of-00002.safetensors\","
                       "\"y.weight\": \"model-00002-of-00002.safetensors\","
                       "\"y.mask\": \"model-00002-of-00002.safetensors\"}}");

    for (int form = 0; form < 2; form++) {
        status = rk_st_open(form ? tmpdir : index, &st);
        CHECKF(status == RK_OK, "sharded (%s): %s", form ? "dir" : "index", rk_last_error());
        if (status != RK_OK)
            continue;
        CHECK(rk_st_count(st) == 4);
        t = rk_st_find(st, "x.bias");
        CHECK(t && t->nbytes == 4 && ((const unsigned char *)t->data)[0] == 8);
        t = rk_st_find(st, "y.weight");
        CHECK(t && t->dtype == RK_BF16 && t->shape[0] == 3 && ((const unsigned char *)t->data)[5] == 5);
        CHECK(rk_st_find(st, "y.mask") && rk_st_find(st, "y.mask")->data == NULL);
        rk_st_close(st);
    }

    /* A tensor the index places in a shard that lacks it. */
    index = write_text("wrong.index.json",
                       "{\"weight_map\": {\"x.weight\": \"model-00002-of-00002.safetensors\","
                       " \"y.weight\": \"model-00002-of-00002.safetensors\","
                       " \"x.bias\": \"model-00001-of-00002.safetensors\"}}");
    open_refused(index, "'x.weight' is listed in");
    index = write_text("absent.index.json",
                       "{\"weight_map\": {\"x.gone\": \"model-00001-of-00002.safetensors\"}}");
    open_refused(index, "'x.gone' is listed in");
    index = write_text("missing.index.json",
                       "{\"weight_map\": {\"x.weight\": \"model-00001-of-00002.safetensors\","
                       " \"z.weight\": \"model-00003-of-00003.safetensors\"}}");
    CHECK(open_refused(index, "model-00003-of-00003.safetensors") == RK_EIO);
    index = write_text("escape.index.json", "{\"weight_map\": {\"x.weight\": \"../x.safetensors\"}}");
    open_refused(index, "shard file name");
    index = write_text("empty.index.json", "{\"weight_map\": {}}");
    open_refused(index, "weight_map");
    index = write_text("nomap.index.json", "{\"metadata\": {}}");
    open_refused(index, "no weight_map");
    index = write_text("broken.index.json", "{\"weight_map\": ");
    open_refused(index, "not valid JSON");

    /* The same tensor in two shards is ambiguous. */
    write_image("dup.safetensors",
                "{\"x.bias\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 4);
    index = write_text("dup.index.json",
                       "{\"weight_map\": {\"x.bias\": \"model-00001-of-00002.safetensors\","
                       " \"x.weight\": \"dup.safetensors\"}}");
    open_refused(index, "appears in both");

    /* Each shard is a whole file of its own, checked as one. */
    write_image("gap.safetensors",
                "{\"x.bias\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}}", 6);
    index = write_text("gap.index.json", "{\"weight_map\": {\"x.bias\": \"gap.safetensors\"}}");
    open_refused(index, "gap.safetensors: 2 bytes after the last tensor");

    /* A malformed shard is reported with its file name. */
    write_text("short.safetensors", "abc");
    snprintf(path, sizeof path, "%s/short.safetensors", tmpdir);
    open_refused(path, path);
    index = write_text("short.index.json", "{\"weight_map\": {\"x\": \"short.safetensors\"}}");
    open_refused(index, "short.safetensors: truncated");

    snprintf(path, sizeof path, "%s/nothing-here.safetensors", tmpdir);
    CHECK(open_refused(path, "nothing-here") == RK_EIO);

    /* A FIFO is refused at once instead of blocking for a writer. */
    snprintf(sub, sizeof sub, "%s/fifo.safetensors", tmpdir);
    CHECK(mkfifo(sub, 0600) == 0);
    open_refused(sub, "regular file");
    unlink(sub);

    /* An empty directory holds no checkpoint. */
    snprintf(sub, sizeof sub, "%s/empty", tmpdir);
    CHECK(mkdir(sub, 0700) == 0);
    open_refused(sub, "neither");
    rmdir(sub);

    for (int i = ncreated - 1; i >= 0; i--)
        unlink(created[i]);
    CHECKF(rmdir(tmpdir) == 0, "temp dir %s left behind", tmpdir);
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_halves(void)
{
    int roundtrip = 1;

    CHECK(rk_f16_to_f32(0x3c00) == 1.0f && rk_f32_to_f16(1.0f) == 0x3c00);
    CHECK(rk_f16_to_f32(0xc100) == -2.5f && rk_f32_to_f16(-2.5f) == 0xc100);
    CHECK(rk_f16_to_f32(0x7bff) == 65504.0f && rk_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(rk_f16_to_f32(0x0001) == 0x1p-24f && rk_f32_to_f16(0x1p-24f) == 0x0001);
    CHECK(rk_f16_to_f32(0x8001) == -0x1p-24f && rk_f32_to_f16(-0x1p-24f) == 0x8001);
    CHECK(rk_f16_to_f32(0x03ff) == 1023 * 0x1p-24f && rk_f16_to_f32(0x0400) == 0x1p-14f);
    CHECK(rk_f16_to_f32(0x7c00) == INFINITY && rk_f32_to_f16(INFINITY) == 0x7c00);
    CHECK(rk_f16_to_f32(0xfc00) == -INFINITY && rk_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(isnan(rk_f16_to_f32(0x7e00)) && isnan(rk_f16_to_f32(0x7c01)));
    CHECK((rk_f32_to_f16(NAN) & 0x7fff) > 0x7c00);
    CHECK((rk_f32_to_f16(float_of(0x7f800001)) & 0x7fff) > 0x7c00);
    CHECK(rk_f16_to_f32(0x8000) == 0.0f && signbit(rk_f16_to_f32(0x8000)));
    CHECK(rk_f32_to_f16(-0.0f) == 0x8000);

    /* Round to nearest, ties to even; overflow to inf; underflow to zero. */
    CHECK(rk_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);
    CHECK(rk_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);
    CHECK(rk_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01);
    CHECK(rk_f32_to_f16(65519.0f) == 0x7bff && rk_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(rk_f32_to_f16(1e10f) == 0x7c00);
    CHECK(rk_f32_to_f16(0x1p-25f) == 0x0000 && rk_f32_to_f16(0x1p-25f * 1.0001f) == 0x0001);
    CHECK(rk_f32_to_f16(3 * 0x1p-25f) == 0x0002);
    CHECK(rk_f32_to_f16(0x1p-14f - 0x1p-26f) == 0x0400);
    CHECK(rk_f32_to_f16(1e-30f) == 0x0000 && rk_f32_to_f16(float_of(1)) == 0x0000);

    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = rk_f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            roundtrip &= isnan(f) != 0;
        else
            roundtrip &= rk_f32_to_f16(f) == h;
    }
    CHECK(roundtrip);

#ifdef __FLT16_MAX__
    /* Where the compiler has _Float16, its conversion is the reference. */
    {
        int agree = 1;
        uint32_t u = 0x12345678;
        for (int i = 0; i < 2000000; i++) {
            u = u * 1664525u + 1013904223u;
            float f = float_of(u);
            if (isnan(f))
                continue;
            _Float16 ref = (_Float16)f;
            uint16_t rb;
            memcpy(&rb, &ref, 2);
            agree &= rk_f32_to_f16(f) == rb;
        }
        CHECK(agree);
    }
#endif

    CHECK(rk_bf16_to_f32(0x3f80) == 1.0f && rk_bf16_to_f32(0xc020) == -2.5f);
    CHECK(rk_bf16_to_f32(0x477f) == 65280.0f);
    CHECK(rk_bf16_to_f32(0x0001) == float_of(0x00010000));
    CHECK(rk_bf16_to_f32(0x7f80) == INFINITY && rk_bf16_to_f32(0xff80) == -INFINITY);
    CHECK(isnan(rk_bf16_to_f32(0x7fc0)));
    CHECK(bits_of(rk_bf16_to_f32(0x8000)) == 0x80000000u);

    CHECK(rk_dtype_size(RK_F32) == 4 && rk_dtype_size(RK_F16) == 2 && rk_dtype_size(RK_BF16) == 2 &&
          rk_dtype_size(RK_DTYPE_OTHER) == 0);
    CHECK(strcmp(rk_dtype_name(RK_F16), "F16") == 0 && strcmp(rk_dtype_name(RK_BF16), "BF16") == 0 &&
          strcmp(rk_dtype_name(RK_F32), "F32") == 0);
}

int main(void)
{
    rk_safetensors *st = NULL;
    test_nano();
    test_synthetic_good();
    test_synthetic_bad();
    test_sharded();
    test_halves();
    test_finite();
    CHECK(rk_st_open(NULL, &st) == RK_EINVAL && rk_st_count(NULL) == 0 && rk_st_find(NULL, "a") == NULL);
    rk_st_close(NULL);
    return rk_test_finish("test_safetensors");
}
