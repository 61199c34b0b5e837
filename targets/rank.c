#include "rank.h"

#include <string.h>

const rk_rank_ops *rk_rank_find(const char *name)
{
    if (strcmp(name, "cpu") == 0)
        return rk_cpu_rank_ops();
    if (strcmp(name, "cuda") == 0) {
#ifdef RANKKV_HAVE_CUDA
        return rk_cuda_rank_ops();
#else
        rk_fail(RK_EDEVICE, "this build has no CUDA target (configure with -DRANKKV_CUDA=ON "
                            "on a machine with nvcc)");
        return NULL;
#endif
    }
    rk_fail(RK_EINVAL, "unknown target '%s' (expected cpu or cuda)", name);
    return NULL;
}
