/* The attention kernels over a cache of int8 rows. */
#include "attention_kernels.cuh"

namespace rk_attn {
RK_ATTENTION_INSTANCES(8)
}
