#include <cuda_fp16.h>

#include "gemv.h"
#include "launch.cuh"

namespace {

constexpr int kWarps = 8;
/* Loads in flight per lane: 8 × 16 B per lane keeps enough bytes moving to
 * saturate HBM with the few warps a matrix-vector product has (16 measured
 * slower on the H100: fewer warps fit). */
constexpr int kBatch = 8;

__device__ __forceinline__ float dot8(uint4 w, uint4 x)
{
    const __half2 *wh = reinterpret_cast<const __half2 *>(&w);
    const __half2 *xh = reinterpret_cast<const __half2 *>(&x);
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 a = __half22float2(wh[i]), b = __half22float2(xh[i]);
        acc = fmaf(a.x, b.x, acc);
        acc = fmaf(a.y, b.y, acc);
    }
    return acc;
}

/* Weights are read once per step and never again soon: stream them past L1. */
__device__ __forceinline__ uint4 load_stream(const uint4 *p)
{
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

/* SPLIT warps per output row, each over a contiguous 1/SPLIT of the row: few
 * long rows (a projection back to the hidden size) still give every SM
 * enough warps. The first batch of the row's weights is loaded before
 * waiting for the previous kernel, whose output x is: that overlap is most of
 * what PDL buys in a chain of small kernels. */
template <bool F32OUT, int SPLIT>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(void *y, const __half *w, const __half *x, const __half *bias, int in, int out,
                int gelu)
{
    __shared__ float partial[kWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int row = blockIdx.x * (kWarps / SPLIT) + warp / SPLIT, part = warp % SPLIT;
    const int all = in / 8, per = (all + SPLIT - 1) / SPLIT;
    const int first = part * per, chunks = all - first < per ? all - first : per;
    const uint4 *wr =
        reinterpret_cast<const uint4 *>(w + (size_t)(row < out ? row : out - 1) * in) + first;
    const uint4 *xv = reinterpret_cast<const uint4 *>(x) + first;
    uint4 wv[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; i++) {
        const int c = lane + 32 * i;
        if (c < chunks)
            wv[i] = load_stream(wr + c);
    }
    rk_wait_previous();
    float acc = 0.0f;
    for (int base = 0;;) {
#pragma unroll
        for (int i = 0; i < kBatch; i++) {
            const int c = base + lane + 32 * i;
            if (c < chunks)
                acc += dot8(wv[i], xv[c]);
        }
        base += 32 * kBatch;
        if (base >= chunks)
            break;
#pragma unroll
        for (int i = 0; i < kBatch; i++) {
            const int c = base + lane + 32 * i;
            if (c < chunks)
                wv[i] = load_stream(wr + c);
        }
    }
    rk_allow_next();
    for (int o = 16; o > 0; o >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (SPLIT > 1) {
        if (lane == 0)
            partial[warp] = acc;
        __syncthreads();
        if (part != 0)
            return;
        for (int k = 1; k < SPLIT; k++)
            acc += partial[warp + k];
    }
    if (lane != 0 || row >= out)
        return;
    if (bias)
        acc += __half2float(bias[row]);
    if (gelu)
        acc = 0.5f * acc * (1.0f + erff(acc * 0.70710678118654752f));
    if (F32OUT)
        static_cast<float *>(y)[row] = acc;
    else
        static_cast<__half *>(y)[row] = __float2half(acc);
}

template <bool F32OUT, int SPLIT>
void launch_gemv(cudaStream_t s, void *y, const void *w, const void *x, const void *bias, int in,
                 int out, int gelu)
{
    constexpr int rows = kWarps / SPLIT;
    launch_dependent(gemv_kernel<F32OUT, SPLIT>, dim3((out + rows - 1) / rows), dim3(kWarps * 32),
                     0, s, y, (const __half *)w, (const __half *)x, (const __half *)bias, in, out,
                     gelu);
}

} // namespace

/* Rows are split across warps when there are too few of them to put several
 * blocks on each of the GPU's multiprocessors. */
extern "C" void rk_k_gemv(cudaStream_t s, void *y, const void *w, const void *x, const void *bias,
                          int in, int out, int gelu, int f32out)
{
    if (f32out)
        launch_gemv<true, 1>(s, y, w, x, bias, in, out, gelu);
    else if (out >= 4096)
        launch_gemv<false, 1>(s, y, w, x, bias, in, out, gelu);
    else
        launch_gemv<false, 4>(s, y, w, x, bias, in, out, gelu);
}
