/* Memory plan: every buffer the runtime uses is a named region at a fixed
 * offset inside one allocation. The plan is computed, and can be printed,
 * before anything is allocated; the runtime then makes one allocation of
 * plan.total bytes and never allocates again.
 *
 * A region lives always, or only while a prompt is prefilled, or only while
 * tokens are decoded. The always regions come first; the prefill regions
 * and the decode regions then share one range after them, since no byte of
 * one phase is read in the other, so the total is the always part plus the
 * larger of the two phase parts. */
#ifndef RK_PLAN_H
#define RK_PLAN_H

#include <stddef.h>
#include <stdio.h>

/* Room for two models' arenas merged into one (a speculative decoder's
 * draft and target) and their own regions beside them. */
#define RK_PLAN_MAX_REGIONS 128
#define RK_PLAN_NAME_LEN 64 /* with the prefixes of merged plans and the NUL */
#define RK_PLAN_ALIGN 256   /* satisfies SIMD loads and cuBLASLt pointer alignment */

typedef enum { RK_PHASE_ALWAYS, RK_PHASE_PREFILL, RK_PHASE_DECODE } rk_phase;

const char *rk_phase_name(rk_phase phase);

typedef struct {
    char name[RK_PLAN_NAME_LEN];
    size_t offset;
    size_t size;
    rk_phase phase;
} rk_region;

typedef struct {
    char name[32];
    rk_region regions[RK_PLAN_MAX_REGIONS];
    int n_regions;
    /* Set by the first phase region: from then on the always part is closed
     * and both phases lay their regions out from SHARED. */
    int phased;
    size_t shared;
    size_t total;
} rk_plan;

void rk_plan_init(rk_plan *p, const char *name);

/* Lays out a region of SIZE bytes that lives always and returns its offset,
 * final at once. Aborts only on programmer error: more than
 * RK_PLAN_MAX_REGIONS, a name too long, or a phase region already added. */
size_t rk_plan_add(rk_plan *p, const char *name, size_t size);

/* The same for a region that lives only in PHASE; its offset is final at
 * once too, and may be shared with regions of the other phase. */
size_t rk_plan_add_phase(rk_plan *p, const char *name, size_t size, rk_phase phase);

/* Lays SRC out whole in DST's always part, its regions named
 * "PREFIX.name" with their phases, and returns the offset SRC's offset 0
 * lands at: a model planned alone runs unchanged at that offset of a
 * shared arena. Aborts, as rk_plan_add does, once DST has phase regions. */
size_t rk_plan_append(rk_plan *dst, const rk_plan *src, const char *prefix);

/* The region named NAME (prefixed in a merged plan), or NULL. */
const rk_region *rk_plan_find(const rk_plan *p, const char *name);

/* Bytes of the arena PHASE reaches: the end of the last region live in it
 * (the always regions and PHASE's own). The total is the larger peak. */
size_t rk_plan_peak(const rk_plan *p, rk_phase phase);

void rk_plan_print(const rk_plan *p, FILE *f);

#endif
