/* The attention mass of a layer's cache rows (rk_attention_mass): for each
 * row, its softmax probability summed over a call's queries FROM..n-1.
 *
 * The attention call just before it left each query's softmax statistics
 * (attention.h), so one pass over the scores is enough: a block holds 128
 * of the cache's rows as the A side of the MMAs (a warp's 32, two row
 * tiles), streams the queries that see them through double-buffered shared
 * memory, turns each score into its probability with the query's max and
 * sum, and keeps each row's total in registers. A row's sum is one
 * thread's, in query order: no atomics, the same bits on every run. Rows
 * near the start are seen by the most queries, so a CTA takes one block of
 * rows from each end of the cache.
 *
 * A decode step's few queries have their scores from the attention itself
 * (rk_attention_decode's SCORES): rk_attention_mass_of_scores turns them
 * into probabilities the same way, without reading a key. */
#include "attention_kernels.cuh"

namespace rk_attn {

/* A warp scores two row tiles of 16 rows against each tile of queries, so
 * that each query fragment it reads feeds two MMAs. */
constexpr int kMassWarps = 4, kMassTiles = 2, kMassRows = 16 * kMassTiles * kMassWarps,
              kMassQueries = 64;

template <int D> constexpr int mass_smem_bytes()
{
    return (kMassRows + 2 * kMassQueries) * (D + kPad) * 2 + 2 * kMassQueries * (int)sizeof(float2);
}

/* Values D8*8.. of row C's quantized key in head H, as the attention
 * kernels read them back into fp16 tiles: from its codes, or a smartkv
 * key's from its slot. */
template <int D, int BITS>
__device__ __forceinline__ void key_chunk(__half *dst, const unsigned char *k, int group, int h,
                                          int cap, int c, const rk_k_smart &smart, int d8)
{
    float x[8];
    if constexpr (is_smart<BITS>()) {
        const unsigned char *const kh = k + (size_t)h * smart.k_head;
        const SmartSlot at = smart_slot(smart, reinterpret_cast<const int *>(kh + smart.maps)[c]);
        smart_chunk_values(kh + at.at, at.bits, D, group, d8, x);
    } else {
        kv_dequant8<BITS>(k + ((size_t)h * cap + c) * kv_row_bytes(BITS, D, group), D, group, d8,
                          x);
    }
    *reinterpret_cast<uint4 *>(dst) = kv_pack_half8(x);
}

/* The mass of rows KEY0..KEY0+kMassRows-1 of head H (a block's rows).
 * Leaves no copy in flight and every warp past its last read of shared
 * memory. */
template <int D, int BITS>
__device__ __forceinline__ void mass_rows(float *score, const float2 *stats, const __half *q,
                                          const unsigned char *k, int group, int row0, int n,
                                          int from, int cap, int stride, int add, int hd,
                                          float scale_log2, const rk_k_smart &smart, int h,
                                          int key0, __half *ks, __half *qs, float2 *st)
{
    constexpr int LD = D + kPad, NT = kMassQueries / 8, THREADS = kMassWarps * 32;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, len = row0 + n;
    /* Query i sees rows up to row0 + i: the block's first row, from query
     * key0 - row0 on. */
    const int first = max(from, key0 - row0);
    const int t_first = first / kMassQueries, tiles = (n + kMassQueries - 1) / kMassQueries;
    const __half *const qh = q + (size_t)h * n * hd;
    const float2 *const sh = stats + (size_t)h * n;

    /* Queries at or past n load as zeros and count for nothing. */
    auto fetch = [&](int t, int buf) {
        load_rows<D, kMassQueries, THREADS>(qs + buf * kMassQueries * LD, qh, t * kMassQueries, n,
                                            tid, hd);
        cp_async_commit();
        for (int i = tid; i < kMassQueries; i += THREADS) {
            const int qi = t * kMassQueries + i;
            const float2 ml = qi < n ? sh[qi] : make_float2(0.0f, 1.0f);
            st[buf * kMassQueries + i] = make_float2(ml.x, 1.0f / ml.y);
        }
    };
    /* This thread's rows: in row tile mt, lanes / 4 and + 8; per score
     * column j, queries 8j + 2 (lane % 4) + {0, 1} of the tile. */
    const int c_lo = key0 + warp * 16 * kMassTiles + (lane >> 2);
    const int col = 2 * (lane & 3);
    float acc[kMassTiles][2] = {};
    /* No query asked for sees these rows: their sums are zeros. */
    if (t_first < tiles) {
        /* fp16 keys are copied as they lie, with the first queries; others
         * are read back chunk by chunk. */
        if constexpr (BITS == 16)
            load_rows<D, kMassRows, THREADS>(
                ks, reinterpret_cast<const __half *>(k) + (size_t)h * cap * hd, key0, len, tid, hd);
        fetch(t_first, 0);
        if constexpr (BITS != 16) {
#pragma unroll 2
            for (int e = tid; e < kMassRows * (D / 8); e += THREADS) {
                const int r = e / (D / 8), d8 = e - r * (D / 8), c = key0 + r;
                __half *const dst = ks + r * LD + d8 * 8;
                if (c < len)
                    key_chunk<D, BITS>(dst, k, group, h, cap, c, smart, d8);
                else
                    *reinterpret_cast<uint4 *>(dst) = make_uint4(0, 0, 0, 0);
            }
        }
        /* A barrier does not wait for copies in flight: without this wait
         * the key fragments below could read rows not yet copied. H2O's
         * output changed from run to run when a prompt's MLP ran beside
         * this kernel (README, "A prompt's MLP on a stream of its own"). */
        cp_async_wait<0>();
        __syncthreads();

        QueryFrags<D, kMassTiles> kf;
        kf.init(ks + warp * 16 * kMassTiles * LD, lane);
        for (int t = t_first; t < tiles; ++t) {
            const int buf = (t - t_first) & 1;
            if (t + 1 < tiles) {
                fetch(t + 1, buf ^ 1);
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            __syncthreads();
            float s[kMassTiles][NT][4];
            tile_scores<D, NT, kMassTiles>(s, kf, qs + buf * kMassQueries * LD, lane);
            const int q0 = t * kMassQueries;
            /* Most tiles lie wholly inside the queries asked for and after the
             * block's last row: nothing to mask. */
            const bool whole =
                q0 >= from && q0 + kMassQueries <= n && row0 + q0 >= key0 + kMassRows - 1;
            const float2 *const stt = st + buf * kMassQueries + col;
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int i = q0 + 8 * j + col + (e & 1);
                    const float2 ml = stt[8 * j + (e & 1)];
#pragma unroll
                    for (int mt = 0; mt < kMassTiles; ++mt) {
                        const int c = c_lo + 16 * mt + 8 * (e >> 1);
                        if (whole || (i >= from && i < n && c <= row0 + i))
                            acc[mt][e >> 1] +=
                                exp2_approx(fmaf(s[mt][j][e], scale_log2, -ml.x)) * ml.y;
                    }
                }
            /* The next iteration refills the other buffer, read in this one. */
            __syncthreads();
        }
    }

#pragma unroll
    for (int mt = 0; mt < kMassTiles; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float sum = quad_sum(acc[mt][r]);
            const int c = c_lo + 16 * mt + 8 * r;
            if ((lane & 3) == 0 && c < len) {
                float *const dst = score + (size_t)h * stride + c;
                *dst = add && c < row0 ? *dst + sum : sum;
            }
        }
}

/* grid (blocks of kMassRows rows over cap, heads), or with PAIRED (the
 * queries span several tiles, which rows near the start see more of) half
 * as many: a CTA takes a block of rows from the start, which the most
 * queries see, and its mirror from the end, which the fewest see, so that
 * every CTA has about as many tiles of queries to score. STATS as the
 * attention wrote them: per head and query, the max in log2 units and the
 * sum. */
template <int D, int BITS>
__global__ void __launch_bounds__(kMassWarps * 32)
    mass_kernel(float *__restrict__ score, const float2 *__restrict__ stats,
                const __half *__restrict__ q, const unsigned char *__restrict__ k, int group,
                const int *__restrict__ row, int n, int from, int cap, int stride, int add,
                int paired, int hd, float scale_log2, rk_k_smart smart)
{
    constexpr int LD = D + kPad;
    extern __shared__ uint4 smem_raw[];
    __half *const ks = reinterpret_cast<__half *>(smem_raw);
    __half *const qs = ks + kMassRows * LD;
    float2 *const st = reinterpret_cast<float2 *>(qs + 2 * kMassQueries * LD);
    /* A programmatic dependent of the attention: its statistics, the
     * step's keys and scores are final once it is done. */
    rk_wait_previous();
    rk_allow_next();
    const int row0 = *row, blocks = (cap + kMassRows - 1) / kMassRows;
    const int mirror = blocks - 1 - (int)blockIdx.x;
#pragma unroll 1
    for (int p = 0; p < 1 + paired; ++p) {
        const int block = p ? mirror : (int)blockIdx.x;
        if ((p == 1 && mirror == (int)blockIdx.x) || block * kMassRows >= row0 + n)
            continue;
        /* The first block's rows may still be read (a warp's fragments). */
        if (p == 1)
            __syncthreads();
        mass_rows<D, BITS>(score, stats, q, k, group, row0, n, from, cap, stride, add, hd,
                           scale_log2, smart, blockIdx.y, block * kMassRows, ks, qs, st);
    }
}

template <int D, int BITS>
void launch_mass(cudaStream_t s, float *score, const float2 *stats, const void *q,
                 const rk_k_kv *c, const int *row, int n, int from, int stride, int add)
{
    const int blocks = (c->cap + kMassRows - 1) / kMassRows, paired = n - from > kMassQueries;
    launch_dependent(mass_kernel<D, BITS>, dim3(paired ? (blocks + 1) / 2 : blocks, c->heads),
                     dim3(kMassWarps * 32), mass_smem_bytes<D>(), s, score, stats,
                     static_cast<const __half *>(q), static_cast<const unsigned char *>(c->k),
                     c->group, row, n, from, c->cap, stride, add, paired, c->head_dim,
                     scale_log2(c->head_dim), c->smart);
}

/* grid (blocks of kScoresThreads rows over cap, heads): a thread sums its
 * row's probabilities over the queries, in query order, as mass_rows does. */
constexpr int kScoresThreads = 128;

__global__ void __launch_bounds__(kScoresThreads)
    mass_of_scores_kernel(float *__restrict__ score, const float2 *__restrict__ stats,
                          const float *__restrict__ scores, const int *__restrict__ row, int n,
                          int from, int cap, int stride, int add, float scale_log2)
{
    const int h = blockIdx.y, c = blockIdx.x * kScoresThreads + threadIdx.x, row0 = *row;
    if (c >= row0 + n)
        return;
    const float2 *const sh = stats + (size_t)h * n;
    const float *const xh = scores + (size_t)h * n * cap + c;
    float acc = 0.0f;
    /* Query i sees rows up to row0 + i. */
    for (int i = max(from, c - row0); i < n; ++i) {
        acc += softmax_prob(xh[(size_t)i * cap], sh[i], scale_log2);
    }
    float *const dst = score + (size_t)h * stride + c;
    *dst = add && c < row0 ? *dst + acc : acc;
}

/* The formats whose keys the mass reads: the row formats and smartkv
 * (KIVI caches compress no prompt and evict nothing). */
#define RK_MASS_FORMATS(X) RK_KV_BITS(X) X(RK_SMART_FORMAT)

template <int D> void configure_mass_dim()
{
#define RK_FORMAT(B)                                                                               \
    cudaFuncSetAttribute(mass_kernel<D, B>, cudaFuncAttributeMaxDynamicSharedMemorySize,          \
                         mass_smem_bytes<D>());
    RK_MASS_FORMATS(RK_FORMAT)
#undef RK_FORMAT
}

void configure_mass()
{
#define RK_DIM(D) configure_mass_dim<D>();
    RK_ATTENTION_HEAD_DIMS(RK_DIM)
#undef RK_DIM
}

template <int D>
void mass_of_dim(cudaStream_t s, float *score, const float2 *stats, const void *q,
                 const rk_k_kv *c, const int *row, int n, int from, int stride, int add)
{
    switch (c->bits) {
#define RK_CASE(B)                                                                                 \
    case B: launch_mass<D, B>(s, score, stats, q, c, row, n, from, stride, add); break;
        RK_MASS_FORMATS(RK_CASE)
#undef RK_CASE
    }
}

} // namespace rk_attn

using namespace rk_attn;

extern "C" void rk_attention_mass(cudaStream_t s, float *score, const float *stats,
                                  const void *q, const rk_k_kv *cache, const int *row, int n,
                                  int from, int stride, int add)
{
    configure_once();
    const float2 *const st = reinterpret_cast<const float2 *>(stats);
    switch (rk_attention_instance_dim(cache->head_dim, cache->bits)) {
#define RK_CASE(D)                                                                                 \
    case D: mass_of_dim<D>(s, score, st, q, cache, row, n, from, stride, add); break;
        RK_ATTENTION_HEAD_DIMS(RK_CASE)
#undef RK_CASE
    }
}

extern "C" void rk_attention_mass_of_scores(cudaStream_t s, float *score, const float *stats,
                                            const float *scores, const rk_k_kv *cache,
                                            const int *row, int n, int from, int stride, int add)
{
    mass_of_scores_kernel<<<dim3((cache->cap + kScoresThreads - 1) / kScoresThreads, cache->heads),
                            kScoresThreads, 0, s>>>(
        score, reinterpret_cast<const float2 *>(stats), scores, row, n, from, cache->cap, stride,
        add, scale_log2(cache->head_dim));
}
