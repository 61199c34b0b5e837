/* Placing and appending the rows of a smartkv cache (kv_rows.h,
 * core/kv_smart.h): what rk_smart_place, rk_smart_write and
 * rk_smart_append do on the CPU target, with the same slots and the same
 * bytes: rows arrive as fp16 in a stage, are stored by kv_rows.cuh's rules
 * from the same halves, and a demoted row is read back as the CPU reads
 * it before it is stored again one tier down. */
#include <cuda_fp16.h>
#include <limits.h>
#include <stdint.h>

#include "kv_rows.cuh"
#include "launch.cuh"

namespace {

constexpr int kPlaceThreads = 256;
constexpr int kStoreWarps = 4;
constexpr int kAppendThreads = 1024;
constexpr int kAppendWarps = kAppendThreads / 32;

/* One head of the cache: its K and V blocks and K's two maps. */
struct SmartHead {
    unsigned char *k, *v;
    int *where, *owner;
};

__device__ __forceinline__ SmartHead smart_head(const rk_k_kv &c, int h)
{
    SmartHead x;
    x.k = static_cast<unsigned char *>(c.k) + (size_t)h * c.smart.k_head;
    x.v = static_cast<unsigned char *>(c.v) + (size_t)h * c.smart.v_head;
    x.where = reinterpret_cast<int *>(x.k + c.smart.maps);
    x.owner = x.where + c.cap;
    return x;
}

/* kv_smart.c's importance order: row A is below row B when its score is
 * lower, or equal and A is the later row; a NaN score below every number.
 * Total, so that every lane of a reduction reaches the same choice (the
 * block's barriers after it depend on that). */
__device__ __forceinline__ bool below(float sa, int a, float sb, int b)
{
    if (isnan(sa) || isnan(sb))
        return isnan(sa) && (!isnan(sb) || a > b);
    return sa < sb || (sa == sb && a > b);
}

/* Tier T's slots [*A, *B), its bounds compared in turn so that the layout
 * stays in the kernel's parameters. */
__device__ __forceinline__ void tier_slots(const rk_k_smart &s, int cap, int t, int *a, int *b)
{
    *a = 0;
    *b = cap;
#pragma unroll
    for (int i = 0; i < RK_K_SMART_TIERS; ++i) {
        if (i == t)
            *a = s.first[i];
        if (i == t + 1)
            *b = s.first[i];
    }
}

/* The floats X (shared) into ROW, a row of BITS, by one warp: fp16 rows
 * rounded as rk_kv_quantize_row rounds them, the others by
 * kv_quantize_row_warp with META (shared, head_dim entries) between its
 * passes. */
__device__ void store_row_warp(unsigned char *row, int bits, const float *x, float2 *meta,
                               int head_dim, int group, int lane)
{
    switch (bits) {
    case 16:
        for (int i = lane; i < head_dim; i += 32)
            reinterpret_cast<__half *>(row)[i] = __float2half_rn(x[i]);
        break;
    case 8: kv_quantize_row_warp<8>(row, x, meta, head_dim, group, lane); break;
    case 4: kv_quantize_row_warp<4>(row, x, meta, head_dim, group, lane); break;
    default: kv_quantize_row_warp<2>(row, x, meta, head_dim, group, lane); break;
    }
}

/* Element I of ROW, a row of BITS that this kernel may have written (plain
 * loads), read back as rk_kv_dequantize_row reads it. */
__device__ __forceinline__ float row_value(const unsigned char *row, int bits, int head_dim,
                                           int group, int i)
{
    if (bits == 16)
        return __half2float(reinterpret_cast<const __half *>(row)[i]);
    const int per = 8 / bits;
    const unsigned code = (row[i / per] >> (bits * (i % per))) & ((1u << bits) - 1u);
    const float2 sm = __half22float2(
        reinterpret_cast<const __half2 *>(row + head_dim * bits / 8)[i / group]);
    return kv_code_value(code, sm.x, sm.y);
}

/* grid (row blocks over cap, which N is at most, heads): rk_smart_place
 * for N rows.
 * The sinks and the newest rows take the fp16 tier's slots in row order;
 * every other row's slot is the fp16 tier's end plus its rank, the rows
 * above it in the importance order (the CPU's sort, which fills int8, int4
 * and int2 in turn: their slots follow each other). Each thread ranks its
 * row against all the others, their scores passing through shared memory
 * a block at a time. Slots no row takes are freed. */
__global__ void __launch_bounds__(kPlaceThreads)
    smart_place_kernel(rk_k_kv c, const float *__restrict__ score, int n)
{
    __shared__ float tile[kPlaceThreads];
    const int h = blockIdx.y, i = blockIdx.x * kPlaceThreads + threadIdx.x;
    const SmartHead x = smart_head(c, h);
    const float *const sc = score + (size_t)h * c.cap;
    const int fp16 = c.smart.first[1], sinks = c.smart.sinks, window = fp16 - sinks;
    /* Ranked rows: [lo, hi), none when the fp16 tier holds them all. */
    const int lo = sinks, hi = n > fp16 ? n - window : sinks;
    const bool ranked = i >= lo && i < hi;
    const float si = ranked ? sc[i] : 0.0f;
    int rank = 0;
    for (int base = lo; base < hi; base += kPlaceThreads) {
        __syncthreads();
        if (base + (int)threadIdx.x < hi)
            tile[threadIdx.x] = sc[base + threadIdx.x];
        __syncthreads();
        const int m = min(kPlaceThreads, hi - base);
        if (ranked)
            for (int j = 0; j < m; ++j)
                rank += below(si, i, tile[j], base + j);
    }
    if (i < n) {
        const int slot = ranked ? fp16 + rank : i < sinks || n <= fp16 ? i : i - n + fp16;
        x.where[i] = slot;
        x.owner[slot] = i;
    }
    const bool taken = i < min(n, fp16) || (i >= fp16 && i < fp16 + hi - lo);
    if (i < c.cap && !taken)
        x.owner[i] = -1;
}

/* grid (blocks of kStoreWarps rows, heads): row J of the stage into the
 * slot smart_place_kernel gave it, K then V, a warp a row. */
__global__ void __launch_bounds__(kStoreWarps * 32)
    smart_store_kernel(rk_k_kv c, const __half *__restrict__ stage_k,
                       const __half *__restrict__ stage_v, int stage_cap, int n)
{
    extern __shared__ float smem[];
    const int D = c.head_dim, h = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int j = blockIdx.x * kStoreWarps + warp;
    if (j >= n)
        return;
    float *const xs = smem + (size_t)warp * 3 * D;
    float2 *const meta = reinterpret_cast<float2 *>(xs + D);
    const SmartHead x = smart_head(c, h);
    const SmartSlot at = smart_slot(c.smart, x.where[j]);
    for (int side = 0; side < 2; ++side) {
        const __half *const src = (side ? stage_v : stage_k) + ((size_t)h * stage_cap + j) * D;
        for (int i = lane; i < D; i += 32)
            xs[i] = __half2float(src[i]);
        __syncwarp();
        store_row_warp((side ? x.v : x.k) + at.at, at.bits, xs, meta, D, c.group, lane);
        __syncwarp();
    }
}

/* The victim search's candidate: the slot, its row and the row's score. */
struct Candidate {
    int slot, owner;
    float score;
};

/* Whether A should leave tier T before B: in the fp16 tier the older row
 * (sinks are never candidates), in a quantized one the less important. */
__device__ __forceinline__ bool leaves_first(int t, const Candidate &a, const Candidate &b)
{
    if (a.owner < 0)
        return false;
    if (b.owner < 0)
        return true;
    return t == 0 ? a.owner < b.owner : below(a.score, a.owner, b.score, b.owner);
}

/* C reduced with the other lanes' by leaves_first: every lane gets the
 * warp's choice. */
__device__ __forceinline__ Candidate warp_victim(int t, Candidate c)
{
    for (int off = 16; off > 0; off >>= 1) {
        const Candidate e = {__shfl_xor_sync(0xffffffffu, c.slot, off),
                             __shfl_xor_sync(0xffffffffu, c.owner, off),
                             __shfl_xor_sync(0xffffffffu, c.score, off)};
        if (leaves_first(t, e, c))
            c = e;
    }
    return c;
}

/* grid (heads), launched as a programmatic dependent of rotary (the
 * stage's writer): rk_smart_append for the N staged rows in turn. Each
 * enters the fp16 tier; where a tier has no free slot its victim (the
 * block's reduction over the tier's slots, up to 1024 of them at once)
 * takes the carried row's place and is carried one tier down, read back
 * from its codes, unless a quantized tier's victim outranks the carried
 * row, which then goes on down itself. Shared: the carried row and the
 * victim's, K and V as floats, and the quantizer's scales. */
__global__ void __launch_bounds__(kAppendThreads)
    smart_append_kernel(rk_k_kv c, const float *__restrict__ score,
                        const __half *__restrict__ stage_k, const __half *__restrict__ stage_v,
                        int stage_cap, const int *__restrict__ row, int n)
{
    extern __shared__ float smem[];
    __shared__ Candidate victim_of[kAppendWarps];
    __shared__ int free_of[kAppendWarps];
    const int D = c.head_dim, h = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float *const carry = smem, *const held = smem + 2 * D;
    float2 *const meta = reinterpret_cast<float2 *>(smem + 4 * D);
    rk_allow_next();
    rk_wait_previous();
    const SmartHead x = smart_head(c, h);
    const float *const sc = score + (size_t)h * c.cap;
    const int rows0 = *row;
    for (int j = 0; j < n; ++j) {
        for (int i = tid; i < 2 * D; i += kAppendThreads)
            carry[i] = __half2float(
                (i < D ? stage_k : stage_v)[((size_t)h * stage_cap + j) * D + i % D]);
        int r = rows0 + j;
        for (int t = 0; t < RK_K_SMART_TIERS; ++t) {
            int a, b;
            tier_slots(c.smart, c.cap, t, &a, &b);
            if (a == b)
                continue;
            int free = INT_MAX;
            Candidate v = {-1, -1, 0.0f};
            for (int i = a + tid; i < b; i += kAppendThreads) {
                const int o = x.owner[i];
                if (o < 0) {
                    free = min(free, i);
                } else if (t > 0 || o >= c.smart.sinks) {
                    const Candidate e = {i, o, t > 0 ? sc[o] : 0.0f};
                    if (leaves_first(t, e, v))
                        v = e;
                }
            }
            v = warp_victim(t, v);
            for (int off = 16; off > 0; off >>= 1)
                free = min(free, __shfl_xor_sync(0xffffffffu, free, off));
            if (lane == 0) {
                victim_of[warp] = v;
                free_of[warp] = free;
            }
            __syncthreads();
            v = warp_victim(t, victim_of[lane]);
            free = free_of[lane];
            for (int off = 16; off > 0; off >>= 1)
                free = min(free, __shfl_xor_sync(0xffffffffu, free, off));
            __syncthreads();
            if (free == INT_MAX)
                free = -1;
            const int slot = free >= 0 ? free : v.slot;
            /* No victim: only a cache of sinks alone, which never fills. */
            if (slot < 0)
                break;
            /* The carried row is the least important: it goes on down. */
            if (free < 0 && t > 0 && below(sc[r], r, v.score, v.owner))
                continue;
            const SmartSlot at = smart_slot(c.smart, slot);
            if (free < 0)
                for (int i = tid; i < 2 * D; i += kAppendThreads)
                    held[i] = row_value((i < D ? x.k : x.v) + at.at, at.bits, D, c.group, i % D);
            __syncthreads();
            if (warp < 2)
                store_row_warp((warp ? x.v : x.k) + at.at, at.bits, carry + warp * D,
                               meta + warp * D, D, c.group, lane);
            if (tid == 0) {
                x.owner[slot] = r;
                x.where[r] = slot;
            }
            if (free >= 0)
                break;
            __syncthreads();
            for (int i = tid; i < 2 * D; i += kAppendThreads)
                carry[i] = held[i];
            r = v.owner;
        }
        __syncthreads();
    }
}

} // namespace

extern "C" void rk_k_smart_place(cudaStream_t s, const rk_k_kv *cache, const float *score,
                                 const rk_k_kv *stage, int n)
{
    smart_place_kernel<<<dim3((cache->cap + kPlaceThreads - 1) / kPlaceThreads, cache->heads),
                         kPlaceThreads, 0, s>>>(*cache, score, n);
    smart_store_kernel<<<dim3((n + kStoreWarps - 1) / kStoreWarps, cache->heads),
                         kStoreWarps * 32, kStoreWarps * 3 * cache->head_dim * sizeof(float),
                         s>>>(*cache, static_cast<const __half *>(stage->k),
                              static_cast<const __half *>(stage->v), stage->cap, n);
}

extern "C" void rk_k_smart_append(cudaStream_t s, const rk_k_kv *cache, const float *score,
                                  const rk_k_kv *stage, const int *row, int n)
{
    launch_dependent(smart_append_kernel, dim3(cache->heads), dim3(kAppendThreads),
                     8 * cache->head_dim * sizeof(float), s, *cache, score,
                     static_cast<const __half *>(stage->k), static_cast<const __half *>(stage->v),
                     stage->cap, row, n);
}
