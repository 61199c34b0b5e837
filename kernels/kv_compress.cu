#include <cuda_fp16.h>
#include <float.h>

#include "kv_compress.h"
#include "kv_rows.cuh"
#include "launch.cuh"
#include "softmax.cuh"

/* Rows of every storage format move as words of 4 bytes (kv_rows.h: rows
 * are 4-byte aligned) or, where they are whole multiples of 16, of 16. */
namespace {

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

constexpr int kDigitBits = 8, kDigits = 1 << kDigitBits;

/* The TOP-th largest of the N order keys (TOP >= 1), a radix select of
 * four 8-bit digits from the top: per digit one histogram of the keys that
 * share the digits chosen so far, and one warp's scan of it from the
 * largest digit down. Four block-wide rounds, where a bisection over the 32
 * bits takes 32. All threads must call it. */
__device__ unsigned top_key(const unsigned *keys, int n, int top)
{
    __shared__ unsigned hist[kDigits];
    __shared__ unsigned chosen, left;
    const int tid = threadIdx.x, lane = tid % 32;
    unsigned prefix = 0, need = top;
    for (int shift = 32 - kDigitBits; shift >= 0; shift -= kDigitBits) {
        /* The digits above SHIFT, chosen so far. */
        const unsigned high = shift + kDigitBits >= 32 ? 0u : ~0u << (shift + kDigitBits);
        for (int d = tid; d < kDigits; d += blockDim.x)
            hist[d] = 0;
        __syncthreads();
        for (int j = tid; j < n; j += blockDim.x)
            if (((keys[j] ^ prefix) & high) == 0)
                atomicAdd(&hist[(keys[j] >> shift) & (kDigits - 1)], 1u);
        __syncthreads();
        if (tid < 32) {
            /* Lane l sums digits 8l..8l+7; ABOVE counts the keys in higher
             * lanes' digits. */
            constexpr int per = kDigits / 32;
            unsigned mine = 0;
            for (int i = 0; i < per; i++)
                mine += hist[lane * per + i];
            unsigned suffix = mine;
            for (int off = 1; off < 32; off <<= 1) {
                const unsigned v = __shfl_down_sync(0xffffffffu, suffix, off);
                if (lane + off < 32)
                    suffix += v;
            }
            const unsigned above = suffix - mine;
            if (above < need && need <= suffix) {
                unsigned count = above;
                for (int d = lane * per + per - 1; d >= lane * per; d--) {
                    if (count + hist[d] >= need) {
                        chosen = (unsigned)d;
                        left = need - count;
                        break;
                    }
                    count += hist[d];
                }
            }
        }
        __syncthreads();
        prefix |= chosen << shift;
        need = left;
        __syncthreads();
    }
    return prefix;
}

/* One block per head: SnapKV's choice (kv_select.c's rule). T is the
 * TOP-th largest of the pooled scores' order keys (top_key); rows above T
 * are kept, and rows equal to T in row order while places remain (ties to
 * the earlier row). Kept rows are written in row order. */
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
    const unsigned T = top_key(keys, prefix, top);
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
template <typename Word>
__device__ __forceinline__ void copy_kv_word(Word *dk, Word *dv, const Word *sk, const Word *sv,
                                             size_t to, size_t from, int words, int c)
{
    dk[to * words + c] = sk[from * words + c];
    dv[to * words + c] = sv[from * words + c];
}

/* grid (row blocks, heads): thread t moves word t % words of row t / words. */
template <typename Word>
__global__ void gather_kernel(Word *dk, Word *dv, int *pos, float *dscore, const Word *sk,
                              const Word *sv, const float *sscore, const int *idx, int keep,
                              int words, int dcap, int pstride, int scap, int sstride)
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

/* One block per head: the step's mass added to the scores (with
 * STEP_SCORES), then the lowest-scoring candidate (lowest position when
 * there are no scores), ties to the lower row, takes the new row. */
__global__ void evict_kernel(uint32_t *k, uint32_t *v, int *pos_rows, float *score,
                             const int *pos, const int *row, int words, int cap, int budget,
                             int sinks, int recent, const float *step_scores,
                             const float2 *step_stats, float scale_log2)
{
    __shared__ float best_v[32];
    __shared__ int best_r[32];
    const int h = blockIdx.x, tid = threadIdx.x, pos0 = *pos, row0 = *row;
    int *p = pos_rows + (size_t)h * cap;
    float *sc = score ? score + (size_t)h * cap : nullptr;
    /* Each thread adds to the rows it searches below, so no barrier lies
     * between; the new row's own score is its mass alone. The add rounds
     * the probability first, as rk_attention_mass_of_scores' sum of one
     * term does: fused into the multiply, a score came out a bit off in
     * some rows, and the victim could differ. */
    if (sc && step_scores) {
        const float2 ml = step_stats[h];
        const float *x = step_scores + (size_t)h * cap;
        for (int r = tid; r <= row0; r += blockDim.x)
            sc[r] = __fadd_rn(r < row0 ? sc[r] : 0.0f, softmax_prob(x[r], ml, scale_log2));
    }
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

void rk_k_kv_keep(cudaStream_t s, int *idx, const float *score, int n, int heads, int stride,
                  int pool, int budget, int tail)
{
    keep_kernel<<<heads, 1024, (size_t)n * sizeof(unsigned), s>>>(idx, score, n, stride, pool,
                                                                  budget, tail);
}

template <typename Word>
static void gather_words(cudaStream_t s, const rk_k_kv *dst, int *pos, float *dscore,
                         int pstride, const rk_k_kv *src, const float *sscore, const int *idx,
                         int keep, int sstride)
{
    const int words = (int)(rk_k_kv_row_bytes(dst) / sizeof(Word)), threads = keep * words;
    gather_kernel<Word><<<dim3((threads + 255) / 256, dst->heads), 256, 0, s>>>(
        static_cast<Word *>(dst->k), static_cast<Word *>(dst->v), pos, dscore,
        static_cast<const Word *>(src->k), static_cast<const Word *>(src->v), sscore, idx, keep,
        words, dst->cap, pstride, src->cap, sstride);
}

/* Rows move 16 bytes at a time where they are whole multiples of 16 bytes
 * (fp16 rows of head_dim 8k) on aligned bases, 4 otherwise. */
void rk_k_kv_gather(cudaStream_t s, const rk_k_kv *dst, int *pos, float *dscore, int pstride,
                    const rk_k_kv *src, const float *sscore, const int *idx, int keep,
                    int sstride)
{
    const uintptr_t bases =
        (uintptr_t)dst->k | (uintptr_t)dst->v | (uintptr_t)src->k | (uintptr_t)src->v;
    if (rk_k_kv_row_bytes(dst) % 16 == 0 && bases % 16 == 0)
        gather_words<uint4>(s, dst, pos, dscore, pstride, src, sscore, idx, keep, sstride);
    else
        gather_words<uint32_t>(s, dst, pos, dscore, pstride, src, sscore, idx, keep, sstride);
}

void rk_k_kv_evict(cudaStream_t s, const rk_k_kv *cache, int *pos_rows, float *score,
                   const int *pos, const int *row, int budget, int sinks, int recent,
                   rk_k_step_mass mass)
{
    evict_kernel<<<cache->heads, 256, 0, s>>>(
        static_cast<uint32_t *>(cache->k), static_cast<uint32_t *>(cache->v), pos_rows, score,
        pos, row, (int)(rk_k_kv_row_bytes(cache) / 4), cache->cap, budget, sinks, recent,
        mass.scores, reinterpret_cast<const float2 *>(mass.stats), scale_log2(cache->head_dim));
}
