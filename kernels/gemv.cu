#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "async_copy.cuh"
#include "gemv.h"
#include "launch.cuh"

namespace {

constexpr int kWarps = 8;
/* 16-byte loads per lane in a batch: 3, 5 or 7, whichever splits a warp's
 * share of a row into the fewest, most even batches (a 2560-input row in two
 * batches of 5, a dense + fc2 share of 200 chunks in one of 7). A warp holds
 * two batches, the one it multiplies and the next one in flight; more than
 * 7 a batch costs more registers, and resident warps, than it gains. */
constexpr int kMaxBatch = 7;
/* The fewest chunks of a row one warp of a split row reads. */
constexpr int kMinShare = 128;
/* Rounds of x's fill whose loads go out together: the 2.8B shape's QKV +
 * fc1 pair fills 640 chunks, 3 rounds of a block's 256 threads. */
constexpr int kFillRounds = 3;
/* Shared memory a block may opt in to on sm_90. */
constexpr int kSm90SharedOptin = 227 * 1024;

/* What one launch computes: output rows 0..a.out-1 are A's; a pair goes on
 * with B's rows, a sum instead extends each row of A with B's. */
struct gemv_job {
    rk_gemv_part a, b;
    int rows; /* output rows of the launch */
    int sum;
};

/* The chunks of 8 of the launch's longest row: a sum's rows are A's and
 * B's together. */
__host__ __device__ __forceinline__ int row_chunks(const gemv_job &j)
{
    return (j.sum ? j.a.in + j.b.in : (j.a.in > j.b.in ? j.a.in : j.b.in)) / 8;
}

/* The chunks of x, both products' inputs one after the other, that the
 * launch keeps in shared memory. */
__host__ __device__ __forceinline__ int x_chunks(const gemv_job &j)
{
    return (j.a.in + (j.b.w ? j.b.in : 0)) / 8;
}

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

/* B - A in chunks, for pointers into different buffers. */
__device__ __forceinline__ long long chunks_between(const uint4 *a, const uint4 *b)
{
    return ((long long)reinterpret_cast<uintptr_t>(b) - (long long)reinterpret_cast<uintptr_t>(a)) /
           (long long)sizeof(uint4);
}

/* One warp's part of one output row: its weights as chunks of 8, the first
 * N0 from W, the rest DW chunks further on (a sum's second product); its
 * inputs start at chunk XOFF of the shared copy of x. */
struct row_part {
    const uint4 *w;
    long long dw;
    int n0, first, chunks, xoff;
    int r, orow; /* row of the launch, row of its product */
    bool second; /* a pair's B row */
    __device__ const uint4 *wat(int c) const { return w + c + (c < n0 ? 0 : dw); }
};

template <int SPLIT>
__device__ __forceinline__ row_part part_of(const gemv_job &j, int group, int warp, int per)
{
    row_part v;
    v.r = group * (kWarps / SPLIT) + warp / SPLIT;
    const int rr = v.r < j.rows ? v.r : j.rows - 1;
    v.second = !j.sum && rr >= j.a.out;
    v.orow = v.second ? rr - j.a.out : rr;
    const int in0 = v.second ? j.b.in : j.a.in;
    /* Field by field: a reference into the parameters would copy them to
     * local memory. */
    v.w = reinterpret_cast<const uint4 *>(static_cast<const __half *>(v.second ? j.b.w : j.a.w) +
                                          (size_t)v.orow * in0);
    v.n0 = in0 / 8;
    v.dw = j.sum ? chunks_between(v.w, reinterpret_cast<const uint4 *>(
                                           static_cast<const __half *>(j.b.w) +
                                           (size_t)v.orow * j.b.in)) -
                       v.n0
                 : 0;
    v.xoff = v.second ? j.a.in / 8 : 0;
    const int all = v.n0 + (j.sum ? j.b.in / 8 : 0), part = warp % SPLIT;
    v.first = part * per < all ? part * per : all;
    v.chunks = all - v.first < per ? all - v.first : per;
    return v;
}

/* A split row's warps' sums, in two sets, a row's and the next row's, so that
 * one barrier a row is enough: a warp writes a set again only after the next
 * row's barrier, which its row's warps reach once they have read it. */
struct row_partials {
    float set[2][kWarps];
};

/* Only the SPLIT warps of a row meet at its end: a block-wide barrier holds
 * every warp of the block to the slowest one's loads. A quarter of the
 * 2.8B shape's product stalls were there (README, "Decode at the bandwidth
 * limit"). With its id in a register, ptxas reserves all 16 barriers, so a
 * block of 256 threads gets at most 4 an SM (64 barriers an SM): the
 * registers of B 5 and 7 allow no more, those of B 3 allow 5, so that batch
 * keeps the block's barrier. Literal ids, under a switch or predicates, took
 * 7 more registers. Barrier 0 is __syncthreads'. */
template <int SPLIT, int B> __device__ __forceinline__ void row_barrier(int warp)
{
    if (SPLIT == kWarps || B == 3)
        __syncthreads();
    else
        asm volatile("bar.sync %0, %1;" ::"r"(1 + warp / SPLIT), "r"(SPLIT * 32) : "memory");
}

/* SPLIT warps per output row, each over a contiguous 1/SPLIT of the row: few
 * long rows still give every SM enough warps. The grid is at most one wave
 * of resident blocks striding over the row groups, every block taking as
 * many groups as the others, so that no SM idles through a last partial
 * wave. A warp's work is a run of batches, B chunks a lane, through its
 * groups' rows; the next batch's loads go out before the current batch is
 * multiplied, and before a row's reduction, so the loads never drain at a
 * row's end (the kernel before kept one batch and moved 3.4 TB/s on the
 * 2.8B shape's QKV + fc1 pair, this one 3.7; README, "Decode at the
 * bandwidth limit"). The first batch is loaded before waiting for the
 * previous kernel, whose output x is; then x goes to shared memory, where
 * each of the block's rows reads it. */
template <bool F32OUT, int SPLIT, int B>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(gemv_job j)
{
    extern __shared__ uint4 xs[];
    __shared__ row_partials partial;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % SPLIT;
    const int groups = (j.rows + kWarps / SPLIT - 1) / (kWarps / SPLIT);
    const int per = (row_chunks(j) + SPLIT - 1) / SPLIT, batches = (per + 32 * B - 1) / (32 * B);
    /* The next kernel may launch at once: its blocks only take what this
     * wave leaves free, and prefetch their weights while it drains. */
    rk_allow_next();
    int g = blockIdx.x, k = 0;
    if (g >= groups)
        return;
    uint4 cur[B], next[B];
    {
        const row_part v = part_of<SPLIT>(j, g, warp, per);
#pragma unroll
        for (int i = 0; i < B; i++)
            if (lane + 32 * i < v.chunks)
                cur[i] = load_stream(v.wat(v.first + lane + 32 * i));
    }
    const int na = j.a.in / 8, nx = x_chunks(j);
    /* A sum's second input is final before the op before this one (core/ops.h,
     * linear_sum), so it is fetched before the wait too, from L2: a kernel
     * after the input's writer waited before it let the next one launch,
     * and this launch came after that one's, so the writer has finished.
     * Fetching fc2's 25 KB after the wait took 3-5 % of the 2.8B shape's
     * step. fc2's 20 KB come through L1, asynchronously, so that the blocks
     * an SM holds share one fetch: the 2.8B shape's step at context 512
     * took 1.6-2 % less than with a copy from L2 for each block; a copy
     * through L1 that waits, or one from L2 that does not, gained nothing
     * (README, "Decode at the bandwidth limit"). The pair's stores reach L1
     * as any earlier grid's do: the pair finished before this grid launched. */
    if (j.sum) {
        for (int c = na + threadIdx.x; c < nx; c += blockDim.x)
            cp_async16_l1(smem_addr(xs + c), static_cast<const uint4 *>(j.b.x) + (c - na));
        cp_async_commit();
    }
    rk_wait_previous();
    /* The fill lies on the step's path from the previous kernel's end, so a
     * thread's loads of x all go out before its first store to shared
     * memory: a store may alias a later load, so the compiler kept each
     * round's load behind the round before's store, one trip to L2 a round. */
    const int nf = j.sum ? na : nx;
    const auto x_at = [&](int c) {
        return c < na ? static_cast<const uint4 *>(j.a.x)[c]
                      : static_cast<const uint4 *>(j.b.x)[c - na];
    };
    uint4 fill[kFillRounds];
#pragma unroll
    for (int u = 0; u < kFillRounds; u++)
        if (threadIdx.x + u * blockDim.x < nf)
            fill[u] = x_at(threadIdx.x + u * blockDim.x);
#pragma unroll
    for (int u = 0; u < kFillRounds; u++)
        if (threadIdx.x + u * blockDim.x < nf)
            xs[threadIdx.x + u * blockDim.x] = fill[u];
    for (int c = threadIdx.x + kFillRounds * blockDim.x; c < nf; c += blockDim.x)
        xs[c] = x_at(c);
    if (j.sum)
        cp_async_wait<0>();
    __syncthreads();
    float acc = 0.0f;
    int set = 0;
    for (;;) {
        int gn = g, kn = k + 1;
        if (kn == batches) {
            gn += gridDim.x;
            kn = 0;
        }
        const bool more = gn < groups;
        if (more) {
            const row_part vn = part_of<SPLIT>(j, gn, warp, per);
#pragma unroll
            for (int i = 0; i < B; i++) {
                const int c = kn * 32 * B + lane + 32 * i;
                if (c < vn.chunks)
                    next[i] = load_stream(vn.wat(vn.first + c));
            }
        }
        /* Recomputed rather than carried: two live parts cost the registers
         * of a third batch. */
        const row_part v = part_of<SPLIT>(j, g, warp, per);
#pragma unroll
        for (int i = 0; i < B; i++) {
            const int c = k * 32 * B + lane + 32 * i;
            if (c < v.chunks)
                acc += dot8(cur[i], xs[v.xoff + v.first + c]);
        }
        if (k == batches - 1) {
            for (int o = 16; o > 0; o >>= 1)
                acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (SPLIT > 1) {
                if (lane == 0)
                    partial.set[set][warp] = acc;
                row_barrier<SPLIT, B>(warp);
                for (int q = 1; q < SPLIT; q++)
                    acc += partial.set[set][warp - part + q];
                set ^= 1;
            }
            if (lane == 0 && part == 0 && v.r < j.rows) {
                const __half *bias = static_cast<const __half *>(v.second ? j.b.bias : j.a.bias);
                if (bias)
                    acc += __half2float(bias[v.orow]);
                if (j.sum && j.b.bias)
                    acc += __half2float(static_cast<const __half *>(j.b.bias)[v.orow]);
                if (v.second ? j.b.gelu : j.a.gelu)
                    acc = 0.5f * acc * (1.0f + erff(acc * 0.70710678118654752f));
                void *y = v.second ? j.b.y : j.a.y;
                if (F32OUT)
                    static_cast<float *>(y)[v.orow] = acc;
                else
                    static_cast<__half *>(y)[v.orow] = __float2half(acc);
            }
            acc = 0.0f;
        }
        if (!more)
            break;
        g = gn;
        k = kn;
#pragma unroll
        for (int i = 0; i < B; i++)
            cur[i] = next[i];
    }
}

typedef void (*gemv_fn)(gemv_job);
constexpr int kSplits = 4; /* 1, 2, 4, 8 warps a row */
constexpr int kBatchKinds = 3; /* 3, 5, 7 chunks a lane */

template <bool F32OUT, int SPLIT> constexpr gemv_fn kernel_of(int b)
{
    return b == 0 ? gemv_kernel<F32OUT, SPLIT, 3>
                  : b == 1 ? gemv_kernel<F32OUT, SPLIT, 5> : gemv_kernel<F32OUT, SPLIT, 7>;
}

gemv_fn kernel_for(bool f32out, int split_log2, int b)
{
    switch (split_log2 + (f32out ? kSplits : 0)) {
    case 0: return kernel_of<false, 1>(b);
    case 1: return kernel_of<false, 2>(b);
    case 2: return kernel_of<false, 4>(b);
    case 3: return kernel_of<false, 8>(b);
    case 4: return kernel_of<true, 1>(b);
    case 5: return kernel_of<true, 2>(b);
    case 6: return kernel_of<true, 4>(b);
    default: return kernel_of<true, 8>(b);
    }
}

int sms = 1;

/* The batch kind for a warp's share of PER chunks: the fewest batches, then
 * the smallest batch that holds an even split of them. */
int batch_kind(int per)
{
    const int batches = (per + 32 * kMaxBatch - 1) / (32 * kMaxBatch);
    const int lanes = (per + 32 * batches - 1) / (32 * batches);
    return lanes <= 3 ? 0 : lanes <= 5 ? 1 : 2;
}

struct launch_shape {
    gemv_fn kernel;
    int split, grid;
    size_t smem;
};

/* Among the splits whose warps read at least kMinShare chunks of a row (the
 * QKV product at 8 warps a row, 40 chunks each, moved 1.8 TB/s where whole
 * rows moved 4.1), the one whose groups fill the resident blocks most
 * evenly, ties to fewer warps a row: every block takes ceil(groups / blocks)
 * groups. Residency depends on the batch's registers and on x's shared
 * memory, so it is asked for each candidate. */
launch_shape shape_for(const gemv_job &j, bool f32out)
{
    const int chunks = row_chunks(j);
    const size_t smem = (size_t)x_chunks(j) * sizeof(uint4);
    launch_shape best = {};
    double best_eff = 0.0;
    for (int s = 0; s < kSplits; s++) {
        const int split = 1 << s, per = (chunks + split - 1) / split;
        if (split > 1 && per < kMinShare)
            break;
        const gemv_fn kernel = kernel_for(f32out, s, batch_kind(per));
        int per_sm = 0;
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, smem);
        const int wave = (per_sm > 0 ? per_sm : 1) * sms;
        const int groups = (j.rows + kWarps / split - 1) / (kWarps / split);
        const int rounds = (groups + wave - 1) / wave;
        const double eff = (double)groups / ((double)rounds * wave);
        if (!best.kernel || eff > best_eff + 0.05) {
            best_eff = eff;
            best = {kernel, split, (groups + rounds - 1) / rounds, smem};
        }
    }
    return best;
}

void launch(cudaStream_t s, const gemv_job &j, int f32out)
{
    const launch_shape l = shape_for(j, f32out != 0);
    launch_dependent(l.kernel, dim3(l.grid), dim3(kWarps * 32), l.smem, s, j);
}

} // namespace

extern "C" void rk_k_gemv_init(void)
{
    int dev = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    const int max_smem = rk_k_gemv_max_inputs() * (int)sizeof(__half);
    for (int f = 0; f < 2; f++)
        for (int s = 0; s < kSplits; s++)
            for (int b = 0; b < kBatchKinds; b++)
                cudaFuncSetAttribute(kernel_for(f, s, b),
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem);
}

extern "C" int rk_k_gemv_max_inputs(void)
{
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) !=
            cudaSuccess ||
        optin <= 0) {
        /* No device (a plan printed without one): the default build's
         * architecture, sm_90, is what the plan is for. */
        cudaGetLastError();
        optin = kSm90SharedOptin;
    }
    /* What the kernel's own reduction slots leave. */
    return (optin - (int)sizeof(row_partials)) / (int)sizeof(__half);
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
