/* Two targets' models of the same checkpoint, side by side: the reference
 * (CPU, fp32) and another (CUDA, fp16) prefill the same prompt and then
 * decode greedily, and the logits are compared after each call. */
#ifndef RK_GREEDY_COMPARE_H
#define RK_GREEDY_COMPARE_H

#include <math.h>

#include "model.h"
#include "rk_test.h"
#include "sampler.h"

static inline double rk_rel_l2(const float *ref, const float *x, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        const double d = (double)x[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

typedef struct {
    double prompt_err; /* relative L2 of the last prompt position's logits */
    int same;          /* greedy steps, of those asked, whose tokens agree */
    double worst;      /* the largest relative L2 of a decode step's logits */
} rk_greedy_agreement;

/* PROMPT (N tokens) on fresh sequences of REF and DEV, then up to STEPS
 * greedy tokens, stopping at the first that differs. */
static inline rk_greedy_agreement rk_greedy_compare(rk_model *ref, rk_model *dev,
                                                    const int32_t *prompt, int n, int steps)
{
    const int V = ref->cfg.vocab;
    rk_greedy_agreement r = {0};
    rk_seq seq_ref, seq_dev;
    rk_seq_reset(&seq_ref);
    rk_seq_reset(&seq_dev);
    CHECK(rk_model_prefill(ref, &seq_ref, prompt, n) == RK_OK);
    CHECK(rk_model_prefill(dev, &seq_dev, prompt, n) == RK_OK);
    r.prompt_err = rk_rel_l2(rk_model_logits(ref, 0), rk_model_logits(dev, 0), V);
    for (int t = 0; t < steps; t++) {
        const int32_t a = rk_argmax(rk_model_logits(ref, 0), V);
        const int32_t b = rk_argmax(rk_model_logits(dev, 0), V);
        if (a != b)
            break;
        r.same++;
        if (t + 1 == steps || rk_model_forward(ref, &seq_ref, &a, 1) != RK_OK ||
            rk_model_forward(dev, &seq_dev, &b, 1) != RK_OK)
            break;
        const double e = rk_rel_l2(rk_model_logits(ref, 0), rk_model_logits(dev, 0), V);
        r.worst = e > r.worst ? e : r.worst;
    }
    return r;
}

#endif
