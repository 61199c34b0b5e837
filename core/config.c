#include "config.h"

#include "textio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* config.json files are a few hundred bytes; anything this large is not one. */
#define RK_CONFIG_MAX_BYTES (1u << 20)

#define RK_MAX_HIDDEN 65536
#define RK_MAX_FFN (1 << 20)
#define RK_MAX_VOCAB (1 << 22)
#define RK_MAX_POS (1 << 20)

/* Writes a short description of a JSON value for error messages, so that a
 * wrong value is shown as the file spells it rather than as a type tag. */
static const char *describe(const cJSON *v, char *buf, size_t n)
{
    if (cJSON_IsNull(v))
        snprintf(buf, n, "null");
    else if (cJSON_IsTrue(v))
        snprintf(buf, n, "true");
    else if (cJSON_IsFalse(v))
        snprintf(buf, n, "false");
    else if (cJSON_IsNumber(v))
        snprintf(buf, n, "%.17g", v->valuedouble);
    else if (cJSON_IsString(v))
        snprintf(buf, n, "the string \"%.40s\"", v->valuestring);
    else if (cJSON_IsArray(v))
        snprintf(buf, n, "an array");
    else if (cJSON_IsObject(v))
        snprintf(buf, n, "an object");
    else
        snprintf(buf, n, "an unknown value");
    return buf;
}

/* JSON null is how Hugging Face writes an unset optional field, so optional
 * keys treat it as absent. */
static const cJSON *optional(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNull(v) ? NULL : v;
}

static rk_status int_value(const cJSON *v, const char *name, long lo, long hi, int *out)
{
    char d[64];
    /* cJSON keeps every number as a double, so integrality has to be checked
     * on the double; the range check comes first so the cast is defined. */
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
        return rk_fail(RK_ECONFIG, "config %s is %s; expected an integer in [%ld, %ld]", name,
                       describe(v, d, sizeof d), lo, hi);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return rk_fail(RK_ECONFIG, "config %s is %s; expected an integer in [%ld, %ld]", name,
                       describe(v, d, sizeof d), lo, hi);
    *out = (int)v->valuedouble;
    return RK_OK;
}

static rk_status required_int(const cJSON *root, const char *name, long hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v)
        return rk_fail(RK_EMISSING, "config has no %s; it is required for gpt_neox", name);
    return int_value(v, name, 1, hi, out);
}

static rk_status optional_bool(const cJSON *root, const char *name, int def, int *out)
{
    char d[64];
    const cJSON *v = optional(root, name);
    if (!v) {
        *out = def;
        return RK_OK;
    }
    if (!cJSON_IsBool(v))
        return rk_fail(RK_ECONFIG, "config %s is %s; expected true or false", name,
                       describe(v, d, sizeof d));
    *out = cJSON_IsTrue(v);
    return RK_OK;
}

static rk_status number_value(const cJSON *v, const char *name, double *out)
{
    char d[64];
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return rk_fail(RK_ECONFIG, "config %s is %s; expected a number", name, describe(v, d, sizeof d));
    *out = v->valuedouble;
    return RK_OK;
}

/* The same quantity can be spelled by several keys (old and new Hugging Face
 * styles, top level and inside rope_parameters). Files written by recent
 * transformers versions carry several spellings at once; they must agree, or
 * the file is ambiguous and refused rather than resolved by a guess. */
typedef struct {
    const char *key;
    double value;
} rk_spelling;

static rk_status take_spelling(const cJSON *obj, const char *key, const char *shown, rk_spelling *have)
{
    const cJSON *v = optional(obj, key);
    double x = 0.0;
    rk_status st;
    if (!v)
        return RK_OK;
    if ((st = number_value(v, shown, &x)) != RK_OK)
        return st;
    if (have->key && fabs(x - have->value) > 1e-12 * fmax(fabs(x), fabs(have->value)))
        return rk_fail(RK_ECONFIG, "config gives %s = %.17g but %s = %.17g; they must agree",
                       have->key, have->value, shown, x);
    if (!have->key) {
        have->key = shown;
        have->value = x;
    }
    return RK_OK;
}

/* rope_scaling and rope_parameters name a rope_type (older files: "type");
 * only the plain, unscaled rotary embedding of GPT-NeoX is implemented. */
static rk_status check_rope_type(const cJSON *obj, const char *where)
{
    char d[64];
    const char *keys[] = {"rope_type", "type"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *t = optional(obj, keys[i]);
        if (!t)
            continue;
        if (!cJSON_IsString(t))
            return rk_fail(RK_ECONFIG, "config %s.%s is %s; expected a string such as \"default\"",
                           where, keys[i], describe(t, d, sizeof d));
        if (strcmp(t->valuestring, "default") != 0)
            return rk_fail(RK_ECONFIG,
                           "config %s.%s is '%.40s': rope scaling is not supported, rankkv "
                           "implements only the unscaled 'default' rotary embedding",
                           where, keys[i], t->valuestring);
    }
    return RK_OK;
}

static rk_status check_architecture(const cJSON *root)
{
    char d[64];
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *arch = optional(root, "architectures");
    if (mt && !cJSON_IsString(mt))
        return rk_fail(RK_ECONFIG, "config model_type is %s; expected \"gpt_neox\"", describe(mt, d, sizeof d));
    if (mt && strcmp(mt->valuestring, "gpt_neox") != 0)
        return rk_fail(RK_ECONFIG, "unsupported architecture '%.60s': rankkv runs gpt_neox models",
                       mt->valuestring);
    if (arch) {
        const cJSON *a;
        const char *first = NULL;
        if (!cJSON_IsArray(arch))
            return rk_fail(RK_ECONFIG, "config architectures is %s; expected an array of strings",
                           describe(arch, d, sizeof d));
        cJSON_ArrayForEach(a, arch) {
            if (!cJSON_IsString(a))
                return rk_fail(RK_ECONFIG, "config architectures holds %s; expected strings",
                               describe(a, d, sizeof d));
            if (strcmp(a->valuestring, "GPTNeoXForCausalLM") == 0)
                return RK_OK;
            if (!first)
                first = a->valuestring;
        }
        if (first)
            return rk_fail(RK_ECONFIG,
                           "unsupported architecture '%.60s': rankkv runs GPTNeoXForCausalLM (gpt_neox) models",
                           first);
    }
    if (!mt)
        return rk_fail(RK_EMISSING, "config has no model_type; expected \"gpt_neox\"");
    return RK_OK;
}

static rk_status check_features(const cJSON *root)
{
    char d[64];
    const cJSON *act = optional(root, "hidden_act");
    const cJSON *scaling = optional(root, "rope_scaling");
    int flag = 0;
    rk_status st;

    /* GPT-NeoX defaults to "gelu", which Hugging Face maps to the exact erf
     * form; the tanh approximations give different logits. */
    if (act && !cJSON_IsString(act))
        return rk_fail(RK_ECONFIG, "config hidden_act is %s; expected \"gelu\"", describe(act, d, sizeof d));
    if (act && strcmp(act->valuestring, "gelu") != 0)
        return rk_fail(RK_ECONFIG,
                       "config hidden_act '%.40s' is not supported: rankkv implements only "
                       "'gelu' (exact erf GELU)",
                       act->valuestring);

    if ((st = optional_bool(root, "tie_word_embeddings", 0, &flag)) != RK_OK)
        return st;
    if (flag)
        return rk_fail(RK_ECONFIG,
                       "config tie_word_embeddings is true: rankkv expects gpt_neox's separate "
                       "embed_out matrix");
    if ((st = optional_bool(root, "attention_bias", 1, &flag)) != RK_OK)
        return st;
    if (!flag)
        return rk_fail(RK_ECONFIG,
                       "config attention_bias is false: rankkv expects gpt_neox attention with biases");

    if (scaling) {
        if (!cJSON_IsObject(scaling))
            return rk_fail(RK_ECONFIG, "config rope_scaling is %s; rope scaling is not supported",
                           describe(scaling, d, sizeof d));
        if (!optional(scaling, "rope_type") && !optional(scaling, "type"))
            return rk_fail(RK_ECONFIG,
                           "config rope_scaling is set: rope scaling is not supported, rankkv "
                           "implements only the unscaled 'default' rotary embedding");
        if ((st = check_rope_type(scaling, "rope_scaling")) != RK_OK)
            return st;
    }
    return RK_OK;
}

static rk_status read_rotary(const cJSON *root, rk_config *c)
{
    char d[64];
    const cJSON *rp = optional(root, "rope_parameters");
    rk_spelling pct = {NULL, 0.25}, base = {NULL, 10000.0};
    rk_status st;

    if (rp) {
        if (!cJSON_IsObject(rp))
            return rk_fail(RK_ECONFIG, "config rope_parameters is %s; expected an object",
                           describe(rp, d, sizeof d));
        if ((st = check_rope_type(rp, "rope_parameters")) != RK_OK ||
            (st = take_spelling(rp, "partial_rotary_factor", "rope_parameters.partial_rotary_factor", &pct)) != RK_OK ||
            (st = take_spelling(rp, "rope_theta", "rope_parameters.rope_theta", &base)) != RK_OK)
            return st;
    }
    if ((st = take_spelling(root, "partial_rotary_factor", "partial_rotary_factor", &pct)) != RK_OK ||
        (st = take_spelling(root, "rotary_pct", "rotary_pct", &pct)) != RK_OK ||
        (st = take_spelling(root, "rope_theta", "rope_theta", &base)) != RK_OK ||
        (st = take_spelling(root, "rotary_emb_base", "rotary_emb_base", &base)) != RK_OK)
        return st;

    if (!(pct.value >= 0.0 && pct.value <= 1.0))
        return rk_fail(RK_ECONFIG, "config %s is %.17g; expected a fraction in [0, 1]",
                       pct.key ? pct.key : "rotary_pct", pct.value);
    if (!(base.value > 0.0))
        return rk_fail(RK_ECONFIG, "config %s is %.17g; expected a positive rotary base",
                       base.key ? base.key : "rotary_emb_base", base.value);

    /* Truncation, not rounding: Hugging Face computes int(head_size * rotary_pct). */
    c->rotary_pct = pct.value;
    c->rope_base = base.value;
    c->rotary_dims = (int)(c->head_dim * pct.value);
    if (c->rotary_dims % 2 != 0)
        return rk_fail(RK_ECONFIG,
                       "config rotary dims int(head_dim %d * %s %.17g) = %d is odd; rotary "
                       "embeddings rotate pairs, so it must be even",
                       c->head_dim, pct.key ? pct.key : "rotary_pct", pct.value, c->rotary_dims);
    return RK_OK;
}

static rk_status read_token_id(const cJSON *root, const char *name, int vocab, int *out)
{
    const cJSON *v = optional(root, name);
    *out = 0;
    if (!v)
        return RK_OK;
    return int_value(v, name, 0, vocab - 1, out);
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* Fails when the object OBJ (at WHERE, "" for the top level) holds a key
 * twice; sorted, so that a config of many keys costs n log n. */
static rk_status unique_keys(const cJSON *obj, const char *where)
{
    const int n = cJSON_GetArraySize(obj);
    const cJSON **keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
    const cJSON *c;
    rk_status st = RK_OK;
    int i = 0;

    if (!keys)
        return rk_fail(RK_ENOMEM, "config: out of memory checking %d keys", n);
    cJSON_ArrayForEach(c, obj)
        keys[i++] = c;
    qsort(keys, (size_t)n, sizeof *keys, by_key);
    for (i = 1; i < n && st == RK_OK; i++)
        if (strcmp(keys[i - 1]->string, keys[i]->string) == 0)
            st = rk_fail(RK_EFORMAT,
                         "config has the key '%.60s' twice (%s%s): Hugging Face reads the last, so "
                         "the file is ambiguous",
                         keys[i]->string, *where ? "in " : "at the top level", where);
    free(keys);
    return st;
}

/* Hugging Face reads config.json with json.load, which keeps the last of two
 * equal keys, and cJSON keeps the first: a duplicate anywhere in the file
 * could make rankkv run another model than the one the file describes. */
static rk_status no_duplicate_keys(const cJSON *v, const char *where)
{
    char inner[128];
    const cJSON *c;
    int i = 0;
    rk_status st;

    if (cJSON_IsObject(v) && (st = unique_keys(v, where)) != RK_OK)
        return st;
    cJSON_ArrayForEach(c, v) {
        if (cJSON_IsObject(v))
            snprintf(inner, sizeof inner, "%s%s%s", where, *where ? "." : "", c->string);
        else
            snprintf(inner, sizeof inner, "%s[%d]", where, i++);
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && (st = no_duplicate_keys(c, inner)) != RK_OK)
            return st;
    }
    return RK_OK;
}

static rk_status parse_root(const cJSON *root, rk_config *c)
{
    const cJSON *eps = optional(root, "layer_norm_eps");
    double eps_value = 1e-5;
    rk_status st;

    if ((st = check_architecture(root)) != RK_OK || (st = check_features(root)) != RK_OK)
        return st;
    if ((st = required_int(root, "hidden_size", RK_MAX_HIDDEN, &c->hidden)) != RK_OK ||
        (st = required_int(root, "num_hidden_layers", RK_MAX_LAYERS, &c->n_layers)) != RK_OK ||
        (st = required_int(root, "num_attention_heads", RK_MAX_HIDDEN, &c->n_heads)) != RK_OK ||
        (st = required_int(root, "intermediate_size", RK_MAX_FFN, &c->ffn)) != RK_OK ||
        (st = required_int(root, "vocab_size", RK_MAX_VOCAB, &c->vocab)) != RK_OK ||
        (st = required_int(root, "max_position_embeddings", RK_MAX_POS, &c->max_pos)) != RK_OK)
        return st;

    if (c->hidden % c->n_heads != 0)
        return rk_fail(RK_ECONFIG,
                       "config hidden_size %d is not divisible by num_attention_heads %d",
                       c->hidden, c->n_heads);
    c->head_dim = c->hidden / c->n_heads;
    if (c->head_dim % 2 != 0)
        return rk_fail(RK_ECONFIG,
                       "config head dim hidden_size/num_attention_heads = %d is odd; it must be even",
                       c->head_dim);

    if (eps && (st = number_value(eps, "layer_norm_eps", &eps_value)) != RK_OK)
        return st;
    if (!(eps_value > 0.0 && eps_value < 1.0) || (float)eps_value == 0.0f)
        return rk_fail(RK_ECONFIG, "config layer_norm_eps is %.17g; expected a small positive number in (0, 1)",
                       eps_value);
    c->ln_eps = (float)eps_value;

    if ((st = optional_bool(root, "use_parallel_residual", 1, &c->parallel_residual)) != RK_OK ||
        (st = read_rotary(root, c)) != RK_OK ||
        (st = read_token_id(root, "bos_token_id", c->vocab, &c->bos_id)) != RK_OK ||
        (st = read_token_id(root, "eos_token_id", c->vocab, &c->eos_id)) != RK_OK)
        return st;
    const cJSON *seed = optional(root, "rankkv_random_weights_seed");
    if (cJSON_IsNumber(seed)) {
        c->random_weights = 1;
        c->random_seed = seed->valuedouble;
    }
    return RK_OK;
}

rk_status rk_config_parse(const char *json, size_t len, rk_config *cfg)
{
    rk_config c;
    cJSON *root;
    char *text;
    const char *end = NULL;
    rk_status st;

    if (!json || !cfg)
        return rk_fail(RK_EINVAL, "rk_config_parse: NULL argument");
    if (len > RK_CONFIG_MAX_BYTES)
        return rk_fail(RK_EFORMAT, "config is %zu bytes; a config.json is at most %u", len,
                       RK_CONFIG_MAX_BYTES);
    /* A terminated private copy keeps cJSON (not built with our sanitizers)
     * from ever looking past the caller's bytes. */
    text = malloc(len + 1);
    if (!text)
        return rk_fail(RK_ENOMEM, "config: out of memory copying %zu bytes", len);
    memcpy(text, json, len);
    text[len] = '\0';
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0;
        free(text);
        return rk_fail(RK_EFORMAT, "config is not valid JSON (error near byte %zu)", at);
    }
    while (end < text + len && *end != '\0' && strchr(" \t\r\n", *end))
        end++;
    if (end != text + len) {
        size_t at = (size_t)(end - text);
        cJSON_Delete(root);
        free(text);
        return rk_fail(RK_EFORMAT, "config has stray bytes after the JSON value (at byte %zu)", at);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        free(text);
        return rk_fail(RK_EFORMAT, "config is not a JSON object");
    }
    memset(&c, 0, sizeof c);
    if ((st = no_duplicate_keys(root, "")) == RK_OK)
        st = parse_root(root, &c);
    cJSON_Delete(root);
    free(text);
    if (st == RK_OK)
        *cfg = c;
    return st;
}

rk_status rk_config_load(const char *path, rk_config *cfg)
{
    char msg[1024];
    char *buf;
    size_t len;
    rk_status st;

    if (!path || !cfg)
        return rk_fail(RK_EINVAL, "rk_config_load: NULL argument");
    if ((st = rk_read_file(path, RK_CONFIG_MAX_BYTES, &buf, &len)) != RK_OK)
        return st;
    st = rk_config_parse(buf, len, cfg);
    free(buf);
    if (st != RK_OK) {
        /* Prefix the file name; the message is copied out first because
         * rk_fail formats into the same per-thread buffer. */
        snprintf(msg, sizeof msg, "%s", rk_last_error());
        return rk_fail(st, "%s: %s", path, msg);
    }
    return RK_OK;
}
