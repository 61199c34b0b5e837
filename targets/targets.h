/* The targets this build has, by name ("cpu", "cuda"). */
#ifndef RK_TARGETS_H
#define RK_TARGETS_H

#include "ops.h"

/* NULL, with a message in rk_last_error(), when NAME is unknown or was not
 * built into this binary. */
const rk_ops *rk_target_find(const char *name);

const rk_ops *rk_cpu_ops(void);
const rk_ops *rk_cuda_ops(void);

#endif
