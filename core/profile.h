/* A static RankKV profile: a model's per-layer effective ranks measured
 * offline by rankkv-calibrate, and the budget tables made from them, as
 * `static const` data in a generated header (profiles/profile_<model>.h)
 * that the build compiles in. Nothing here measures anything. */
#ifndef RK_PROFILE_H
#define RK_PROFILE_H

#include <stdint.h>

#include "rank_budget.h"
#include "rk_error.h"

/* The averages every profile tabulates. */
#define RK_PROFILE_N_AVERAGES 4
#define RK_PROFILE_AVERAGES {128, 256, 512, 1024}

/* What makes two checkpoints "the same model" for a profile: the shape and
 * a hash of the architecture fields of config.json, whether its weights are
 * the random ones of rankkv-make-random-model (with their seed), every
 * tensor's name and shape, and a sample of its values (the first, middle and
 * last 2048 elements), so that two trainings of one shape (pythia-2.8b and
 * pythia-2.8b-deduped) do not share a profile. Values are hashed as exact
 * float32: an F32 copy of an F16 checkpoint keeps its identity, while an
 * F16 to BF16 conversion rounds them and is another model to a profile. */
typedef struct {
    char name[128]; /* the model directory's name, for messages */
    int layers, heads, hidden;
    uint64_t hash;
} rk_identity;

typedef struct rk_profile {
    const char *name; /* the model it was calibrated on */
    int layers, heads, hidden;
    uint64_t identity;      /* rk_identity.hash */
    int samples, seq_len;   /* calibration: that many sequences of seq_len tokens */
    const char *data;       /* the calibration text */
    const char *command;    /* the command that generated it */
    const double *rank_mean; /* [layers], over samples of the head mean */
    const double *rank_std;  /* [layers] */
    const double *head_rank; /* [layers × heads], means over samples */
    int min_budget;          /* the tables' smallest layer budget (SnapKV's window) */
    const int *budgets;      /* [RK_RANK_N_STRATEGIES][RK_PROFILE_N_AVERAGES][layers] */
} rk_profile;

/* Reads DIR's config.json, its safetensors headers and the sampled
 * elements of each tensor (a few KiB each, never whole files). */
rk_status rk_identity_of(const char *dir, rk_identity *out);

/* The compiled-in profile for ID; NULL, with a message naming the model and
 * the profiles this build has, when none matches. */
const rk_profile *rk_profile_find(const rk_identity *id);

/* The compiled-in profile for the model in DIR (rk_identity_of, then
 * rk_profile_find) into *OUT; the failing step's status and message. */
rk_status rk_profile_for(const char *dir, const rk_profile **out);

/* RK_OK when P was calibrated on the model ID, else a message. */
rk_status rk_profile_check(const rk_profile *p, const rk_identity *id);

/* Budgets from P: its table when ALLOC has the default parameters and
 * AVERAGE and MIN_BUDGET are tabulated, otherwise the same strategy code on
 * its mean ranks (still no measurement). */
rk_status rk_profile_budgets(const rk_profile *p, const rk_rank_allocation *alloc, int average,
                             int min_budget, int *budget);

/* Profiles this build compiled in (generated from -DRANKKV_PROFILES). */
extern const rk_profile *const rk_compiled_profiles[];
extern const int rk_n_compiled_profiles;

#endif
