/* Next-token choice from a row of logits: greedy, or temperature with
 * optional top-k and top-p, driven by a seeded RNG so runs repeat. */
#ifndef RK_SAMPLER_H
#define RK_SAMPLER_H

#include <stdint.h>

#include "rk_error.h"

typedef struct {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    uint64_t seed;
} rk_sampling;

typedef struct {
    rk_sampling cfg;
    uint64_t rng;
    int vocab;
    /* Scratch sized once for the vocabulary, so sampling never allocates. */
    int32_t *idx;
    float *prob;
} rk_sampler;

/* Validates the settings (temperature ≥ 0, top_k ≥ 0, 0 < top_p ≤ 1). */
rk_status rk_sampler_init(rk_sampler *s, const rk_sampling *cfg, int vocab);
void rk_sampler_free(rk_sampler *s);

/* New settings (and a fresh RNG from their seed) for an initialised
 * sampler, checked as rk_sampler_init checks them; allocates nothing. */
rk_status rk_sampler_configure(rk_sampler *s, const rk_sampling *cfg);

/* Picks a token from LOGITS (length vocab). Ties in greedy mode go to the
 * lowest id, as torch.argmax does. */
int32_t rk_sample(rk_sampler *s, const float *logits);

/* The same choice made from the top_k largest logits alone (VALS, with their
 * token IDS, in any order; N = the sampler's top_k), as a target that finds
 * them on the device returns them. Needs temperature > 0. */
int32_t rk_sample_top_k(rk_sampler *s, const float *vals, const int32_t *ids, int n);

int32_t rk_argmax(const float *logits, int vocab);

#endif
