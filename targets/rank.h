/* The rank-measurement ops this binary links, by target name. Only the
 * calibrate tool, the tests and the dynamic build link them. */
#ifndef RK_RANK_H
#define RK_RANK_H

#include "rank_ops.h"

/* NULL, with a message in rk_last_error(), when NAME has no rank
 * measurement in this build. */
const rk_rank_ops *rk_rank_find(const char *name);

const rk_rank_ops *rk_cpu_rank_ops(void);
const rk_rank_ops *rk_cuda_rank_ops(void);

#endif
