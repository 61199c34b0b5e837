/* Writes a static RankKV profile as a C header: the model's identity, the
 * calibrated per-layer and per-head effective ranks, and a budget table for
 * every strategy × tabulated average, all `static const` with
 * _Static_asserts on their sizes. The budgets come from core's strategy
 * code, the one the runtime uses. */
#ifndef RK_PROFILE_CODEGEN_H
#define RK_PROFILE_CODEGEN_H

#include <stdio.h>

#include "profile.h"

/* A calibration result, what the header is made from. */
typedef struct {
    rk_identity id;
    int samples, seq_len;
    const char *data;    /* the calibration text */
    const char *command; /* how it was made */
    const double *rank_mean, *rank_std, *head_rank;
    int min_budget;
} rk_calibration;

/* The C identifier a header named PATH defines its profile as:
 * profile_<model>.h → rk_profile_<model> with non-alphanumerics as '_' (the
 * rule CMake uses when it lists the compiled-in profiles). */
void rk_codegen_symbol(const char *path, char *buf, size_t len);

rk_status rk_codegen_profile(const rk_calibration *c, const char *symbol, FILE *out);

#endif
