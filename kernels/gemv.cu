#include <cuda_fp16.h>
#include <math.h>

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
 * enough warps. The grid is one wave of resident blocks that strides over
 * the row groups, so that no SM idles through a last partial wave. The first
 * batch of weights is loaded before waiting for the previous kernel, whose
 * output x is: that overlap is most of what PDL buys in a chain of small
 * kernels. */
template <bool F32OUT, int SPLIT>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(void *y, const __half *w, const __half *x, const __half *bias, int in, int out,
                int gelu)
{
    constexpr int kRows = kWarps / SPLIT;
    __shared__ float partial[kWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % SPLIT;
    const int groups = (out + kRows - 1) / kRows;
    const int all = in / 8, per = (all + SPLIT - 1) / SPLIT;
    const int first = part * per < all ? part * per : all;
    const int chunks = all - first < per ? all - first : per;
    const uint4 *xv = reinterpret_cast<const uint4 *>(x) + first;
    /* The next kernel may launch at once: its blocks only take what this
     * wave leaves free, and prefetch their weights while it drains. */
    rk_allow_next();
    bool waited = false;
    for (int g = blockIdx.x; g < groups; g += gridDim.x) {
        const int row = g * kRows + warp / SPLIT;
        const uint4 *wr =
            reinterpret_cast<const uint4 *>(w + (size_t)(row < out ? row : out - 1) * in) + first;
        uint4 wv[kBatch];
#pragma unroll
        for (int i = 0; i < kBatch; i++) {
            const int c = lane + 32 * i;
            if (c < chunks)
                wv[i] = load_stream(wr + c);
        }
        if (!waited) {
            rk_wait_previous();
            waited = true;
        }
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
        for (int o = 16; o > 0; o >>= 1)
            acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (SPLIT > 1) {
            if (lane == 0)
                partial[warp] = acc;
            __syncthreads();
            for (int k = 1; k < SPLIT; k++)
                acc += partial[warp - part + k];
            __syncthreads();
        }
        if (lane != 0 || part != 0 || row >= out)
            continue;
        if (bias)
            acc += __half2float(bias[row]);
        if (gelu)
            acc = 0.5f * acc * (1.0f + erff(acc * 0.70710678118654752f));
        if (F32OUT)
            static_cast<float *>(y)[row] = acc;
        else
            static_cast<__half *>(y)[row] = __float2half(acc);
    }
}

int resident_blocks[2][9]; /* [F32OUT][SPLIT], filled by rk_k_gemv_init */

template <bool F32OUT, int SPLIT> void measure_residency(int sms)
{
    int per_sm = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_kernel<F32OUT, SPLIT>,
                                                  kWarps * 32, 0);
    resident_blocks[F32OUT][SPLIT] = (per_sm > 0 ? per_sm : 1) * sms;
}

template <bool F32OUT, int SPLIT>
void launch_gemv(cudaStream_t s, void *y, const void *w, const void *x, const void *bias, int in,
                 int out, int gelu)
{
    constexpr int rows = kWarps / SPLIT;
    const int groups = (out + rows - 1) / rows, wave = resident_blocks[F32OUT][SPLIT];
    launch_dependent(gemv_kernel<F32OUT, SPLIT>, dim3(wave > 0 && wave < groups ? wave : groups),
                     dim3(kWarps * 32), 0, s, y, (const __half *)w, (const __half *)x,
                     (const __half *)bias, in, out, gelu);
}

} // namespace

extern "C" void rk_k_gemv_init(void)
{
    int dev = 0, sms = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    measure_residency<true, 1>(sms);
    measure_residency<false, 1>(sms);
    measure_residency<false, 2>(sms);
    measure_residency<false, 4>(sms);
    measure_residency<false, 8>(sms);
}

/* The split whose row groups fill the resident blocks most evenly: every
 * block strides over ceil(groups / blocks) groups, so the step takes as long
 * as that many, and groups / blocks of them are useful work. */
static int best_split(int out)
{
    int best = 1;
    double best_eff = 0.0;
    for (int split = 1; split <= 8; split *= 2) {
        const double wave = resident_blocks[0][split] > 0 ? resident_blocks[0][split] : 1;
        const double groups = ceil((double)out * split / kWarps), rounds = ceil(groups / wave);
        const double eff = groups / (rounds * wave);
        if (eff > best_eff + 0.02) {
            best_eff = eff;
            best = split;
        }
    }
    return best;
}

extern "C" void rk_k_gemv(cudaStream_t s, void *y, const void *w, const void *x, const void *bias,
                          int in, int out, int gelu, int f32out)
{
    if (f32out) {
        launch_gemv<true, 1>(s, y, w, x, bias, in, out, gelu);
        return;
    }
    switch (best_split(out)) {
    case 1: launch_gemv<false, 1>(s, y, w, x, bias, in, out, gelu); break;
    case 2: launch_gemv<false, 2>(s, y, w, x, bias, in, out, gelu); break;
    case 4: launch_gemv<false, 4>(s, y, w, x, bias, in, out, gelu); break;
    default: launch_gemv<false, 8>(s, y, w, x, bias, in, out, gelu); break;
    }
}
