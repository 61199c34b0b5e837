/* Per-layer KV-cache budgets: how many positions each layer keeps after
 * compression. Every allocation here hands out exactly layers × average
 * positions in integers, so methods compared at one average use the same
 * memory. The same code serves uniform, pyramid, explicit and
 * rank-driven allocations. */
#ifndef RK_KV_BUDGET_H
#define RK_KV_BUDGET_H

#include "rk_error.h"

/* Integer budgets proportional to WEIGHT[0..layers) (all finite and > 0,
 * any scale) whose sum is exactly layers × average and each at least
 * min_budget: the floor of every share, then the leftover positions to the
 * largest remainders (the earlier layer on ties). Refused: layers × average
 * above INT_MAX, and weights whose sum times the positions to share
 * overflows a double. */
rk_status rk_budget_from_weights(const double *weight, int layers, int average, int min_budget,
                                 int *budget);

/* Every layer keeps AVERAGE. */
rk_status rk_budget_uniform(int layers, int average, int min_budget, int *budget);

/* PyramidKV's schedule: budgets fall linearly from the bottom layer to the
 * top around the same total. Above the observation window each layer gets a
 * share on a line from (2 − 1/beta)·s at layer 0 down to s/beta at the top,
 * s = average − window (beta finite and ≥ 1; PyramidKV uses 20; beta = 1 is
 * uniform). */
rk_status rk_budget_pyramid(int layers, int average, int window, double beta, int *budget);

/* That schedule's line, the shares above the window, into WEIGHT[0..layers). */
rk_status rk_budget_pyramid_weights(int layers, int average, int window, double beta,
                                    double *weight);

/* Every layer keeps the WINDOW, and the positions above it are shared by
 * WEIGHT (as rk_budget_from_weights): exactly layers × average in all. */
rk_status rk_budget_above_window(const double *weight, int layers, int average, int window,
                                 int *budget);

/* Caps BUDGET[0..layers) at MAX_BUDGET (a layer cannot keep more rows than
 * the prompt has): a layer above it keeps MAX_BUDGET and its surplus goes to
 * the others in proportion to their shares above MIN_BUDGET, so the total
 * and the order of the others stay. RK_ELIMIT when the total is more than
 * layers × max_budget. */
rk_status rk_budget_cap(int *budget, int layers, int min_budget, int max_budget);

/* Checks an explicit array (from a file or a compiled-in profile): LAYERS
 * entries, each at least min_budget and at most max_budget, summing to
 * layers × average. */
rk_status rk_budget_check(const int *budget, int n, int layers, int average, int min_budget,
                          int max_budget);

#endif
