#include "safetensors.h"

#include "textio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
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
    rk_tensor t;
    int shard; /* index into rk_safetensors.labels, for messages */
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

/* Element sizes of the safetensors dtypes the runtime does not compute with.
 * Knowing them still lets the size check catch a corrupt entry; dtypes not
 * listed here (sub-byte or future ones) are accepted without that check. */
static size_t other_dtype_size(const char *name)
{
    static const struct {
        const char *name;
        size_t size;
    } sizes[] = {
        {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
        {"I16", 2}, {"U16", 2}, {"I32", 4}, {"U32", 4}, {"F64", 8},
        {"I64", 8}, {"U64", 8},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (strcmp(name, sizes[i].name) == 0)
            return sizes[i].size;
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

static rk_status parse_entry(rk_st_entry *e, const cJSON *v, const char *label,
                             const unsigned char *data, uint64_t dlen)
{
    const char *name = v->string;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(v, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(v, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(v, "data_offsets");
    const cJSON *d;
    uint64_t begin, end, elems = 1, want, known;
    int n;

    memset(e, 0, sizeof *e);
    if (strlen(name) >= RK_MAX_NAME)
        return rk_fail(RK_EFORMAT, "%s: tensor name '%.60s...' is %zu bytes; at most %d are supported",
                       label, name, strlen(name), RK_MAX_NAME - 1);
    if (!cJSON_IsObject(v))
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': entry is not an object with dtype, shape and data_offsets",
                       label, name);
    if (!dtype)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s' has no dtype", label, name);
    if (!cJSON_IsString(dtype))
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': dtype is not a string (expected e.g. \"F16\")", label, name);
    if (strlen(dtype->valuestring) >= sizeof e->t.dtype_name || !dtype->valuestring[0])
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': dtype '%.20s' is not a safetensors dtype name",
                       label, name, dtype->valuestring);
    if (!shape)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s' has no shape", label, name);
    if (!cJSON_IsArray(shape))
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': shape is not an array of integers", label, name);
    if (!offs)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s' has no data_offsets", label, name);

    strcpy(e->t.name, name);
    strcpy(e->t.dtype_name, dtype->valuestring);
    if (strcmp(dtype->valuestring, "F32") == 0)
        e->t.dtype = RK_F32;
    else if (strcmp(dtype->valuestring, "F16") == 0)
        e->t.dtype = RK_F16;
    else if (strcmp(dtype->valuestring, "BF16") == 0)
        e->t.dtype = RK_BF16;
    else
        e->t.dtype = RK_DTYPE_OTHER;

    n = cJSON_GetArraySize(shape);
    if (n > RK_MAX_DIMS)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': shape has %d dimensions; at most %d are supported",
                       label, name, n, RK_MAX_DIMS);
    e->t.ndim = 0;
    cJSON_ArrayForEach(d, shape) {
        uint64_t dim;
        if (!header_uint(d, &dim)) {
            char got[48];
            return rk_fail(RK_EFORMAT, "%s: tensor '%s': shape entry %d is %s; expected a non-negative integer",
                           label, name, e->t.ndim, brief(d, got, sizeof got));
        }
        e->t.shape[e->t.ndim++] = (int64_t)dim;
        if (__builtin_mul_overflow(elems, dim, &elems))
            return rk_fail(RK_EFORMAT, "%s: tensor '%s': shape element count overflows", label, name);
    }

    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !header_uint(cJSON_GetArrayItem(offs, 0), &begin) || !header_uint(cJSON_GetArrayItem(offs, 1), &end))
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': data_offsets is not [begin, end] with non-negative integers",
                       label, name);
    if (begin > end)
        return rk_fail(RK_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                       label, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > dlen)
        return rk_fail(RK_EFORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] run past the data buffer (%llu bytes)",
                       label, name, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)dlen);
    e->t.nbytes = (size_t)(end - begin);

    known = e->t.dtype == RK_DTYPE_OTHER ? other_dtype_size(e->t.dtype_name) : rk_dtype_size(e->t.dtype);
    if (known && (__builtin_mul_overflow(elems, known, &want) || want != end - begin)) {
        char dims[RK_MAX_DIMS * 24 + 4];
        size_t at = 0;
        dims[at++] = '[';
        for (int i = 0; i < e->t.ndim; i++)
            at += (size_t)snprintf(dims + at, sizeof dims - at, "%s%lld", i ? ", " : "",
                                   (long long)e->t.shape[i]);
        snprintf(dims + at, sizeof dims - at, "]");
        return rk_fail(RK_EFORMAT,
                       "%s: tensor '%s': data_offsets span %llu bytes but shape %s of %s needs %llu elements x %llu bytes",
                       label, name, (unsigned long long)(end - begin), dims, e->t.dtype_name,
                       (unsigned long long)elems, (unsigned long long)known);
    }
    /* Tensors may start at any byte offset, so DATA is not aligned for its
     * element type; readers copy elements out with memcpy. */
    e->t.data = e->t.dtype == RK_DTYPE_OTHER ? NULL : data + begin;
    return RK_OK;
}

/* Parses one whole file image and appends its tensors. LABEL names the file
 * in messages; SHARD is its index in st->labels. */
static rk_status parse_image(rk_safetensors *st, const unsigned char *img, size_t len,
                             const char *label, int shard)
{
    uint64_t hlen = 0;
    char *text;
    const char *end = NULL;
    cJSON *root;
    const cJSON *v;
    const unsigned char *data;
    uint64_t dlen;
    int n;
    rk_status status = RK_OK;

    if (len < 8)
        return rk_fail(RK_EFORMAT, "%s: truncated: %zu bytes, but a safetensors file starts with an 8-byte header length",
                       label, len);
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)img[i] << (8 * i);
    if (hlen > RK_ST_MAX_HEADER)
        return rk_fail(RK_EFORMAT, "%s: header length %llu is absurd (limit %llu); not a safetensors file?",
                       label, (unsigned long long)hlen, RK_ST_MAX_HEADER);
    if (hlen > len - 8)
        return rk_fail(RK_EFORMAT, "%s: header length %llu is larger than the %zu bytes that follow it (truncated?)",
                       label, (unsigned long long)hlen, len - 8);
    data = img + 8 + hlen;
    dlen = len - 8 - hlen;

    /* A terminated private copy keeps cJSON (not built with our sanitizers)
     * from reading past the header or the end of a mapping. */
    text = malloc((size_t)hlen + 1);
    if (!text)
        return rk_fail(RK_ENOMEM, "%s: out of memory copying a %llu-byte header", label, (unsigned long long)hlen);
    memcpy(text, img + 8, (size_t)hlen);
    text[hlen] = '\0';
    root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        free(text);
        return rk_fail(RK_EFORMAT, "%s: header is not valid JSON (error near header byte %zu)", label, at);
    }
    /* Writers pad the header with spaces to align the data buffer. */
    while (end < text + hlen && *end != '\0' && strchr(" \t\r\n", *end))
        end++;
    if (end != text + hlen) {
        status = rk_fail(RK_EFORMAT, "%s: header has stray bytes after the JSON (at header byte %zu)",
                         label, (size_t)(end - text));
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        status = rk_fail(RK_EFORMAT, "%s: header is not a JSON object of tensors", label);
        goto out;
    }

    n = cJSON_GetArraySize(root);
    if (n > INT_MAX - st->count) {
        status = rk_fail(RK_ELIMIT, "%s: too many tensors", label);
        goto out;
    }
    if (st->count + n > st->cap) {
        rk_st_entry *grown = realloc(st->entries, (size_t)(st->count + n) * sizeof *grown);
        if (!grown) {
            status = rk_fail(RK_ENOMEM, "%s: out of memory for %d tensor entries", label, n);
            goto out;
        }
        st->entries = grown;
        st->cap = st->count + n;
    }
    cJSON_ArrayForEach(v, root) {
        if (!v->string) {
            status = rk_fail(RK_EFORMAT, "%s: header entry without a name", label);
            goto out;
        }
        if (strcmp(v->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(v)) {
                status = rk_fail(RK_EFORMAT, "%s: __metadata__ is not an object", label);
                goto out;
            }
            continue;
        }
        if ((status = parse_entry(&st->entries[st->count], v, label, data, dlen)) != RK_OK)
            goto out;
        st->entries[st->count++].shard = shard;
    }
out:
    cJSON_Delete(root);
    free(text);
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
    struct stat sb;
    void *addr;
    rk_st_map *maps;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0)
        return rk_fail(RK_EIO, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return rk_fail(RK_EIO, "cannot stat %s: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return rk_fail(RK_EIO, "%s is not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return rk_fail(RK_EFORMAT, "%s: truncated: %lld bytes, but a safetensors file starts with an 8-byte header length",
                       path, (long long)sb.st_size);
    }
    maps = realloc(st->maps, (size_t)(st->nmaps + 1) * sizeof *maps);
    if (!maps) {
        close(fd);
        return rk_fail(RK_ENOMEM, "out of memory opening %s", path);
    }
    st->maps = maps;
    addr = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (addr == MAP_FAILED)
        return rk_fail(RK_EIO, "cannot map %s: %s", path, strerror(errno));
    maps[st->nmaps].addr = addr;
    maps[st->nmaps].len = (size_t)sb.st_size;
    st->nmaps++;
    *img = addr;
    *len = (size_t)sb.st_size;
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
