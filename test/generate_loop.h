/* The steady-state loop the allocation tests watch: a prefill, then STEPS
 * sampled tokens fed back one at a time. Returns 0 on any failure. */
#ifndef RK_GENERATE_LOOP_H
#define RK_GENERATE_LOOP_H

#include "model.h"
#include "sampler.h"

static inline int rk_test_generate(rk_model *m, rk_sampler *s, const int32_t *prompt, int n,
                                   int steps)
{
    rk_seq seq;
    rk_seq_reset(&seq);
    if (rk_model_prefill(m, &seq, prompt, n) != RK_OK)
        return 0;
    int32_t next = rk_sample(s, rk_model_logits(m, 0));
    for (int i = 0; i < steps; i++) {
        if (rk_model_forward(m, &seq, &next, 1) != RK_OK)
            return 0;
        next = rk_sample(s, rk_model_logits(m, 0));
    }
    return 1;
}

#endif
