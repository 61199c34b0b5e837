/* rankkv-make-random-model: writes a GPT-NeoX checkpoint of any shape with
 * deterministic random fp16 weights (config.json + model.safetensors), so
 * that speed and memory of models whose weights cannot be had here (such as
 * Pythia-2.8B) can be measured. Its outputs mean nothing as language. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "cli.h"
#include "config.h"
#include "safetensors.h"
#include "weights.h"

static const char usage[] =
    "usage: rankkv-make-random-model --out DIR [--preset pythia-2.8b] [shape options]\n"
    "Writes DIR/config.json (Pythia key style) and DIR/model.safetensors (F16),\n"
    "with weights drawn from a seeded generator: the same options give the same bytes.\n"
    "Their size is stated, and checked against the free space, before writing.\n"
    "\n";

typedef struct {
    int layers, hidden, heads, ffn, vocab, max_pos;
    double rotary_pct;
} shape;

static const struct {
    const char *name;
    shape s;
} presets[] = {
    {"pythia-2.8b", {32, 2560, 32, 10240, 50304, 2048, 0.25}},
    /* Pythia-160M's shape: the draft of a 2.8B target in speculative runs. */
    {"pythia-160m", {12, 768, 12, 3072, 50304, 2048, 0.25}},
    {"pythia-nano-shape", {4, 160, 2, 640, 8192, 2048, 0.25}},
    {"pythia-mini-shape", {24, 256, 4, 1024, 8192, 2048, 0.25}},
};

typedef struct {
    cJSON *header;
    size_t offset;
} header_state;

static void add_to_header(const char *name, int ndim, const int64_t *shp, void *arg)
{
    header_state *h = arg;
    size_t n = 1;
    cJSON *t = cJSON_CreateObject(), *dims = cJSON_CreateArray(), *offs = cJSON_CreateArray();
    for (int d = 0; d < ndim; d++) {
        cJSON_AddItemToArray(dims, cJSON_CreateNumber((double)shp[d]));
        n *= (size_t)shp[d];
    }
    cJSON_AddStringToObject(t, "dtype", "F16");
    cJSON_AddItemToObject(t, "shape", dims);
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)h->offset));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(h->offset + 2 * n)));
    cJSON_AddItemToObject(t, "data_offsets", offs);
    cJSON_AddItemToObject(h->header, name, t);
    h->offset += 2 * n;
}

typedef struct {
    FILE *f;
    uint64_t rng;
    size_t written, total;
    int shown; /* last percentage printed */
    uint16_t buf[1 << 16];
    int failed;
} data_state;

static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform values with the standard deviation of HF's initialisation (0.02)
 * for matrices; LayerNorm weights near 1 and small biases keep activations
 * in the range a trained model has. */
static void write_tensor(const char *name, int ndim, const int64_t *shp, void *arg)
{
    data_state *d = arg;
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shp[i];
    const int is_ln = strstr(name, "layernorm") || strstr(name, "layer_norm");
    const int is_bias = strstr(name, ".bias") != NULL;
    const float center = is_ln && !is_bias ? 1.0f : 0.0f;
    const float half_width = is_ln ? 0.1f : is_bias ? 0.02f : 0.0346f; /* 0.02 * sqrt(3) */
    for (size_t done = 0; done < n && !d->failed;) {
        size_t k = n - done < (sizeof d->buf / 2) ? n - done : sizeof d->buf / 2;
        for (size_t i = 0; i < k; i++) {
            float u = (float)(next_u64(&d->rng) >> 40) * (1.0f / 16777216.0f);
            d->buf[i] = rk_f32_to_f16(center + half_width * (2.0f * u - 1.0f));
        }
        if (fwrite(d->buf, 2, k, d->f) != k)
            d->failed = 1;
        done += k;
        d->written += 2 * k;
    }
    int pct = (int)(100.0 * d->written / d->total);
    if (pct != d->shown) {
        fprintf(stderr, "\r[random-model] %3d%%", pct);
        d->shown = pct;
    }
}

/* Says how much is about to be written, and refuses before the first byte
 * when the file system has no room for it. */
static void announce(const char *dir, const rk_config *cfg, size_t bytes)
{
    fprintf(stderr, "[random-model] writing %.2f GB of F16 weights to %s (%d layers, hidden %d)\n",
            bytes / 1e9, dir, cfg->n_layers, cfg->hidden);
    struct statvfs fs;
    if (statvfs(dir, &fs) != 0)
        return;
    const double free_bytes = (double)fs.f_bavail * fs.f_frsize;
    if (free_bytes < (double)bytes) {
        rk_fail(RK_EIO, "%s has %.2f GB free; the model needs %.2f GB", dir, free_bytes / 1e9,
                bytes / 1e9);
        cli_die();
    }
}

int main(int argc, char **argv)
{
    cli_init("rankkv-make-random-model");
    const char *out = NULL, *preset = "pythia-2.8b";
    shape s = {0};
    uint64_t seed = 1;
    int have_preset = 0;
    /* A negative rotary_pct: not given (0 is a valid value). */
    shape over = {.rotary_pct = -1};
    const cli_opt opts[] = {
        CLI_STRING_OPT("--out", &out, "DIR", "output directory (created if missing)"),
        CLI_STRING_OPT("--preset", &preset, "NAME",
                       "pythia-2.8b (default), pythia-160m, pythia-nano-shape or\n"
                       "pythia-mini-shape"),
        CLI_NUM("--layers", &over.layers, 1, RK_MAX_LAYERS, "N", "override the preset's layers"),
        CLI_NUM("--hidden", &over.hidden, 2, 65536, "N", "override the preset's hidden size"),
        CLI_NUM("--heads", &over.heads, 1, 1024, "N", "override the preset's heads"),
        CLI_NUM("--ffn", &over.ffn, 1, 1 << 20, "N", "override the preset's MLP width"),
        CLI_NUM("--vocab", &over.vocab, 1, 1 << 22, "N", "override the preset's vocabulary"),
        CLI_NUM("--max-pos", &over.max_pos, 1, 1 << 20, "N", "override the preset's positions"),
        CLI_NUM("--rotary-pct", &over.rotary_pct, 0, 1, "P", "override the preset's rotary_pct"),
        CLI_NUM("--seed", &seed, 0, 0x7fffffffL, "S", "generator seed (default 1)"),
        CLI_HELP_OPT,
        {0}};
    cli_parse(argc, argv, usage, opts);
    if (!out)
        cli_usage_error("--out DIR is required");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, preset) == 0)
            s = presets[i].s, have_preset = 1;
    if (!have_preset)
        cli_usage_error("unknown preset '%s'", preset);
    if (over.layers) s.layers = over.layers;
    if (over.hidden) s.hidden = over.hidden;
    if (over.heads) s.heads = over.heads;
    if (over.ffn) s.ffn = over.ffn;
    if (over.vocab) s.vocab = over.vocab;
    if (over.max_pos) s.max_pos = over.max_pos;
    if (over.rotary_pct >= 0) s.rotary_pct = over.rotary_pct;

    /* The config goes through the same parser a user's checkpoint does, so
     * an impossible shape is refused before gigabytes are written. */
    char cfg_text[1024];
    cli_fmt(cfg_text, sizeof cfg_text,
             "{\n  \"architectures\": [\"GPTNeoXForCausalLM\"],\n  \"model_type\": \"gpt_neox\",\n"
             "  \"bos_token_id\": 0,\n  \"eos_token_id\": 0,\n  \"hidden_act\": \"gelu\",\n"
             "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"layer_norm_eps\": 1e-05,\n"
             "  \"max_position_embeddings\": %d,\n  \"num_attention_heads\": %d,\n"
             "  \"num_hidden_layers\": %d,\n  \"rotary_emb_base\": 10000,\n  \"rotary_pct\": %g,\n"
             "  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"float16\",\n"
             "  \"use_parallel_residual\": true,\n  \"vocab_size\": %d,\n"
             "  \"rankkv_random_weights_seed\": %llu\n}\n",
             s.hidden, s.ffn, s.max_pos, s.heads, s.layers, s.rotary_pct, s.vocab,
             (unsigned long long)seed);
    rk_config cfg;
    if (rk_config_parse(cfg_text, strlen(cfg_text), &cfg) != RK_OK)
        cli_die();
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        rk_fail(RK_EIO, "cannot create %s: %s", out, strerror(errno));
        cli_die();
    }
    cli_str cfg_path = {0}, st_path = {0};
    cli_str_add(&cfg_path, "%s/config.json", out);
    cli_str_add(&st_path, "%s/model.safetensors", out);
    cli_output("--out's config", cfg_path.s, CLI_FILE_ONLY);
    cli_output("--out's weights", st_path.s, CLI_FILE_ONLY);
    cli_check_paths(NULL);

    header_state h = {cJSON_CreateObject(), 0};
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddStringToObject(meta, "rankkv", "random weights, not a trained model");
    cJSON_AddItemToObject(h.header, "__metadata__", meta);
    if (rk_weights_foreach(&cfg, add_to_header, &h) != RK_OK)
        cli_die();
    char *json = cJSON_PrintUnformatted(h.header);
    data_state *d = calloc(1, sizeof *d);
    if (!json || !d) {
        rk_fail(RK_ENOMEM, "out of memory for the safetensors header");
        cli_die();
    }
    size_t hlen = strlen(json), padded = (hlen + 7) / 8 * 8;
    uint64_t le = padded;
    announce(out, &cfg, 8 + padded + h.offset);

    /* Both files are complete before either is renamed into place, so a
     * failure leaves the directory's earlier model whole. */
    d->f = cli_out_open(st_path.s);
    d->rng = seed;
    d->total = h.offset;
    fwrite(&le, 8, 1, d->f);
    fwrite(json, 1, hlen, d->f);
    for (size_t i = hlen; i < padded; i++)
        fputc(' ', d->f);
    if (rk_weights_foreach(&cfg, write_tensor, d) != RK_OK)
        cli_die();
    fputc('\n', stderr);
    FILE *cf = cli_out_open(cfg_path.s);
    fputs(cfg_text, cf);
    cli_out_close(d->f);
    cli_out_close(cf);
    free(json);
    free(d);
    cli_str_free(&cfg_path);
    cli_str_free(&st_path);
    cJSON_Delete(h.header);
    return 0;
}
