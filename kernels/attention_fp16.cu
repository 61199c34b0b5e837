/* The attention kernels over a cache of fp16 rows. */
#include "attention_kernels.cuh"

namespace rk_attn {
RK_ATTENTION_INSTANCES(16)
}
