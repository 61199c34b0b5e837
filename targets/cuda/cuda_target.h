/* What the CUDA target shares with code that runs on its stream outside the
 * op table (rank measurement). */
#ifndef RK_CUDA_TARGET_H
#define RK_CUDA_TARGET_H

#include <cuda_runtime_api.h>

/* The stream every op of the target's context runs on. */
cudaStream_t rk_cuda_stream(void *target_ctx);

#endif
