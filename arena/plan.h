/* Memory plan: every buffer the runtime uses is a named region at a fixed
 * offset inside one allocation. The plan is computed, and can be printed,
 * before anything is allocated; the runtime then makes one allocation of
 * plan.total bytes and never allocates again. */
#ifndef RK_PLAN_H
#define RK_PLAN_H

#include <stddef.h>
#include <stdio.h>

#define RK_PLAN_MAX_REGIONS 64
#define RK_PLAN_ALIGN 256 /* satisfies SIMD loads and cuBLASLt pointer alignment */

typedef struct {
    char name[40];
    size_t offset;
    size_t size;
} rk_region;

typedef struct {
    char name[32];
    rk_region regions[RK_PLAN_MAX_REGIONS];
    int n_regions;
    size_t total;
} rk_plan;

void rk_plan_init(rk_plan *p, const char *name);

/* Appends a region of SIZE bytes at the next aligned offset and returns the
 * offset. Aborts only on programmer error (more than RK_PLAN_MAX_REGIONS). */
size_t rk_plan_add(rk_plan *p, const char *name, size_t size);

const rk_region *rk_plan_find(const rk_plan *p, const char *name);

void rk_plan_print(const rk_plan *p, FILE *f);

#endif
