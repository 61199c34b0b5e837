/* A checkpoint that does not match its config is refused with a clear
 * message: each case rewrites the header (or a weight) of a copy of
 * pythia-nano. Refusals that the headers and config.json can explain come
 * before the weights block is allocated. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "profile.h"
#include "rk_test.h"
#include "targets.h"
#include "textio.h"

static char dir[64];
static char *image;
static size_t image_len;
/* Bytes of tensors that edits add after the original data, or cut from its end. */
static size_t appended, cut;

/* The CPU target with its allocations counted. */
static rk_ops counted_ops;
static int n_allocs;

static rk_status counted_alloc(void *ctx, size_t bytes, void **base)
{
    n_allocs++;
    return rk_cpu_ops()->alloc(ctx, bytes, base);
}

static void write_file(const char *name, const void *data, size_t len)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        CHECK(fwrite(data, 1, len, f) == len);
        fclose(f);
    }
}

static uint64_t header_len(void)
{
    uint64_t hlen;
    memcpy(&hlen, image, 8);
    return hlen;
}

/* Writes model.safetensors with the header edited by EDIT, the original data
 * less the CUT bytes of a tensor EDIT removed, and then APPENDED zero bytes
 * for the tensors EDIT added. */
static void write_checkpoint(void (*edit)(cJSON *))
{
    uint64_t hlen = header_len();
    cJSON *h = cJSON_ParseWithLength(image + 8, (size_t)hlen);
    appended = cut = 0;
    edit(h);
    char *text = cJSON_PrintUnformatted(h);
    uint64_t nlen = strlen(text);
    size_t data_len = image_len - 8 - (size_t)hlen - cut;
    char *out = calloc(1, 8 + nlen + data_len + appended);
    memcpy(out, &nlen, 8);
    memcpy(out + 8, text, nlen);
    memcpy(out + 8 + nlen, image + 8 + hlen, data_len);
    write_file("model.safetensors", out, 8 + nlen + data_len + appended);
    free(out);
    free(text);
    cJSON_Delete(h);
}

/* Adds tensor NAME to the header H, its NBYTES placed after the data. */
static void add_tensor(cJSON *h, const char *name, const char *dtype, const int *dims, int ndim,
                       size_t nbytes)
{
    const double begin = (double)(image_len - 8 - header_len() - cut + appended);
    const double range[2] = {begin, begin + (double)nbytes};
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "dtype", dtype);
    cJSON_AddItemToObject(t, "shape", cJSON_CreateIntArray(dims, ndim));
    cJSON_AddItemToObject(t, "data_offsets", cJSON_CreateDoubleArray(range, 2));
    cJSON_AddItemToObject(h, name, t);
    appended += nbytes;
}

/* A copy of the original file and, in *AT, byte BYTE of tensor NAME in it. */
static char *copy_at(const char *name, size_t byte, char **at)
{
    uint64_t hlen = header_len();
    cJSON *h = cJSON_ParseWithLength(image + 8, (size_t)hlen);
    const cJSON *offs = cJSON_GetObjectItem(cJSON_GetObjectItem(h, name), "data_offsets");
    char *out = malloc(image_len);
    memcpy(out, image, image_len);
    CHECKF(offs != NULL, "no tensor %s", name);
    *at = out + 8 + hlen + (offs ? (size_t)cJSON_GetArrayItem(offs, 0)->valuedouble : 0) + byte;
    cJSON_Delete(h);
    return out;
}

/* Writes the original file with element INDEX of tensor NAME (F16) set to BITS. */
static void write_patched(const char *name, size_t index, uint16_t bits)
{
    char *at;
    char *out = copy_at(name, 2 * index, &at);
    memcpy(at, &bits, 2);
    write_file("model.safetensors", out, image_len);
    free(out);
}

/* Writes the original file with the lowest bit of byte BYTE of tensor NAME flipped. */
static void write_flipped(const char *name, size_t byte)
{
    char *at;
    char *out = copy_at(name, byte, &at);
    *at ^= 1;
    write_file("model.safetensors", out, image_len);
    free(out);
}

static rk_status load(rk_model **m)
{
    rk_limits lim = {.max_prompt = 64, .max_new_tokens = 8, .prefill_chunk = 32,
                     .logits_rows = 1, .kv_format = RK_KV_FP32};
    n_allocs = 0;
    return rk_model_load(dir, &counted_ops, &lim, m);
}

static void expect_allocating(const char *what, rk_status want, const char *needle, int allocs_ok)
{
    rk_model *m = NULL;
    rk_status st = load(&m);
    printf("  %-34s -> %s: %s\n", what, rk_status_name(st), rk_last_error());
    CHECKF(st == want, "%s: got %s, want %s", what, rk_status_name(st), rk_status_name(want));
    CHECKF(strstr(rk_last_error(), needle) != NULL, "%s: message lacks '%s'", what, needle);
    CHECKF(allocs_ok || n_allocs == 0, "%s: refused after %d allocations", what, n_allocs);
    CHECK(m == NULL);
    rk_model_free(m);
}

static void expect(const char *what, rk_status want, const char *needle)
{
    expect_allocating(what, want, needle, 0);
}

static void expect_loads(const char *what)
{
    rk_model *m = NULL;
    CHECKF(load(&m) == RK_OK, "%s: %s", what, rk_last_error());
    rk_model_free(m);
}

static void keep(cJSON *h) {}
/* The last tensor of the file, and its bytes with it. */
static void drop_last(cJSON *h)
{
    const char *name = "gpt_neox.layers.3.post_attention_layernorm.weight";
    const cJSON *offs = cJSON_GetObjectItem(cJSON_GetObjectItem(h, name), "data_offsets");
    CHECK(offs && (size_t)cJSON_GetArrayItem(offs, 1)->valuedouble == image_len - 8 - header_len());
    if (offs)
        cut = (size_t)(cJSON_GetArrayItem(offs, 1)->valuedouble - cJSON_GetArrayItem(offs, 0)->valuedouble);
    cJSON_DeleteItemFromObject(h, name);
}
static void bool_ln(cJSON *h)
{
    cJSON *t = cJSON_GetObjectItem(h, "gpt_neox.final_layer_norm.bias");
    /* 160 fp16 values are 320 bytes: as I16 the byte range stays consistent. */
    cJSON_ReplaceItemInObject(t, "dtype", cJSON_CreateString("I16"));
}
static void reshape_qkv(cJSON *h)
{
    cJSON *t = cJSON_GetObjectItem(h, "gpt_neox.layers.0.attention.query_key_value.weight");
    int dims[2] = {160, 480};
    cJSON_ReplaceItemInObject(t, "shape", cJSON_CreateIntArray(dims, 2));
}

static const int dims_160[1] = {160};
static const int dims_mask[4] = {1, 1, 4, 4};
static const int dims_inv_freq[1] = {10};

static void extra_layer(cJSON *h)
{
    add_tensor(h, "gpt_neox.layers.4.attention.dense.bias", "F16", dims_160, 1, 320);
}
static void unknown_tensor(cJSON *h)
{
    add_tensor(h, "gpt_neox.layers.1.attention.lora_A.bias", "F16", dims_160, 1, 320);
}
static void buffer_of_extra_layer(cJSON *h)
{
    add_tensor(h, "gpt_neox.layers.4.attention.bias", "BOOL", dims_mask, 4, 16);
}
/* What older checkpoints carry besides the weights: ignored. */
static void old_buffers(cJSON *h)
{
    char name[96];
    for (int l = 0; l < 4; l++) {
        snprintf(name, sizeof name, "gpt_neox.layers.%d.attention.bias", l);
        add_tensor(h, name, "BOOL", dims_mask, 4, 16);
        snprintf(name, sizeof name, "gpt_neox.layers.%d.attention.masked_bias", l);
        add_tensor(h, name, "F32", dims_160, 0, 4);
        snprintf(name, sizeof name, "gpt_neox.layers.%d.attention.rotary_emb.inv_freq", l);
        add_tensor(h, name, "F32", dims_inv_freq, 1, 40);
    }
}

/* A copy of nano is the bundled profile's model exactly when its weights are. */
static void expect_profile(const char *what, int found)
{
    rk_identity id;
    rk_status st = rk_identity_of(dir, &id);
    CHECKF(st == RK_OK, "%s: %s", what, rk_last_error());
    const rk_profile *p = st == RK_OK ? rk_profile_find(&id) : NULL;
    printf("  %-34s -> identity %016llx: %s\n", what, (unsigned long long)id.hash,
           p ? p->name : rk_last_error());
    if (found)
        CHECKF(p && strcmp(p->name, "pythia-nano") == 0, "%s: %s", what, rk_last_error());
    else
        CHECKF(!p && strstr(rk_last_error(), "no RankKV profile in this build matches"),
               "%s: found profile %s", what, p ? p->name : "-");
}

static void write_config(const char *base, const char *from, const char *to)
{
    char *cfg = strdup(base);
    char *p = strstr(cfg, from);
    CHECK(p != NULL);
    if (p) {
        size_t n = strlen(cfg) - strlen(from) + strlen(to) + 1;
        char *out = malloc(n);
        snprintf(out, n, "%.*s%s%s", (int)(p - cfg), cfg, to, p + strlen(from));
        write_file("config.json", out, strlen(out));
        free(out);
    }
    free(cfg);
}

int main(void)
{
    char *config;
    size_t config_len;
    CHECK(rk_read_file(RK_MODELS_DIR "/pythia-nano/model.safetensors", SIZE_MAX, &image, &image_len) == RK_OK);
    CHECK(rk_read_file(RK_MODELS_DIR "/pythia-nano/config.json", SIZE_MAX, &config, &config_len) == RK_OK);
    snprintf(dir, sizeof dir, "/tmp/rankkv-badmodel-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    if (!image || !config)
        return rk_test_finish("test_bad_model");
    write_file("config.json", config, config_len);
    counted_ops = *rk_cpu_ops();
    counted_ops.alloc = counted_alloc;

    write_checkpoint(keep);
    expect_loads("unchanged copy");
    write_checkpoint(old_buffers);
    expect_loads("attention.bias, masked_bias, inv_freq");

    printf("refused checkpoints:\n");
    write_checkpoint(drop_last);
    expect("missing tensor", RK_EMISSING, "gpt_neox.layers.3.post_attention_layernorm.weight");
    write_checkpoint(bool_ln);
    expect("wrong dtype", RK_EDTYPE, "I16");
    write_checkpoint(reshape_qkv);
    expect("wrong shape", RK_ESHAPE, "[480, 160]");
    write_file("model.safetensors", image, 4);
    expect("truncated file", RK_EFORMAT, "model.safetensors");
    write_file("model.safetensors", image, image_len / 2);
    expect("data cut short", RK_EFORMAT, "model.safetensors");
    write_checkpoint(extra_layer);
    expect("tensor of a fifth layer", RK_ECONFIG, "'gpt_neox.layers.4.attention.dense.bias'");
    write_checkpoint(buffer_of_extra_layer);
    expect("buffer of a fifth layer", RK_ECONFIG, "'gpt_neox.layers.4.attention.bias'");
    write_checkpoint(unknown_tensor);
    expect("unknown tensor", RK_EFORMAT, "'gpt_neox.layers.1.attention.lora_A.bias'");
    {
        /* The header one byte short, hidden by its padding: every tensor
         * would be read one byte early. */
        char *shifted = malloc(image_len);
        uint64_t hlen = header_len() - 1;
        memcpy(shifted, image, image_len);
        memcpy(shifted, &hlen, 8);
        write_file("model.safetensors", shifted, image_len);
        free(shifted);
        expect("header length one short", RK_EFORMAT, "1 byte after the last tensor");
    }

    /* Non-finite weights are found while loading, named by tensor and element. */
    write_patched("gpt_neox.layers.1.mlp.dense_h_to_4h.weight", 1234, 0x7e00);
    expect_allocating("NaN weight", RK_EFORMAT,
                      "tensor 'gpt_neox.layers.1.mlp.dense_h_to_4h.weight' holds NaN at element 1234 "
                      "([7, 114] of [640, 160])", 1);
    write_patched("gpt_neox.final_layer_norm.bias", 159, 0xfc00);
    expect_allocating("-Inf weight", RK_EFORMAT,
                      "'gpt_neox.final_layer_norm.bias' holds -Inf at element 159", 1);

    /* The profile identity covers the weights, not just their shapes. */
    write_checkpoint(keep);
    expect_profile("untouched copy", 1);
    write_flipped("gpt_neox.final_layer_norm.weight", 14);
    expect_profile("one weight byte changed", 0);

    write_checkpoint(keep);
    write_config(config, "\"hidden_size\": 160", "\"hidden_size\": 320");
    expect("config disagrees with tensors", RK_ESHAPE, "config.json implies");
    write_config(config, "\"hidden_size\": 160", "\"hidden_size\": 4096");
    expect("config 1.7 GB larger than tensors", RK_ESHAPE, "gpt_neox.embed_in.weight");
    write_config(config, "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 3");
    expect("config with fewer layers", RK_ECONFIG, "'gpt_neox.layers.3.");
    write_config(config, "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 5");
    expect("config with more layers", RK_EMISSING, "'gpt_neox.layers.4.");
    write_config(config, "\"num_hidden_layers\": 4", "\"num_hidden_layers\": -4");
    expect("negative layer count", RK_ECONFIG, "num_hidden_layers");
    write_config(config, "\"vocab_size\": 8192", "\"vocab_sz\": 8192");
    expect("missing vocab_size", RK_EMISSING, "vocab_size");
    write_config(config, "\"max_position_embeddings\": 2048", "\"max_position_embeddings\": 16");
    expect("plan beyond max_position_embeddings", RK_ELIMIT, "max_position_embeddings");

    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir), remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir), remove(path);
    remove(dir);
    free(image);
    free(config);
    return rk_test_finish("test_bad_model");
}
