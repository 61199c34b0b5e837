#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "gemv.h"
#include "launch.cuh"

namespace {

constexpr int kWarps = 8;
/* 16-byte loads in flight per lane: 8 keeps the kernel at 64 registers, 4
 * blocks per SM. Ten (a row of 2560 inputs in one batch) took 72, 3 blocks
 * per SM, and the 2.8B-shape step was 4 % slower on the H200; reloading each
 * register as soon as it was consumed (78 registers, no drain at row ends)
 * was 29 % slower. The bytes in flight come from resident warps more than
 * from each warp's pipeline (README, "Decode at the bandwidth limit"). */
constexpr int kBatch = 8;
/* The fewest chunks of a row one warp of a split row reads. */
constexpr int kMinShare = 128;

/* What one launch computes: output rows 0..a.out-1 are A's; a pair goes on
 * with B's rows, a sum instead extends each row of A with B's. */
struct gemv_job {
    rk_gemv_part a, b;
    int rows; /* output rows of the launch */
    int sum;
};

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

/* One output row's weights and inputs as chunks of 8: the first N0 from
 * (W, X), the rest DW and DX chunks further on (a sum's second product).
 * One base and a jump, rather than two bases to choose from, keeps a
 * batch's addresses to one register pair per load. */
struct row_view {
    const uint4 *w, *x;
    long long dw, dx;
    int n0;
    __device__ const uint4 *wat(int c) const { return w + c + (c < n0 ? 0 : dw); }
    __device__ uint4 xat(int c) const { return x[c + (c < n0 ? 0 : dx)]; }
};

/* B - A in chunks, for pointers into different buffers. */
__device__ __forceinline__ long long chunks_between(const uint4 *a, const uint4 *b)
{
    return ((long long)reinterpret_cast<uintptr_t>(b) - (long long)reinterpret_cast<uintptr_t>(a)) /
           (long long)sizeof(uint4);
}

/* SPLIT warps per output row, each over a contiguous 1/SPLIT of the row: few
 * long rows still give every SM enough warps. The grid is at most one wave
 * of resident blocks striding over the row groups, every block taking as
 * many groups as the others, so that no SM idles through a last partial
 * wave. The first batch of weights is loaded before waiting for the
 * previous kernel, whose output x is: that overlap is most of what PDL buys
 * in a chain of small kernels. */
template <bool F32OUT, int SPLIT>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(gemv_job j)
{
    constexpr int kRows = kWarps / SPLIT;
    __shared__ float partial[kWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % SPLIT;
    const int groups = (j.rows + kRows - 1) / kRows;
    /* The next kernel may launch at once: its blocks only take what this
     * wave leaves free, and prefetch their weights while it drains. */
    rk_allow_next();
    bool waited = false;
    for (int g = blockIdx.x; g < groups; g += gridDim.x) {
        const int r = g * kRows + warp / SPLIT, rr = r < j.rows ? r : j.rows - 1;
        const bool second = !j.sum && rr >= j.a.out;
        /* Field by field: a reference into the parameters would copy them
         * to local memory. */
        const int orow = second ? rr - j.a.out : rr, in0 = second ? j.b.in : j.a.in;
        row_view v;
        v.w = reinterpret_cast<const uint4 *>(
            static_cast<const __half *>(second ? j.b.w : j.a.w) + (size_t)orow * in0);
        v.x = static_cast<const uint4 *>(second ? j.b.x : j.a.x);
        v.n0 = in0 / 8;
        if (j.sum) {
            const uint4 *w1 = reinterpret_cast<const uint4 *>(
                static_cast<const __half *>(j.b.w) + (size_t)orow * j.b.in);
            v.dw = chunks_between(v.w, w1) - v.n0;
            v.dx = chunks_between(v.x, static_cast<const uint4 *>(j.b.x)) - v.n0;
        } else {
            v.dw = v.dx = 0;
        }
        const int all = v.n0 + (j.sum ? j.b.in / 8 : 0), per = (all + SPLIT - 1) / SPLIT;
        const int first = part * per < all ? part * per : all;
        const int chunks = all - first < per ? all - first : per;
        uint4 wv[kBatch];
#pragma unroll
        for (int i = 0; i < kBatch; i++) {
            const int c = lane + 32 * i;
            if (c < chunks)
                wv[i] = load_stream(v.wat(first + c));
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
                    acc += dot8(wv[i], v.xat(first + c));
            }
            base += 32 * kBatch;
            if (base >= chunks)
                break;
#pragma unroll
            for (int i = 0; i < kBatch; i++) {
                const int c = base + lane + 32 * i;
                if (c < chunks)
                    wv[i] = load_stream(v.wat(first + c));
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
        if (lane != 0 || part != 0 || r >= j.rows)
            continue;
        const __half *bias = static_cast<const __half *>(second ? j.b.bias : j.a.bias);
        if (bias)
            acc += __half2float(bias[orow]);
        if (j.sum && j.b.bias)
            acc += __half2float(static_cast<const __half *>(j.b.bias)[orow]);
        if (second ? j.b.gelu : j.a.gelu)
            acc = 0.5f * acc * (1.0f + erff(acc * 0.70710678118654752f));
        void *y = second ? j.b.y : j.a.y;
        if (F32OUT)
            static_cast<float *>(y)[orow] = acc;
        else
            static_cast<__half *>(y)[orow] = __float2half(acc);
    }
}

int resident_blocks[2][kWarps + 1]; /* [F32OUT][SPLIT], filled by rk_k_gemv_init */

template <bool F32OUT, int SPLIT> void measure_residency(int sms)
{
    int per_sm = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_kernel<F32OUT, SPLIT>,
                                                  kWarps * 32, 0);
    resident_blocks[F32OUT][SPLIT] = (per_sm > 0 ? per_sm : 1) * sms;
}

/* The split for ROWS rows of CHUNKS chunks: a warp's share of a row should
 * be at least kMinShare chunks, or its round trips carry too few bytes
 * (profiled on the H200: the QKV product at 8 warps a row, 40 chunks each,
 * moved 1.8 TB/s where whole rows moved 4.1; a floor of 128 made the step
 * 2-3 % faster than one of 256). Among those, the one whose groups fill the
 * resident blocks most evenly, ties to fewer warps a row: every block takes
 * ceil(groups / blocks) groups. */
int best_split(int rows, int chunks)
{
    int best = 1;
    double best_eff = 0.0;
    for (int split = 1; split <= kWarps; split *= 2) {
        if (split > 1 && chunks / split < kMinShare)
            break;
        const double wave = resident_blocks[0][split] > 0 ? resident_blocks[0][split] : 1;
        const double groups = ceil((double)rows * split / kWarps), rounds = ceil(groups / wave);
        const double eff = groups / (rounds * wave);
        if (eff > best_eff + 0.05) {
            best_eff = eff;
            best = split;
        }
    }
    return best;
}

template <bool F32OUT, int SPLIT> void launch_split(cudaStream_t s, const gemv_job &j)
{
    constexpr int rows = kWarps / SPLIT;
    const int groups = (j.rows + rows - 1) / rows, wave = resident_blocks[F32OUT][SPLIT];
    const int rounds = wave > 0 ? (groups + wave - 1) / wave : 1;
    launch_dependent(gemv_kernel<F32OUT, SPLIT>, dim3((groups + rounds - 1) / rounds),
                     dim3(kWarps * 32), 0, s, j);
}

void launch(cudaStream_t s, const gemv_job &j, int f32out)
{
    if (f32out) {
        launch_split<true, 1>(s, j);
        return;
    }
    const int chunks = (j.a.in + (j.sum ? j.b.in : 0)) / 8;
    switch (best_split(j.rows, chunks)) {
    case 1: launch_split<false, 1>(s, j); break;
    case 2: launch_split<false, 2>(s, j); break;
    case 4: launch_split<false, 4>(s, j); break;
    default: launch_split<false, 8>(s, j); break;
    }
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

extern "C" void rk_k_gemv(cudaStream_t s, const rk_gemv_part *p, int f32out)
{
    launch(s, gemv_job{*p, rk_gemv_part{}, p->out, 0}, f32out);
}

extern "C" void rk_k_gemv_pair(cudaStream_t s, const rk_gemv_part *a, const rk_gemv_part *b)
{
    launch(s, gemv_job{*a, *b, a->out + b->out, 0}, 0);
}

extern "C" void rk_k_gemv_sum(cudaStream_t s, const rk_gemv_part *a, const rk_gemv_part *b)
{
    launch(s, gemv_job{*a, *b, a->out, 1}, 0);
}
