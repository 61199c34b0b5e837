/* Programmatic dependent launch, shared by the kernels of the decode step. */
#ifndef RK_LAUNCH_CUH
#define RK_LAUNCH_CUH

#include <cuda_runtime.h>

/* A launch that may begin while the previous kernel in the stream is still
 * running; the kernel's griddepcontrol.wait (rk_wait_previous) marks where
 * that kernel's results are needed, and everything before it may only read
 * data no earlier kernel writes, such as weights. The overlap hides the
 * launch latency, a large part of a decode step's few microseconds. */
template <typename... Params, typename... Args>
static void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                             cudaStream_t s, Args... args)
{
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
}

/* A kernel that waits before it allows the next one to launch also tells
 * that one, and every kernel launched after it, that every kernel before it
 * has finished: the dense + fc2 sum (gemv.h) relies on that of the decode
 * attention's split, two launches back when the merge lets it launch before
 * waiting. Every kernel of a step waits before it ends, so a kernel done
 * means every one before it done. No-ops for a kernel launched the ordinary
 * way, and on GPUs before Hopper (sm_90), which have no programmatic launch
 * and run the kernels of a stream one after another. */
__device__ __forceinline__ void rk_wait_previous()
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void rk_allow_next()
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

#endif
