/* The attention kernels over a smartkv cache (kv_rows.h). */
#include "attention_kernels.cuh"

namespace rk_attn {
RK_ATTENTION_INSTANCES(RK_SMART_FORMAT)
}
