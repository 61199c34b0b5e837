/* config.json parsing: the committed pythia-nano config, the newer key
 * styles, and a refusal with a message for each kind of bad input. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "rk_test.h"

/* The nano config, with the keys the tests edit. */
static const char *base_json =
    "{\"architectures\": [\"GPTNeoXForCausalLM\"], \"model_type\": \"gpt_neox\","
    " \"bos_token_id\": 0, \"eos_token_id\": 0, \"hidden_act\": \"gelu\","
    " \"hidden_size\": 160, \"intermediate_size\": 640, \"layer_norm_eps\": 1e-05,"
    " \"max_position_embeddings\": 2048, \"num_attention_heads\": 2,"
    " \"num_hidden_layers\": 4, \"rotary_emb_base\": 10000, \"rotary_pct\": 0.25,"
    " \"tie_word_embeddings\": false, \"use_parallel_residual\": true,"
    " \"vocab_size\": 8192}";

/* Returns base_json with KEY set to the JSON text VALUE, or removed when VALUE
 * is NULL; a second pair may be given the same way (KEY2 NULL for none). */
static char *edit2(const char *key, const char *value, const char *key2, const char *value2)
{
    cJSON *root = cJSON_Parse(base_json);
    const char *keys[2] = {key, key2}, *values[2] = {value, value2};
    char *out;
    for (int i = 0; i < 2; i++) {
        if (!keys[i])
            continue;
        cJSON_DeleteItemFromObjectCaseSensitive(root, keys[i]);
        if (values[i])
            cJSON_AddItemToObject(root, keys[i], cJSON_Parse(values[i]));
    }
    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static char *edit(const char *key, const char *value) { return edit2(key, value, NULL, NULL); }

static rk_status parse(const char *json, rk_config *cfg)
{
    return rk_config_parse(json, strlen(json), cfg);
}

/* Expects JSON to be refused with a message that mentions WANT. Takes
 * ownership of JSON. */
static void refused(char *json, const char *want)
{
    rk_config cfg;
    rk_status st = parse(json, &cfg);
    CHECKF(st != RK_OK, "accepted: %s", json);
    CHECKF(rk_last_error()[0] != '\0', "empty message for: %s", json);
    CHECKF(strstr(rk_last_error(), want) != NULL, "message \"%s\" lacks \"%s\" (input %s)",
           rk_last_error(), want, json);
    free(json);
}

static void check_nano_numbers(const rk_config *c, const char *what)
{
    CHECKF(c->n_layers == 4, "%s: n_layers %d", what, c->n_layers);
    CHECKF(c->hidden == 160, "%s: hidden %d", what, c->hidden);
    CHECKF(c->n_heads == 2, "%s: n_heads %d", what, c->n_heads);
    CHECKF(c->head_dim == 80, "%s: head_dim %d", what, c->head_dim);
    CHECKF(c->ffn == 640, "%s: ffn %d", what, c->ffn);
    CHECKF(c->vocab == 8192, "%s: vocab %d", what, c->vocab);
    CHECKF(c->max_pos == 2048, "%s: max_pos %d", what, c->max_pos);
    CHECKF(c->rotary_dims == 20, "%s: rotary_dims %d", what, c->rotary_dims);
    CHECKF(c->rotary_pct == 0.25, "%s: rotary_pct %g", what, c->rotary_pct);
    CHECKF(c->rope_base == 10000.0, "%s: rope_base %g", what, c->rope_base);
    CHECKF(c->ln_eps == 1e-5f, "%s: ln_eps %g", what, (double)c->ln_eps);
    CHECKF(c->parallel_residual == 1, "%s: parallel_residual %d", what, c->parallel_residual);
    CHECKF(c->bos_id == 0 && c->eos_id == 0, "%s: bos %d eos %d", what, c->bos_id, c->eos_id);
}

static void test_nano(void)
{
    rk_config c;
    rk_status st = rk_config_load(RK_MODELS_DIR "/pythia-nano/config.json", &c);
    CHECKF(st == RK_OK, "nano config: %s", rk_last_error());
    if (st == RK_OK)
        check_nano_numbers(&c, "nano file");

    st = parse(base_json, &c);
    CHECKF(st == RK_OK, "base text: %s", rk_last_error());
    if (st == RK_OK)
        check_nano_numbers(&c, "base text");

    /* Present only beside some checkouts; checked when it is there. */
    if (rk_config_load(RK_SHARED_DIR "/models/pythia-mini/config.json", &c) == RK_OK)
        CHECK(c.n_layers == 24 && c.hidden == 256 && c.head_dim == 64 && c.rotary_dims == 16);
}

static void expect_nano(char *json, const char *what)
{
    rk_config c;
    rk_status st = parse(json, &c);
    CHECKF(st == RK_OK, "%s: %s", what, rk_last_error());
    if (st == RK_OK)
        check_nano_numbers(&c, what);
    free(json);
}

static void test_key_styles(void)
{
    rk_config c;
    char *json;
    cJSON *root;

    /* Newer top-level spelling. */
    root = cJSON_Parse(base_json);
    cJSON_DeleteItemFromObject(root, "rotary_pct");
    cJSON_DeleteItemFromObject(root, "rotary_emb_base");
    cJSON_AddNumberToObject(root, "partial_rotary_factor", 0.25);
    cJSON_AddNumberToObject(root, "rope_theta", 10000);
    json = cJSON_PrintUnformatted(root);
    expect_nano(json, "partial_rotary_factor+rope_theta");

    /* rope_parameters, as transformers v5 writes it. */
    cJSON_DeleteItemFromObject(root, "partial_rotary_factor");
    cJSON_DeleteItemFromObject(root, "rope_theta");
    cJSON_AddItemToObject(root, "rope_parameters",
                          cJSON_Parse("{\"rope_theta\": 10000.0, \"partial_rotary_factor\": 0.25,"
                                      " \"rope_type\": \"default\"}"));
    cJSON_AddNullToObject(root, "rope_scaling");
    json = cJSON_PrintUnformatted(root);
    expect_nano(json, "rope_parameters");

    /* Every spelling at once, agreeing, as some exports carry them. */
    cJSON_AddNumberToObject(root, "rotary_pct", 0.25);
    cJSON_AddNumberToObject(root, "rotary_emb_base", 10000);
    cJSON_AddNumberToObject(root, "partial_rotary_factor", 0.25);
    cJSON_AddNumberToObject(root, "rope_theta", 10000);
    json = cJSON_PrintUnformatted(root);
    expect_nano(json, "all spellings");

    /* rope_parameters values are really used, not just tolerated. */
    cJSON_DeleteItemFromObject(root, "rotary_pct");
    cJSON_DeleteItemFromObject(root, "rotary_emb_base");
    cJSON_DeleteItemFromObject(root, "partial_rotary_factor");
    cJSON_DeleteItemFromObject(root, "rope_theta");
    cJSON_ReplaceItemInObject(root, "rope_parameters",
                              cJSON_Parse("{\"rope_theta\": 500000, \"partial_rotary_factor\": 0.5}"));
    json = cJSON_PrintUnformatted(root);
    CHECKF(parse(json, &c) == RK_OK, "rope_parameters 0.5: %s", rk_last_error());
    CHECKF(c.rotary_dims == 40 && c.rope_base == 500000.0, "rotary_dims %d base %g", c.rotary_dims, c.rope_base);
    free(json);
    cJSON_Delete(root);

    /* Defaults for every optional key. */
    root = cJSON_Parse(base_json);
    const char *optional_keys[] = {"architectures", "bos_token_id", "eos_token_id", "hidden_act",
                                   "layer_norm_eps", "rotary_emb_base", "rotary_pct",
                                   "tie_word_embeddings", "use_parallel_residual"};
    for (size_t i = 0; i < sizeof optional_keys / sizeof optional_keys[0]; i++)
        cJSON_DeleteItemFromObject(root, optional_keys[i]);
    json = cJSON_PrintUnformatted(root);
    expect_nano(json, "defaults");
    cJSON_Delete(root);

    json = edit("use_parallel_residual", "false");
    CHECK(parse(json, &c) == RK_OK && c.parallel_residual == 0);
    free(json);
    json = edit2("eos_token_id", "2", "attention_bias", "true");
    CHECK(parse(json, &c) == RK_OK && c.eos_id == 2);
    free(json);
    json = edit("rotary_pct", "1");
    CHECK(parse(json, &c) == RK_OK && c.rotary_dims == 80);
    free(json);
    json = edit("rotary_pct", "0");
    CHECK(parse(json, &c) == RK_OK && c.rotary_dims == 0);
    free(json);
    /* Integral values written as floats are still integers. */
    json = edit("hidden_size", "160.0");
    CHECK(parse(json, &c) == RK_OK && c.hidden == 160);
    free(json);
    json = edit("rope_scaling", "{\"rope_type\": \"default\"}");
    CHECK(parse(json, &c) == RK_OK);
    free(json);
}

static void test_refusals(void)
{
    const char *required[] = {"hidden_size", "num_hidden_layers", "num_attention_heads",
                              "intermediate_size", "vocab_size", "max_position_embeddings"};
    const char *bad_sizes[] = {"0", "-160", "160.5", "\"160\"", "null", "true", "[160]", "1e300"};

    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        refused(edit(required[i], NULL), required[i]);
        for (size_t j = 0; j < sizeof bad_sizes / sizeof bad_sizes[0]; j++)
            refused(edit(required[i], bad_sizes[j]), required[i]);
    }

    refused(edit("num_attention_heads", "3"), "not divisible");
    refused(edit("num_attention_heads", "32"), "odd");
    refused(edit("num_hidden_layers", "257"), "num_hidden_layers");
    refused(edit("hidden_size", "131072"), "hidden_size");
    refused(edit("vocab_size", "8388608"), "vocab_size");
    refused(edit("max_position_embeddings", "2097152"), "max_position_embeddings");
    refused(edit("intermediate_size", "4294967296"), "intermediate_size");

    refused(edit("model_type", "\"llama\""), "unsupported architecture 'llama': rankkv runs gpt_neox");
    refused(edit("model_type", "5"), "model_type");
    refused(edit2("model_type", NULL, "architectures", NULL), "model_type");
    refused(edit("architectures", "[\"LlamaForCausalLM\"]"), "unsupported architecture 'LlamaForCausalLM'");
    refused(edit("architectures", "\"GPTNeoXForCausalLM\""), "architectures");

    refused(edit("hidden_act", "\"gelu_new\""), "gelu_new");
    refused(edit("hidden_act", "\"gelu_fast\""), "gelu_fast");
    refused(edit("hidden_act", "\"relu\""), "relu");
    refused(edit("hidden_act", "1"), "hidden_act");
    refused(edit("tie_word_embeddings", "true"), "tie_word_embeddings");
    refused(edit("tie_word_embeddings", "\"no\""), "tie_word_embeddings");
    refused(edit("attention_bias", "false"), "attention_bias");
    refused(edit("use_parallel_residual", "1"), "use_parallel_residual");

    refused(edit("rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}"), "linear");
    refused(edit("rope_scaling", "{\"rope_type\": \"dynamic\", \"factor\": 2.0}"), "dynamic");
    refused(edit("rope_scaling", "{\"factor\": 2.0}"), "rope_scaling");
    refused(edit("rope_scaling", "2"), "rope_scaling");
    refused(edit("rope_parameters", "{\"rope_type\": \"yarn\", \"rope_theta\": 10000}"), "yarn");
    refused(edit("rope_parameters", "{\"rope_type\": 3}"), "rope_type");
    refused(edit("rope_parameters", "[]"), "rope_parameters");
    refused(edit("partial_rotary_factor", "0.5"), "must agree");
    refused(edit("rope_theta", "20000"), "must agree");
    refused(edit("rotary_pct", "1.5"), "rotary_pct");
    refused(edit("rotary_pct", "-0.25"), "rotary_pct");
    refused(edit("rotary_pct", "\"0.25\""), "rotary_pct");
    refused(edit("rotary_pct", "0.0125"), "odd");
    refused(edit("rotary_emb_base", "0"), "rotary_emb_base");
    refused(edit("rotary_emb_base", "-10000"), "rotary_emb_base");

    refused(edit("layer_norm_eps", "0"), "layer_norm_eps");
    refused(edit("layer_norm_eps", "1"), "layer_norm_eps");
    refused(edit("layer_norm_eps", "-1e-5"), "layer_norm_eps");
    refused(edit("layer_norm_eps", "1e-300"), "layer_norm_eps");
    refused(edit("layer_norm_eps", "\"1e-5\""), "layer_norm_eps");
    refused(edit("eos_token_id", "8192"), "eos_token_id");
    refused(edit("bos_token_id", "-1"), "bos_token_id");
    refused(edit("bos_token_id", "[0]"), "bos_token_id");

    refused(strdup("{\"hidden_size\": 160,"), "not valid JSON");
    refused(strdup(""), "not valid JSON");
    refused(strdup("[1, 2]"), "not a JSON object");
    refused(strdup("\"gpt_neox\""), "not a JSON object");
    refused(strdup("{} {}"), "stray bytes");

    /* Deep nesting must fail cleanly, not exhaust the stack. */
    {
        size_t depth = 100000;
        char *deep = malloc(2 * depth + 1);
        memset(deep, '[', depth);
        memset(deep + depth, ']', depth);
        deep[2 * depth] = '\0';
        refused(deep, "not valid JSON");
    }

    /* Bytes after an embedded NUL are still part of the input. */
    {
        rk_config c;
        const char text[] = "{\"model_type\": \"gpt_neox\"}\0garbage";
        CHECK(rk_config_parse(text, sizeof text - 1, &c) != RK_OK);
        CHECK(strstr(rk_last_error(), "stray bytes") != NULL);
        CHECK(rk_config_parse(NULL, 0, &c) == RK_EINVAL);
    }
}

/* base_json with TEXT inserted right after its opening brace. */
static char *prefixed(const char *text)
{
    size_t n = strlen(base_json) + strlen(text) + 1;
    char *out = malloc(n);
    snprintf(out, n, "{%s%s", text, base_json + 1);
    return out;
}

/* Hugging Face's json.load keeps the last of two equal keys and cJSON the
 * first, so a file with a duplicate means two different models. */
static void test_duplicate_keys(void)
{
    refused(prefixed("\"hidden_size\": 4096, "),
            "config has the key 'hidden_size' twice (at the top level)");
    refused(prefixed("\"num_hidden_layers\": 3, "), "'num_hidden_layers' twice");
    refused(prefixed("\"rope_parameters\": {\"rope_theta\": 10000, \"rope_theta\": 500000}, "),
            "config has the key 'rope_theta' twice (in rope_parameters)");
    refused(prefixed("\"rope_scaling\": {\"rope_type\": \"default\", \"rope_type\": \"linear\"}, "),
            "'rope_type' twice (in rope_scaling)");
    refused(prefixed("\"task_specific_params\": {\"generate\": {\"top_k\": 1, \"top_k\": 2}}, "),
            "'top_k' twice (in task_specific_params.generate)");
    refused(prefixed("\"a\": [{\"x\": 1, \"x\": 2}], "), "'x' twice (in a[0])");

    /* Equal keys in different objects are not duplicates. */
    expect_nano(prefixed("\"rope_parameters\": {\"rotary_pct\": 0.25}, \"x\": {\"rotary_pct\": 1}, "),
                "same key in two objects");
}

static void test_files(void)
{
    char dir[] = "/tmp/rk_test_config_XXXXXX";
    char path[256], missing[256], fifo[256];
    rk_config c;
    FILE *f;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(missing, sizeof missing, "%s/absent.json", dir);

    CHECK(rk_config_load(missing, &c) == RK_EIO);
    CHECKF(strstr(rk_last_error(), missing) != NULL, "message \"%s\" lacks the path", rk_last_error());
    CHECK(rk_config_load(dir, &c) == RK_EIO);
    CHECK(rk_last_error()[0] != '\0');
    /* A FIFO is refused at once instead of blocking for a writer. */
    snprintf(fifo, sizeof fifo, "%s/fifo.json", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK(rk_config_load(fifo, &c) == RK_EIO);
    CHECKF(strstr(rk_last_error(), "regular file") != NULL, "fifo: %s", rk_last_error());
    unlink(fifo);

    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"model_type\": \"llama\"}", f);
        fclose(f);
        CHECK(rk_config_load(path, &c) == RK_ECONFIG);
        CHECKF(strstr(rk_last_error(), path) && strstr(rk_last_error(), "llama"),
               "message \"%s\" lacks the path or the reason", rk_last_error());
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    test_nano();
    test_key_styles();
    test_refusals();
    test_duplicate_keys();
    test_files();
    return rk_test_finish("test_config");
}
