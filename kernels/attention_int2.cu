/* The attention kernels over a cache of int2 rows. */
#include "attention_kernels.cuh"

namespace rk_attn {
RK_ATTENTION_INSTANCES(2)
}
