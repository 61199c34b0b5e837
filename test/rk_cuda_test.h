/* What the CUDA kernels' tests share on top of rk_test.h. */
#ifndef RK_CUDA_TEST_H
#define RK_CUDA_TEST_H

#include <cuda_runtime.h>

#include "rk_test.h"

/* A failed CUDA call ends the test at once: what follows would only read
 * what the failed call left. */
#define CUDA_OK(call)                                                                      \
    do {                                                                                   \
        cudaError_t err_ = (call);                                                         \
        if (err_ != cudaSuccess) {                                                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                  \
                    cudaGetErrorString(err_));                                             \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#endif
