#include <cuda_fp16.h>
#include <float.h>

#include "attention.h"
#include "kv_compress.h"
#include "kv_rows.cuh"

/* Rows of every storage format move as 32-bit words (kv_rows.h: rows are
 * 4-byte aligned); fp16 keys are read as uint4 (8 halves). */
namespace {

constexpr int kQueryTile = 16; /* queries whose dot products a thread keeps at once */
constexpr int kKeysPerBlock = 128;
/* Scores of a group of queries against a layer's rows; the caller's
 * scratch (the GEMM workspace) is at least this large. */
constexpr size_t kMassScratch = (size_t)32 << 20;

/* Row C's key of head H read back as floats, as the CPU target reads it: a
 * quantized key from its codes, a smartkv key from its slot. */
template <int D, int BITS>
__device__ __forceinline__ void load_key(float (&kf)[D], const unsigned char *k, int group, int h,
                                         int cap, int c, const rk_k_smart &smart)
{
    if constexpr (BITS == RK_SMART_FORMAT) {
        const unsigned char *const kh = k + (size_t)h * smart.k_head;
        const SmartSlot at =
            smart_slot(smart, reinterpret_cast<const int *>(kh + smart.maps)[c]);
#pragma unroll
        for (int d8 = 0; d8 < D / 8; d8++) {
            float x[8];
            smart_chunk_values(kh + at.at, at.bits, D, group, d8, x);
#pragma unroll
            for (int t = 0; t < 8; t++)
                kf[d8 * 8 + t] = x[t];
        }
    } else if constexpr (BITS != 16) {
        const unsigned char *kr = k + ((size_t)h * cap + c) * kv_row_bytes(BITS, D, group);
#pragma unroll
        for (int d8 = 0; d8 < D / 8; d8++) {
            float x[8];
            kv_dequant8<BITS>(kr, D, group, d8, x);
#pragma unroll
            for (int t = 0; t < 8; t++)
                kf[d8 * 8 + t] = x[t];
        }
    } else {
        const uint4 *kc = reinterpret_cast<const uint4 *>(k) + ((size_t)h * cap + c) * (D / 8);
#pragma unroll
        for (int d8 = 0; d8 < D / 8; d8++) {
            const uint4 u = kc[d8];
            const __half2 *p = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
            for (int t = 0; t < 4; t++) {
                const float2 f = __half22float2(p[t]);
                kf[d8 * 8 + 2 * t] = f.x;
                kf[d8 * 8 + 2 * t + 1] = f.y;
            }
        }
    }
}

/* Scaled scores of queries q0..q0+g-1 (a group of the call's n) against
 * every cached row, into S [heads, g, cap]; rows a query does not see get
 * -inf. One thread per row, its key in registers (load_key); queries pass
 * through shared memory a tile at a time. grid (row blocks, heads). */
template <int D, int BITS>
__global__ void group_scores_kernel(float *s, const __half *q, const unsigned char *k, int group,
                                    const int *row, int n, int q0, int g, int cap, float scale,
                                    rk_k_smart smart)
{
    __shared__ float4 qs[kQueryTile][D / 4];
    const int h = blockIdx.y, c = blockIdx.x * kKeysPerBlock + threadIdx.x;
    const int row0 = *row, len = row0 + n;
    float kf[D];
    if (c < len)
        load_key<D, BITS>(kf, k, group, h, cap, c, smart);
    for (int t0 = 0; t0 < g; t0 += kQueryTile) {
        const int tile = g - t0 < kQueryTile ? g - t0 : kQueryTile;
        __syncthreads();
        float *qf = reinterpret_cast<float *>(qs);
        for (int e = threadIdx.x; e < tile * D; e += blockDim.x)
            qf[e] = __half2float(q[((size_t)h * n + q0 + t0 + e / D) * D + e % D]) * scale;
        __syncthreads();
        if (c >= cap)
            continue;
        for (int qi = 0; qi < tile; qi++) {
            const int i = q0 + t0 + qi;
            float dot = -INFINITY;
            if (c < len && c <= row0 + i) {
                dot = 0.0f;
#pragma unroll
                for (int d4 = 0; d4 < D / 4; d4++) {
                    const float4 qv = qs[qi][d4];
                    dot += qv.x * kf[4 * d4] + qv.y * kf[4 * d4 + 1] + qv.z * kf[4 * d4 + 2] +
                           qv.w * kf[4 * d4 + 3];
                }
            }
            s[((size_t)h * g + t0 + qi) * cap + c] = dot;
        }
    }
}

/* Folds (om, ol) into the running softmax statistics (m, l): max and sum of
 * exp(score - max). -inf scores (rows a query does not see) add nothing. */
__device__ __forceinline__ void merge_ml(float &m, float &l, float om, float ol)
{
    const float nm = fmaxf(m, om);
    if (nm == -INFINITY)
        return;
    l = l * __expf(m - nm) + ol * __expf(om - nm);
    m = nm;
}

/* Softmax statistics (max, 1 / sum) of each of the group's score rows.
 * grid (g, heads); many blocks, so that loads from L2 overlap. */
__global__ void group_stats_kernel(float2 *stats, const float *s, const int *row, int n, int g,
                                   int cap)
{
    __shared__ float red_m[32], red_l[32];
    const int i = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, len = *row + n;
    const float *si = s + ((size_t)h * g + i) * cap;
    float m = -INFINITY, l = 0.0f;
    for (int c = tid; c < len; c += blockDim.x)
        merge_ml(m, l, si[c], 1.0f);
    for (int off = 16; off > 0; off >>= 1)
        merge_ml(m, l, __shfl_xor_sync(0xffffffffu, m, off), __shfl_xor_sync(0xffffffffu, l, off));
    if (tid % 32 == 0)
        red_m[tid / 32] = m, red_l[tid / 32] = l;
    __syncthreads();
    if (tid == 0) {
        for (int w = 1; w < (int)blockDim.x / 32; w++)
            merge_ml(m, l, red_m[w], red_l[w]);
        stats[(size_t)h * g + i] = make_float2(m, 1.0f / l);
    }
}

/* One thread per cached row: its probabilities summed over the group.
 * FIRST marks the call's first group, whose sums replace the scores of the
 * call's own rows (and of all rows without ADD). grid (row blocks, heads). */
__global__ void group_mass_kernel(float *score, const float *s, const float2 *stats,
                                  const int *row, int n, int g, int cap, int stride, int add,
                                  int first)
{
    const int h = blockIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
    const int row0 = *row, len = row0 + n;
    if (c >= len)
        return;
    const float *sh = s + (size_t)h * g * cap + c;
    const float2 *st = stats + (size_t)h * g;
    float sum = 0.0f;
#pragma unroll 8
    for (int i = 0; i < g; i++) {
        const float v = sh[(size_t)i * cap];
        if (v != -INFINITY)
            sum += __expf(v - st[i].x) * st[i].y;
    }
    float *dst = score + (size_t)h * stride + c;
    const int keep_old = first ? add && c < row0 : 1;
    *dst = keep_old ? *dst + sum : sum;
}

/* Orders floats as unsigned integers. */
__device__ __forceinline__ unsigned order_key(float f)
{
    const unsigned u = __float_as_uint(f);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* Block-wide exclusive prefix count of FLAG over threads in order; *TOTAL
 * gets the block's count. All threads must call it. */
__device__ int block_prefix_count(int flag, int *total)
{
    __shared__ int warp_count[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const unsigned ballot = __ballot_sync(0xffffffffu, flag);
    if (lane == 0)
        warp_count[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, all = 0;
    for (int w = 0; w < warps; w++) {
        before += w < warp ? warp_count[w] : 0;
        all += warp_count[w];
    }
    __syncthreads();
    *total = all;
    return before + __popc(ballot & ((1u << lane) - 1));
}

/* The sum of V over the block, returned to every thread. */
__device__ int block_sum(int v)
{
    __shared__ int partial[32];
    for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    if (threadIdx.x % 32 == 0)
        partial[threadIdx.x / 32] = v;
    __syncthreads();
    int all = 0;
    for (int w = 0; w < (int)blockDim.x / 32; w++)
        all += partial[w];
    __syncthreads();
    return all;
}

/* One block per head: SnapKV's choice (kv_select.c's rule). A bisection
 * over the bits of the pooled scores' order keys finds T, the TOP-th
 * largest key, one block-wide count per bit; rows above T are kept, and
 * rows equal to T in row order while places remain (ties to the earlier
 * row). Kept rows are written in row order. */
__global__ void keep_kernel(int *idx, const float *score, int n, int stride, int pool,
                            int budget, int tail)
{
    extern __shared__ unsigned keys[];
    const int h = blockIdx.x, tid = threadIdx.x;
    const int keep = budget < n ? budget : n;
    int *out = idx + (size_t)h * keep;
    if (n <= budget) {
        for (int j = tid; j < n; j += blockDim.x)
            out[j] = j;
        return;
    }
    const int prefix = n - tail, top = budget - tail, r = pool / 2;
    const float *sc = score + (size_t)h * stride;
    for (int j = tid; j < prefix; j += blockDim.x) {
        const int lo = j - r < 0 ? 0 : j - r, hi = j + r >= prefix ? prefix - 1 : j + r;
        float m = sc[lo];
        for (int i = lo + 1; i <= hi; i++)
            m = fmaxf(m, sc[i]);
        keys[j] = order_key(m);
    }
    for (int t = tid; t < tail; t += blockDim.x)
        out[top + t] = prefix + t;
    if (top == 0)
        return;
    __syncthreads();
    /* The largest T with at least TOP keys >= T. */
    unsigned T = 0;
    for (int bit = 31; bit >= 0; bit--) {
        const unsigned cand = T | 1u << bit;
        int mine = 0;
        for (int j = tid; j < prefix; j += blockDim.x)
            mine += keys[j] >= cand;
        if (block_sum(mine) >= top)
            T = cand;
    }
    int above = 0;
    for (int j = tid; j < prefix; j += blockDim.x)
        above += keys[j] > T;
    const int greater = block_sum(above);
    const int ties = top - greater; /* rows equal to T that are kept */
    int written = 0, ties_seen = 0;
    for (int base = 0; base < prefix; base += blockDim.x) {
        const int j = base + tid;
        const int gt = j < prefix && keys[j] > T, eq = j < prefix && keys[j] == T;
        int eq_total, kept_total;
        const int eq_before = ties_seen + block_prefix_count(eq, &eq_total);
        const int kept = gt || (eq && eq_before < ties);
        const int at = written + block_prefix_count(kept, &kept_total);
        if (kept)
            out[at] = j;
        written += kept_total;
        ties_seen += eq_total;
    }
}

/* Word C of cache row FROM to row TO (rows of WORDS words), in K and V. */
__device__ __forceinline__ void copy_kv_word(uint32_t *dk, uint32_t *dv, const uint32_t *sk,
                                             const uint32_t *sv, size_t to, size_t from,
                                             int words, int c)
{
    dk[to * words + c] = sk[from * words + c];
    dv[to * words + c] = sv[from * words + c];
}

/* grid (row blocks, heads): thread t moves word t % words of row t / words. */
__global__ void gather_kernel(uint32_t *dk, uint32_t *dv, int *pos, float *dscore,
                              const uint32_t *sk, const uint32_t *sv, const float *sscore,
                              const int *idx, int keep, int words, int dcap, int pstride,
                              int scap, int sstride)
{
    const int h = blockIdx.y;
    const int t = blockIdx.x * blockDim.x + threadIdx.x, j = t / words, c = t % words;
    if (j >= keep)
        return;
    const int r = idx[(size_t)h * keep + j];
    copy_kv_word(dk, dv, sk, sv, (size_t)h * dcap + j, (size_t)h * scap + r, words, c);
    if (c == 0) {
        const size_t p = (size_t)h * pstride + j;
        if (pos)
            pos[p] = r;
        if (sscore)
            dscore[p] = sscore[(size_t)h * sstride + r];
    }
}

/* Whether candidate (v, r) beats (bv, br): a lower value, or an equal one in
 * a lower row; r < 0 is no candidate. */
__device__ __forceinline__ bool better(float v, int r, float bv, int br)
{
    return r >= 0 && (br < 0 || v < bv || (v == bv && r < br));
}

/* One block per head: the lowest-scoring candidate (lowest position when
 * there are no scores), ties to the lower row, takes the new row. */
__global__ void evict_kernel(uint32_t *k, uint32_t *v, int *pos_rows, float *score,
                             const int *pos, const int *row, int words, int cap, int budget,
                             int sinks, int recent)
{
    __shared__ float best_v[32];
    __shared__ int best_r[32];
    const int h = blockIdx.x, tid = threadIdx.x, pos0 = *pos, row0 = *row;
    int *p = pos_rows + (size_t)h * cap;
    float *sc = score ? score + (size_t)h * cap : nullptr;
    /* The new row's position, as the CPU target records it, whether or not
     * it moves; the search below reads rows before it only. */
    if (tid == 0)
        p[row0] = pos0;
    if (row0 < budget)
        return;
    float bv = FLT_MAX;
    int br = -1;
    for (int r = tid; r < row0; r += blockDim.x) {
        if (p[r] < sinks || p[r] > pos0 - recent)
            continue;
        const float val = sc ? sc[r] : (float)p[r];
        if (better(val, r, bv, br))
            bv = val, br = r;
    }
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
        const int orr = __shfl_xor_sync(0xffffffffu, br, off);
        if (better(ov, orr, bv, br))
            bv = ov, br = orr;
    }
    if (tid % 32 == 0)
        best_v[tid / 32] = bv, best_r[tid / 32] = br;
    __syncthreads();
    if (tid == 0) {
        for (int w = 1; w < (int)blockDim.x / 32; w++)
            if (better(best_v[w], best_r[w], best_v[0], best_r[0]))
                best_v[0] = best_v[w], best_r[0] = best_r[w];
    }
    __syncthreads();
    const int victim = best_r[0];
    if (victim < 0)
        return; /* nothing old enough: the new row is overwritten next step */
    const size_t from = (size_t)h * cap + row0, to = (size_t)h * cap + victim;
    for (int c = tid; c < words; c += blockDim.x)
        copy_kv_word(k, v, k, v, to, from, words, c);
    if (tid == 0) {
        p[victim] = pos0;
        if (sc)
            sc[victim] = sc[row0];
    }
}

} // namespace

size_t rk_k_mass_scratch_bytes(void) { return kMassScratch; }

template <int D, int BITS>
static void mass_groups(cudaStream_t s, float *score, const void *q, const rk_k_kv *c,
                        const int *row, int n, int from, int stride, int add, void *scratch)
{
    const float scale = 1.0f / sqrtf((float)D);
    const int heads = c->heads, cap = c->cap;
    /* As many queries per group as the scratch holds scores (and
     * statistics) for. */
    const size_t per_query = (size_t)heads * (cap * sizeof(float) + sizeof(float2));
    int group = (int)(kMassScratch / per_query);
    group = group < 1 ? 1 : group;
    for (int q0 = from; q0 < n; q0 += group) {
        const int g = n - q0 < group ? n - q0 : group;
        float *sbuf = static_cast<float *>(scratch);
        float2 *stats = reinterpret_cast<float2 *>(sbuf + (size_t)heads * g * cap);
        group_scores_kernel<D, BITS>
            <<<dim3((cap + kKeysPerBlock - 1) / kKeysPerBlock, heads), kKeysPerBlock, 0, s>>>(
                sbuf, static_cast<const __half *>(q), static_cast<const unsigned char *>(c->k),
                c->group, row, n, q0, g, cap, scale, c->smart);
        group_stats_kernel<<<dim3(g, heads), 256, 0, s>>>(stats, sbuf, row, n, g, cap);
        group_mass_kernel<<<dim3((cap + 127) / 128, heads), 128, 0, s>>>(
            score, sbuf, stats, row, n, g, cap, stride, add, q0 == from);
    }
}

template <int D>
static void mass_bits(cudaStream_t s, float *score, const void *q, const rk_k_kv *c,
                      const int *row, int n, int from, int stride, int add, void *scratch)
{
    switch (c->bits) {
#define RK_CASE(B)                                                                                 \
    case B: mass_groups<D, B>(s, score, q, c, row, n, from, stride, add, scratch); break;
        RK_KV_BITS(RK_CASE)
        RK_CASE(RK_SMART_FORMAT)
#undef RK_CASE
    }
}

void rk_k_attention_mass(cudaStream_t s, float *score, const void *q, const rk_k_kv *cache,
                         const int *row, int n, int from, int stride, int add, void *scratch)
{
    switch (cache->head_dim) {
#define RK_CASE(D)                                                                                 \
    case D: mass_bits<D>(s, score, q, cache, row, n, from, stride, add, scratch); break;
        RK_ATTENTION_HEAD_DIMS(RK_CASE)
#undef RK_CASE
    }
}

void rk_k_kv_keep(cudaStream_t s, int *idx, const float *score, int n, int heads, int stride,
                  int pool, int budget, int tail)
{
    keep_kernel<<<heads, 1024, (size_t)n * sizeof(unsigned), s>>>(idx, score, n, stride, pool,
                                                                  budget, tail);
}

void rk_k_kv_gather(cudaStream_t s, const rk_k_kv *dst, int *pos, float *dscore, int pstride,
                    const rk_k_kv *src, const float *sscore, const int *idx, int keep,
                    int sstride)
{
    const int words = (int)(rk_k_kv_row_bytes(dst) / 4), threads = keep * words;
    gather_kernel<<<dim3((threads + 255) / 256, dst->heads), 256, 0, s>>>(
        static_cast<uint32_t *>(dst->k), static_cast<uint32_t *>(dst->v), pos, dscore,
        static_cast<const uint32_t *>(src->k), static_cast<const uint32_t *>(src->v), sscore, idx,
        keep, words, dst->cap, pstride, src->cap, sstride);
}

void rk_k_kv_evict(cudaStream_t s, const rk_k_kv *cache, int *pos_rows, float *score,
                   const int *pos, const int *row, int budget, int sinks, int recent)
{
    evict_kernel<<<cache->heads, 256, 0, s>>>(
        static_cast<uint32_t *>(cache->k), static_cast<uint32_t *>(cache->v), pos_rows, score,
        pos, row, (int)(rk_k_kv_row_bytes(cache) / 4), cache->cap, budget, sinks, recent);
}
