/* The attention kernels over a KIVI cache, its three formats (kv_rows.h). */
#include "attention_kernels.cuh"

namespace rk_attn {
RK_KIVI_FORMATS(RK_ATTENTION_INSTANCES)
}
