/* Writes a static RankKV profile as a C header: the model's identity, the
 * calibrated per-layer and per-head effective ranks, and a budget table for
 * every strategy × tabulated average, all `static const` with
 * _Static_asserts on their sizes. The budgets come from core's strategy
 * code, the one the runtime uses. Also reads back, and checks, the JSON of
 * an earlier run that the header can be regenerated from. */
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
 * profile_<model>.h → rk_profile_<model> with every byte but ASCII letters,
 * digits and '_' as '_', and a '_' before a leading digit (the rule CMake's
 * MAKE_C_IDENTIFIER follows when it lists the compiled-in profiles). */
void rk_codegen_symbol(const char *path, char *buf, size_t len);

/* Writes C's header as SYMBOL (a C identifier). Its numbers must be finite
 * (ranks as rk_budget_from_ranks takes them, stds and head ranks >= 0).
 * Strings from outside reach the header only escaped: in its comment as
 * printable ASCII that cannot end the comment or form a trigraph, in the
 * name, data and command fields as C string literals that hold exactly
 * their bytes. */
rk_status rk_codegen_profile(const rk_calibration *c, const char *symbol, FILE *out);

/* The bounds of an earlier run's settings: rankkv-calibrate's --samples and
 * --seq-len ranges, and config.json's largest hidden_size. */
#define RK_CALIBRATION_MAX_SAMPLES 100000
#define RK_CALIBRATION_MAX_SEQ_LEN (1 << 16)
#define RK_CALIBRATION_MAX_HIDDEN 65536

/* An earlier run as rankkv-calibrate --json writes it: the model's identity,
 * the settings, and every sample's per-head effective ranks. */
typedef struct {
    rk_identity id;
    int samples, seq_len;
    char data[4096], command[4096];
    double *ranks; /* [samples][layers × heads], malloc'd; the caller frees it */
} rk_calibration_run;

/* Parses and checks the LEN bytes of TEXT, an earlier run's --json (PATH
 * names it in messages). "layers", "heads", "hidden", "samples" and
 * "seq_len" are integers within calibrate's and the config's limits,
 * hidden a multiple of heads; "identity" is 16 hex digits; "model", "data"
 * and "command" fit their fields; "layer_rank_mean" and "layer_rank_std"
 * have one number per layer, "sample_layer_head_ranks" one row per sample
 * of layers × heads. An effective rank is the exponential of an entropy
 * over at most seq_len singular values, so every rank and mean must lie in
 * [1, seq_len], every std in [0, seq_len]. */
rk_status rk_calibration_parse(const char *text, size_t len, const char *path,
                               rk_calibration_run *run);

#endif
