/* A fixed pool of worker threads, made at start-up, that splits an index
 * range across the cores. Dispatch makes no allocation, so the CPU target
 * can use both cores while keeping the no-allocation guarantee (OpenBLAS's
 * own threading allocates on every call). */
#ifndef RK_POOL_H
#define RK_POOL_H

#include "rk_error.h"

/* fn(arg, lo, hi) processes items [lo, hi). */
typedef void (*pool_fn)(void *arg, int lo, int hi);

rk_status pool_start(int threads);
void pool_stop(void);
int pool_threads(void);

/* Runs fn over [0, n) split into contiguous parts, one per thread, and
 * returns when all are done. Parts are aligned to GRAIN items. */
void pool_run(pool_fn fn, void *arg, int n, int grain);

#endif
