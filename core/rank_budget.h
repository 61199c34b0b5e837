/* RankKV's budget strategies: per-layer KV budgets from per-layer effective
 * ranks. One implementation serves the compiled-in static profiles, their
 * generator and the dynamic build; every strategy hands out exactly
 * layers × average positions, each layer at least min_budget (via
 * rk_budget_from_weights). */
#ifndef RK_RANK_BUDGET_H
#define RK_RANK_BUDGET_H

#include "rk_error.h"

typedef enum {
    RK_RANK_PROPORTIONAL, /* budget ∝ rank */
    RK_RANK_SOFTMAX,      /* budget ∝ exp(rank / temperature) */
    RK_RANK_ADAPTIVE,     /* layers in rank-quantile tiers; a tier's layers share its mean rank */
    RK_RANK_POWER,        /* budget ∝ rank^power */
    RK_RANK_RANDOM,       /* ablation: proportional budgets, shuffled by a seed */
    RK_RANK_INVERSE,      /* ablation: proportional budgets, the largest to the lowest rank */
    RK_RANK_N_STRATEGIES
} rk_rank_strategy;

#define RK_RANK_STRATEGIES "proportional, softmax, adaptive, power, random, inverse"

/* Defaults: a temperature of the mean rank (exp(rank / mean) weighs the
 * highest-rank layers a few times the lowest), power 2, four tiers
 * (quartiles), seed 1. */
#define RK_RANK_POWER_DEFAULT 2.0
#define RK_RANK_TIERS_DEFAULT 4
#define RK_RANK_SEED_DEFAULT 1u

/* The largest effective rank a strategy takes: a rank is at most the
 * length of the sequence it was measured on, and no model the runtime
 * loads has more positions (config.c's max_position_embeddings limit). */
#define RK_RANK_MAX (1 << 20)

typedef struct {
    rk_rank_strategy strategy;
    double temperature; /* softmax; 0: the mean rank; finite, never negative */
    double power;       /* power; 0: RK_RANK_POWER_DEFAULT; finite, never negative */
    int tiers;          /* adaptive; 0: RK_RANK_TIERS_DEFAULT */
    unsigned seed;      /* random; 0: RK_RANK_SEED_DEFAULT */
} rk_rank_allocation;

rk_status rk_rank_strategy_parse(const char *name, rk_rank_strategy *out);
const char *rk_rank_strategy_name(rk_rank_strategy s);

/* Whether A uses every default (the profile tables are made with them). */
int rk_rank_allocation_is_default(const rk_rank_allocation *a);

/* Budgets for LAYERS layers from their mean effective ranks (each in
 * (0, RK_RANK_MAX]). Errors, never NaN shares: a rank out of range, a
 * parameter that is not finite or is negative, a weight that underflows to
 * 0 or overflows (softmax, power), and what rk_budget_from_weights refuses. */
rk_status rk_budget_from_ranks(const rk_rank_allocation *a, const double *rank, int layers,
                               int average, int min_budget, int *budget);

/* PyramidKV's schedule modulated by the ranks (pyramidkv-rankkv): each
 * layer's pyramid share above the WINDOW (rk_budget_pyramid_weights) times
 * its weight under A's strategy, renormalised to the same total, the window
 * kept (rk_budget_above_window). The ablations move the rank weights under
 * the schedule: random shuffles them by A's seed, inverse gives the k-th
 * lowest rank the k-th highest rank's weight. */
rk_status rk_budget_pyramid_ranks(const rk_rank_allocation *a, const double *rank, int layers,
                                  int average, int window, double beta, int *budget);

#endif
