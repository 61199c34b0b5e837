/* Appending to a KIVI cache (kv_rows.h, core/kv_kivi.h): rows arrive as
 * fp16 in a stage, and kernels do what rk_kivi_append does one row at a
 * time. For a chunk, two: the first quantizes every residual block the new
 * rows complete, a block's rows taken from the residual (those appended by
 * earlier calls) or the stage; the second then writes the newest rows into
 * their residual slots. Apart, because a chunk that crosses a flush writes
 * slots the first still reads; a decode step's one row never does, and
 * one kernel does both. The codes are the CPU's for the same fp16 rows:
 * the same rule (kv_rows.cuh), from the same halves. */
#include <cuda_fp16.h>
#include <stdint.h>

#include "kv_rows.cuh"
#include "launch.cuh"

namespace {

constexpr int kFlushThreads = 128;

/* Row R of one head's K or V, as fp16: from the residual's slot where an
 * earlier call appended it, otherwise from the stage. */
__device__ __forceinline__ const __half *kivi_source(const unsigned char *head, size_t fp16,
                                                     int residual, const __half *stage,
                                                     int head_dim, int rows0, int r)
{
    return r < rows0 ? reinterpret_cast<const __half *>(head + fp16) +
                           (size_t)(r % residual) * head_dim
                     : stage + (size_t)(r - rows0) * head_dim;
}

/* One group of GROUP positions, rows FIRST.., of head H's complete block
 * into codes, keys then values, by the whole block of threads. Shared
 * (SMEM, flush_smem_bytes): the group's rows (halves; keys, then values in
 * the same place), the keys' per-channel (scale, minimum), and per warp a
 * value row widened to floats with its groups' (scale, minimum). */
template <int KB, int VB>
__device__ void flush_group(const rk_k_kv &c, int h, int first, const __half *stage_k,
                            const __half *stage_v, int stage_cap, int rows0, float4 *smem)
{
    constexpr int kWarps = kFlushThreads / 32;
    const int D = c.head_dim, G = c.group, R = c.kivi.residual;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float2 *const k_meta = reinterpret_cast<float2 *>(smem);
    float *const v_rows = reinterpret_cast<float *>(k_meta + D);
    float2 *const v_metas = reinterpret_cast<float2 *>(v_rows + kWarps * D);
    __half *const x = reinterpret_cast<__half *>(v_metas + kWarps * D);

    unsigned char *const kh = static_cast<unsigned char *>(c.k) + (size_t)h * c.kivi.k_head;
    unsigned char *const vh = static_cast<unsigned char *>(c.v) + (size_t)h * c.kivi.v_head;
    const size_t stage_head = (size_t)h * stage_cap * D;
    /* Two halves a thread at a time (rows and slots are 4-byte aligned),
     * eight such loads in flight before any is stored (a warp a row, each
     * load stored before the next: 93.8 us a layer for a 1920-row prompt
     * at the 2.8B shape; this, 91.5: the loads are not what it waits on). */
    const auto load = [&](const unsigned char *head, size_t fp16, const __half *stage) {
        const int pairs = G * D / 2, per_row = D / 2;
        __half2 *const x2 = reinterpret_cast<__half2 *>(x);
        for (int base = 0; base < pairs; base += 8 * kFlushThreads) {
            __half2 v[8];
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                const int i = base + k * kFlushThreads + tid, r = i / per_row;
                if (i < pairs)
                    v[k] = reinterpret_cast<const __half2 *>(kivi_source(
                        head, fp16, R, stage + stage_head, D, rows0, first + r))[i - r * per_row];
            }
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                const int i = base + k * kFlushThreads + tid;
                if (i < pairs)
                    x2[i] = v[k];
            }
        }
        __syncthreads();
    };

    /* Keys: channel d of the GROUP positions is one group. */
    load(kh, c.kivi.k_fp16, stage_k);
    __half2 *const meta_out =
        reinterpret_cast<__half2 *>(kh + c.kivi.k_meta) + (size_t)(first / G) * D;
    for (int d = tid; d < D; d += kFlushThreads) {
        float lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < G; ++i) {
            const float v = __half2float(x[i * D + d]);
            lo = fminf(lo, v);
            hi = fmaxf(hi, v);
        }
        const float2 sm = kv_group_scale_min<KB>(lo, hi);
        meta_out[d] = __halves2half2(__float2half_rn(sm.x), __float2half_rn(sm.y));
        k_meta[d] = sm;
    }
    __syncthreads();
    constexpr int kPer = 8 / KB;
    const int code_bytes = D * KB / 8;
    for (int b = tid; b < G * code_bytes; b += kFlushThreads) {
        const int i = b / code_bytes, j = b - i * code_bytes;
        unsigned byte = 0;
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
            const int d = j * kPer + e;
            byte |= kv_code_of<KB>(__half2float(x[i * D + d]), k_meta[d]) << (KB * e);
        }
        kh[(size_t)(first + i) * code_bytes + j] = (unsigned char)byte;
    }
    __syncthreads();

    /* Values: token rows, a warp each; a group that is a power of two up to
     * 32 lanes reduced by shuffles (kv_quantize_row_lanes), any other by a
     * lane's pass over it. */
    load(vh, c.kivi.v_fp16, stage_v);
    const size_t v_bytes = kv_row_bytes(VB, D, G);
    float *const v_row = v_rows + warp * D;
    if (kv_row_lanes_fit(G)) {
        for (int i = warp; i < G; i += kWarps) {
            float xs[8];
#pragma unroll
            for (int k = 0; k < 8; ++k)
                xs[k] = lane + 32 * k < D ? __half2float(x[i * D + lane + 32 * k]) : 0.0f;
            kv_quantize_row_lanes<VB>(vh + (size_t)(first + i) * v_bytes, xs, D, G, lane);
        }
    } else {
        for (int i = warp; i < G; i += kWarps) {
            for (int d = lane; d < D; d += 32)
                v_row[d] = __half2float(x[i * D + d]);
            __syncwarp();
            kv_quantize_row_warp<VB>(vh + (size_t)(first + i) * v_bytes, v_row,
                                     v_metas + warp * D, D, G, lane);
            __syncwarp();
        }
    }
    /* The shared rows are free for another group once every warp is done. */
    __syncthreads();
}

/* grid (blocks of groups, heads): one group of one block that the N rows
 * complete. */
template <int KB, int VB>
__global__ void __launch_bounds__(kFlushThreads)
    kivi_flush_kernel(rk_k_kv c, const __half *__restrict__ stage_k,
                      const __half *__restrict__ stage_v, int stage_cap,
                      const int *__restrict__ row, int n)
{
    extern __shared__ float4 smem_raw[];
    const int R = c.kivi.residual, groups = R / c.group;
    const int rows0 = *row, block = rows0 / R + blockIdx.x / groups;
    if ((block + 1) * R > rows0 + n)
        return;
    flush_group<KB, VB>(c, blockIdx.y, block * R + (blockIdx.x % groups) * c.group, stage_k,
                        stage_v, stage_cap, rows0, smem_raw);
}

/* grid (heads): a decode step's one row, into its residual slot and, when
 * it completes a block, with the block into codes. The flush reads the
 * row from the stage and the others from slots the row does not take, so
 * one kernel does both. Launched as a programmatic dependent of rotary (the
 * stage's writer): attention may launch at once, and reads before its wait
 * only codes of blocks flushed at earlier steps. */
template <int KB, int VB>
__global__ void __launch_bounds__(kFlushThreads)
    kivi_step_kernel(rk_k_kv c, const __half *__restrict__ stage_k,
                     const __half *__restrict__ stage_v, int stage_cap,
                     const int *__restrict__ row)
{
    extern __shared__ float4 smem_raw[];
    const int R = c.kivi.residual, D = c.head_dim, h = blockIdx.x, rows0 = *row;
    rk_allow_next();
    rk_wait_previous();
    const size_t slot = (size_t)(rows0 % R) * D;
    __half *const kr = reinterpret_cast<__half *>(static_cast<unsigned char *>(c.k) +
                                                  (size_t)h * c.kivi.k_head + c.kivi.k_fp16);
    __half *const vr = reinterpret_cast<__half *>(static_cast<unsigned char *>(c.v) +
                                                  (size_t)h * c.kivi.v_head + c.kivi.v_fp16);
    for (int d = threadIdx.x; d < D; d += kFlushThreads) {
        kr[slot + d] = stage_k[(size_t)h * stage_cap * D + d];
        vr[slot + d] = stage_v[(size_t)h * stage_cap * D + d];
    }
    if ((rows0 + 1) % R != 0)
        return;
    for (int first = rows0 + 1 - R; first <= rows0; first += c.group)
        flush_group<KB, VB>(c, h, first, stage_k, stage_v, stage_cap, rows0, smem_raw);
}

/* grid (row chunks, heads): the newest min(n, residual) rows, the ones the
 * residual keeps after this call, from the stage into their slots, a
 * 4-byte word per thread (slots need not be 16-byte aligned). */
__global__ void kivi_residual_kernel(rk_k_kv c, const uint32_t *__restrict__ stage_k,
                                     const uint32_t *__restrict__ stage_v, int stage_cap,
                                     const int *__restrict__ row, int n, int kept)
{
    const int words = c.head_dim / 2, h = blockIdx.y;
    const int t = blockIdx.x * blockDim.x + threadIdx.x, j = t / words, w = t - j * words;
    if (j >= kept)
        return;
    const int R = c.kivi.residual, rows0 = *row, r = rows0 + n - kept + j;
    const size_t from = ((size_t)h * stage_cap + (r - rows0)) * words + w;
    const size_t slot = (size_t)(r % R) * words + w;
    reinterpret_cast<uint32_t *>(static_cast<unsigned char *>(c.k) + (size_t)h * c.kivi.k_head +
                                 c.kivi.k_fp16)[slot] = stage_k[from];
    reinterpret_cast<uint32_t *>(static_cast<unsigned char *>(c.v) + (size_t)h * c.kivi.v_head +
                                 c.kivi.v_fp16)[slot] = stage_v[from];
}

/* A group of positions staged as halves: at most 256 x 256 (128 KB), which
 * an SM holds. */
size_t flush_smem_bytes(int head_dim, int group)
{
    constexpr int kWarps = kFlushThreads / 32;
    return (size_t)head_dim * (sizeof(float2) + kWarps * (sizeof(float) + sizeof(float2))) +
           (size_t)group * head_dim * sizeof(__half);
}

/* A decode step's one row goes through the step kernel; a chunk's rows
 * through the flush kernel, then (rk_k_kivi_append) the residual's. */
template <int KB, int VB>
void launch_append(cudaStream_t s, const rk_k_kv *c, const rk_k_kv *stage, const int *row, int n)
{
    const size_t smem = flush_smem_bytes(c->head_dim, c->group);
    if (n == 1) {
        launch_dependent(kivi_step_kernel<KB, VB>, dim3(c->heads), dim3(kFlushThreads), smem, s,
                         *c, static_cast<const __half *>(stage->k),
                         static_cast<const __half *>(stage->v), stage->cap, row);
        return;
    }
    const int blocks = (n - 1) / c->kivi.residual + 1, groups = c->kivi.residual / c->group;
    kivi_flush_kernel<KB, VB><<<dim3(blocks * groups, c->heads), kFlushThreads, smem, s>>>(
        *c, static_cast<const __half *>(stage->k), static_cast<const __half *>(stage->v),
        stage->cap, row, n);
}

} // namespace

extern "C" cudaError_t rk_k_kivi_init(void)
{
    /* Up to what the device allows a block (an sm_86 has 99 KB, less than a
     * group of 256 positions of 256 channels needs: such a flush then fails
     * to launch, and says so at the next sync). */
    int device = 0, optin = 0;
    cudaError_t e = cudaGetDevice(&device);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    const size_t widest = flush_smem_bytes(kKvMaxHeadDim, kKvMaxHeadDim);
    const int smem = widest < (size_t)optin ? (int)widest : optin;
#define RK_RAISE(F)                                                                                \
    if (e == cudaSuccess)                                                                          \
        e = cudaFuncSetAttribute(kivi_flush_kernel<((F) >> 4), ((F) & 15)>,                        \
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, smem);               \
    if (e == cudaSuccess)                                                                          \
        e = cudaFuncSetAttribute(kivi_step_kernel<((F) >> 4), ((F) & 15)>,                         \
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    RK_KIVI_FORMATS(RK_RAISE)
#undef RK_RAISE
    return e;
}

extern "C" void rk_k_kivi_append(cudaStream_t s, const rk_k_kv *cache, const rk_k_kv *stage,
                                 const int *row, int n)
{
    switch (cache->bits) {
#define RK_CASE(F)                                                                                 \
    case F: launch_append<((F) >> 4), ((F) & 15)>(s, cache, stage, row, n); break;
        RK_KIVI_FORMATS(RK_CASE)
#undef RK_CASE
    }
    if (n == 1)
        return;
    const int kept = n < cache->kivi.residual ? n : cache->kivi.residual;
    const int threads = kept * (cache->head_dim / 2);
    kivi_residual_kernel<<<dim3((threads + 255) / 256, cache->heads), 256, 0, s>>>(
        *cache, static_cast<const uint32_t *>(stage->k), static_cast<const uint32_t *>(stage->v),
        stage->cap, row, n, kept);
}
