/* GPT-NeoX model configuration, read from a Hugging Face config.json. */
#ifndef RK_CONFIG_H
#define RK_CONFIG_H

#include <stddef.h>

#include "rk_error.h"

#define RK_MAX_LAYERS 256

typedef struct {
    int n_layers;
    int hidden;
    int n_heads;
    int head_dim;       /* hidden / n_heads */
    int ffn;            /* intermediate_size */
    int vocab;
    int max_pos;        /* max_position_embeddings */
    int rotary_dims;    /* int(head_dim * rotary_pct), always even */
    double rotary_pct;
    double rope_base;
    float ln_eps;
    int parallel_residual;
    int bos_id;
    int eos_id;
    /* rankkv_random_weights_seed, written by rankkv-make-random-model: the
     * checkpoint holds seeded random weights, not a trained model. */
    int random_weights;
    double random_seed;
} rk_config;

/* Parses config.json text. Accepts the key style of the published Pythia
 * checkpoints (rotary_pct, rotary_emb_base) and the newer one
 * (partial_rotary_factor, rope_theta, rope_parameters). Refuses anything that
 * is not gpt_neox, values that are missing or absurd, and a key that appears
 * twice in any object of the file, with a message. */
rk_status rk_config_parse(const char *json, size_t len, rk_config *cfg);

/* Reads and parses a config.json file. */
rk_status rk_config_load(const char *path, rk_config *cfg);

#endif
