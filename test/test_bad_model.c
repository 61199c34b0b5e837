/* A checkpoint that does not match its config is refused with a clear
 * message: each case rewrites the header of a copy of pythia-nano. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rk_test.h"
#include "targets.h"
#include "textio.h"

static char dir[64];
static char *image;
static size_t image_len;

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

/* Writes model.safetensors with the header edited by EDIT and the original data. */
static void write_checkpoint(void (*edit)(cJSON *))
{
    uint64_t hlen;
    memcpy(&hlen, image, 8);
    cJSON *h = cJSON_ParseWithLength(image + 8, (size_t)hlen);
    edit(h);
    char *text = cJSON_PrintUnformatted(h);
    uint64_t nlen = strlen(text);
    size_t data_len = image_len - 8 - (size_t)hlen;
    char *out = malloc(8 + nlen + data_len);
    memcpy(out, &nlen, 8);
    memcpy(out + 8, text, nlen);
    memcpy(out + 8 + nlen, image + 8 + hlen, data_len);
    write_file("model.safetensors", out, 8 + nlen + data_len);
    free(out);
    free(text);
    cJSON_Delete(h);
}

static void expect(const char *what, rk_status want, const char *needle)
{
    rk_limits lim = {.max_prompt = 64, .max_new_tokens = 8, .prefill_chunk = 32,
                     .logits_rows = 1, .kv_dtype = RK_F32};
    rk_model *m = NULL;
    rk_status st = rk_model_load(dir, rk_cpu_ops(), &lim, &m);
    printf("  %-34s -> %s: %s\n", what, rk_status_name(st), rk_last_error());
    CHECKF(st == want, "%s: got %s, want %s", what, rk_status_name(st), rk_status_name(want));
    CHECKF(strstr(rk_last_error(), needle) != NULL, "%s: message lacks '%s'", what, needle);
    CHECK(m == NULL);
    rk_model_free(m);
}

static void keep(cJSON *h) {}
static void drop_dense(cJSON *h) { cJSON_DeleteItemFromObject(h, "gpt_neox.layers.2.attention.dense.weight"); }
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

    write_checkpoint(keep);
    rk_model *m = NULL;
    rk_limits lim = {.max_prompt = 64, .max_new_tokens = 8, .prefill_chunk = 32,
                     .logits_rows = 1, .kv_dtype = RK_F32};
    CHECKF(rk_model_load(dir, rk_cpu_ops(), &lim, &m) == RK_OK, "unchanged copy: %s", rk_last_error());
    rk_model_free(m);

    printf("refused checkpoints:\n");
    write_checkpoint(drop_dense);
    expect("missing tensor", RK_EMISSING, "gpt_neox.layers.2.attention.dense.weight");
    write_checkpoint(bool_ln);
    expect("wrong dtype", RK_EDTYPE, "I16");
    write_checkpoint(reshape_qkv);
    expect("wrong shape", RK_ESHAPE, "[480, 160]");
    write_file("model.safetensors", image, 4);
    expect("truncated file", RK_EFORMAT, "model.safetensors");
    write_file("model.safetensors", image, image_len / 2);
    expect("data cut short", RK_EFORMAT, "model.safetensors");

    write_checkpoint(keep);
    write_config(config, "\"hidden_size\": 160", "\"hidden_size\": 320");
    expect("config disagrees with tensors", RK_ESHAPE, "config.json implies");
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
