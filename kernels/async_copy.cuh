/* Asynchronous copies from global to shared memory (cp.async, sm_80+), shared
 * by the attention and the one-row products. */
#ifndef RK_ASYNC_COPY_CUH
#define RK_ASYNC_COPY_CUH

#include <cuda_runtime.h>
#include <stdint.h>

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/* A 16-byte copy to shared memory of the source's first BYTES bytes, the
 * rest zeros (none read when BYTES is 0). */
__device__ __forceinline__ void cp_async16_bytes(uint32_t dst, const void *src, int bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(bytes)
                 : "memory");
}

/* The same, all 16 bytes or, when !valid, zeros. */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid)
{
    cp_async16_bytes(dst, src, valid ? 16 : 0);
}

__device__ __forceinline__ void cp_async4(uint32_t dst, const void *src)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* A 16-byte copy that allocates in L1 as well, so that the blocks an SM
 * holds share one fetch from L2 of what they all copy. */
__device__ __forceinline__ void cp_async16_l1(uint32_t dst, const void *src)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}

/* A 4-byte copy to shared memory, or zeros when !valid. */
__device__ __forceinline__ void cp_async4_zfill(uint32_t dst, const void *src, bool valid)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
}

#endif
