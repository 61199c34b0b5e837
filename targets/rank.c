#include "rank.h"

#include <string.h>

#include "targets.h"

const rk_rank_ops *rk_rank_find(const char *name)
{
    /* The targets' own lookup says what is unknown or not built. */
    if (!rk_target_find(name))
        return NULL;
#ifdef RANKKV_HAVE_CUDA
    if (strcmp(name, "cuda") == 0)
        return rk_cuda_rank_ops();
#endif
    return rk_cpu_rank_ops();
}
