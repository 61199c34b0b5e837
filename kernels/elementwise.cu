#include <cuda_fp16.h>

#include "elementwise.h"
#include "kv_rows.cuh"
#include "launch.cuh"

/* Rows move as uint4 (8 halves): the CUDA target requires hidden and ffn
 * to be multiples of 8 (cuda_ops.c checks it at load); head_dim only needs
 * to be even, which the fp16 cache's rotary takes 2 halves at a time. Every kernel
 * is launched as a programmatic dependent and waits before touching
 * activations; it then lets the next kernel launch, which only prefetches
 * weights until this one is done. */
namespace {

constexpr int kThreads = 256;
constexpr int kMaxChunks = 4; /* per thread: rows of up to 8192 halves */

struct half8 {
    float v[8];
};

__device__ __forceinline__ half8 unpack(uint4 u)
{
    half8 r;
    const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __half22float2(h[i]);
        r.v[2 * i] = f.x;
        r.v[2 * i + 1] = f.y;
    }
    return r;
}

__device__ __forceinline__ uint4 pack(const half8 &r)
{
    uint4 u;
    __half2 *h = reinterpret_cast<__half2 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++)
        h[i] = __floats2half2_rn(r.v[2 * i], r.v[2 * i + 1]);
    return u;
}

__global__ void embed_kernel(__half *x, const __half *table, const int *tokens, int dim)
{
    rk_wait_previous();
    rk_allow_next();
    const uint4 *src = reinterpret_cast<const uint4 *>(table + (size_t)tokens[blockIdx.x] * dim);
    uint4 *dst = reinterpret_cast<uint4 *>(x + (size_t)blockIdx.x * dim);
    for (int c = threadIdx.x; c < dim / 8; c += blockDim.x)
        dst[c] = src[c];
}

__device__ float block_sum(float v, float *shared)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0)
        shared[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < (int)blockDim.x / 32; w++)
        total += shared[w];
    return total;
}

/* A LayerNorm's weight and bias chunks for one thread, loaded before the
 * wait for the previous kernel: they are weights, and one dependent round
 * trip less after it. */
template <int CHUNKS> struct norm_params {
    uint4 w[CHUNKS], b[CHUNKS];
};

template <int CHUNKS>
__device__ __forceinline__ void norm_load(norm_params<CHUNKS> &p, const __half *w, const __half *b,
                                          int mine, int stride)
{
#pragma unroll
    for (int i = 0; i < CHUNKS; i++) {
        if (i >= mine)
            break;
        const int c = threadIdx.x + i * stride;
        p.w[i] = reinterpret_cast<const uint4 *>(w)[c];
        p.b[i] = reinterpret_cast<const uint4 *>(b)[c];
    }
}

template <int CHUNKS>
__device__ __forceinline__ void norm_store(__half *y, const norm_params<CHUNKS> &p,
                                           const half8 (&v)[CHUNKS], int mine, int stride,
                                           float mean, float rstd)
{
#pragma unroll
    for (int i = 0; i < CHUNKS; i++) {
        if (i >= mine)
            break;
        const int c = threadIdx.x + i * stride;
        const half8 wv = unpack(p.w[i]), bv = unpack(p.b[i]);
        half8 o;
#pragma unroll
        for (int k = 0; k < 8; k++)
            o.v[k] = (v[i].v[k] - mean) * rstd * wv.v[k] + bv.v[k];
        reinterpret_cast<uint4 *>(y)[c] = pack(o);
    }
}

/* One block per row; the row stays in registers between the residual add,
 * the two statistics passes (mean, then squared deviations, for an accurate
 * fp32 variance) and the one or two normalised outputs. */
template <int CHUNKS>
__global__ void add_layernorm_kernel(__half *x, const __half *a, const __half *b, __half *y1,
                                     const __half *w1, const __half *b1, __half *y2,
                                     const __half *w2, const __half *b2, int dim, float eps)
{
    __shared__ float shared[kThreads / 32];
    const size_t off = (size_t)blockIdx.x * dim;
    uint4 *xr = reinterpret_cast<uint4 *>(x + off);
    const int nc = dim / 8, stride = blockDim.x;
    const int mine = threadIdx.x < nc ? (nc - 1 - threadIdx.x) / stride + 1 : 0;
    /* The next kernel (a product) may launch now and prefetch its weights
     * into what the product before this one leaves free. */
    rk_allow_next();
    norm_params<CHUNKS> p1, p2;
    norm_load(p1, w1, b1, mine, stride);
    if (y2)
        norm_load(p2, w2, b2, mine, stride);
    rk_wait_previous();
    /* Every chunk's loads go out before the first store: the stream's store
     * may alias a later chunk's inputs, which kept each chunk's loads behind
     * the chunk before's store, one more trip to L2. */
    uint4 xv[CHUNKS], av[CHUNKS], bv[CHUNKS];
#pragma unroll
    for (int i = 0; i < CHUNKS; i++) {
        if (i >= mine)
            break;
        const int c = threadIdx.x + i * stride;
        xv[i] = xr[c];
        if (a)
            av[i] = reinterpret_cast<const uint4 *>(a + off)[c];
        if (b)
            bv[i] = reinterpret_cast<const uint4 *>(b + off)[c];
    }
    half8 v[CHUNKS];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < CHUNKS; i++) {
        if (i >= mine)
            break;
        const int c = threadIdx.x + i * stride;
        v[i] = unpack(xv[i]);
        if (a) {
            /* The residual stream is stored in fp16 (as in HF); the sum is
             * rounded once and normalised as stored. */
            const half8 a8 = unpack(av[i]);
            half8 b8 = {};
            if (b)
                b8 = unpack(bv[i]);
#pragma unroll
            for (int k = 0; k < 8; k++)
                v[i].v[k] = (a8.v[k] + b8.v[k]) + v[i].v[k];
            const uint4 stored = pack(v[i]);
            xr[c] = stored;
            v[i] = unpack(stored);
        }
#pragma unroll
        for (int k = 0; k < 8; k++)
            s += v[i].v[k];
    }
    const float mean = block_sum(s, shared) / dim;
    float q = 0.0f;
#pragma unroll
    for (int i = 0; i < CHUNKS; i++) {
        if (i >= mine)
            break;
#pragma unroll
        for (int k = 0; k < 8; k++)
            q += (v[i].v[k] - mean) * (v[i].v[k] - mean);
    }
    const float rstd = rsqrtf(block_sum(q, shared) / dim + eps);
    norm_store(y1 + off, p1, v, mine, stride, mean, rstd);
    if (y2)
        norm_store(y2 + off, p2, v, mine, stride, mean, rstd);
}

/* Units of a token's rows a thread loads before it stores any of them. */
constexpr int kRotaryBatch = 4;

/* A block per token, U dims a unit, U the halves of a T: 8 (a uint4), or 2
 * where head_dim is not a multiple of 8 and rows start only 4-byte aligned.
 * The token's q, k and v rows come into shared memory, a batch of loads in
 * flight per thread; each thread then rotates rotate_half pairs there, the
 * block's threads sharing the pairs evenly; then the units go out to q and
 * the cache. With a thread per unit and the rotation in the units that hold
 * rotary dims, nearly every warp ran a few lanes through the rotation while
 * the rest waited: the kernel was bound by issue, 28.8 us a layer on the
 * 2.8B shape at 1920 tokens (README, "Where a prefill's time goes"). */
template <typename T>
__global__ void __launch_bounds__(kThreads)
    qkv_rotary_kernel(__half *__restrict__ q, __half *__restrict__ kc, __half *__restrict__ vc,
                      const __half *__restrict__ qkv, const float *__restrict__ rope,
                      const int *pos, const int *row, int n, int heads, int head_dim, int rot,
                      int cap)
{
    constexpr int U = sizeof(T) / sizeof(__half);
    extern __shared__ uint4 token_smem[];
    T *const token = reinterpret_cast<T *>(token_smem);
    __half *const th = reinterpret_cast<__half *>(token_smem);
    rk_wait_previous();
    rk_allow_next();
    const int units = head_dim / U, all = heads * 3 * units, i = blockIdx.x;
    const T *const src = reinterpret_cast<const T *>(qkv + (size_t)i * heads * 3 * head_dim);
    for (int t0 = threadIdx.x; t0 < all; t0 += kRotaryBatch * blockDim.x) {
        T v[kRotaryBatch];
#pragma unroll
        for (int b = 0; b < kRotaryBatch; b++)
            if (t0 + b * (int)blockDim.x < all)
                v[b] = src[t0 + b * blockDim.x];
#pragma unroll
        for (int b = 0; b < kRotaryBatch; b++)
            if (t0 + b * (int)blockDim.x < all)
                token[t0 + b * blockDim.x] = v[b];
    }
    __syncthreads();
    const int half = rot / 2, p = *pos + i, r = *row + i;
    const float *const rp = rope + (size_t)p * rot;
    /* Pair e: dims jj and jj + half of q (even e / half) or k (odd) of head
     * e / half / 2; one thread reads and writes both. */
    for (int e = threadIdx.x; e < heads * 2 * half; e += blockDim.x) {
        const int qk = e / half, jj = e - qk * half;
        __half *const at = th + (size_t)(qk / 2 * 3 + qk % 2) * head_dim + jj;
        const float lo = __half2float(at[0]), hi = __half2float(at[half]);
        float2 out;
        rotated_pair_rn(lo, hi, rp, jj, &out);
        at[0] = __float2half_rn(out.x);
        at[half] = __float2half_rn(out.y);
    }
    __syncthreads();
    for (int t = threadIdx.x; t < all; t += blockDim.x) {
        const int rr = t / units, c = t - rr * units, h = rr / 3, part = rr - 3 * h;
        __half *dst = part == 0 ? q + ((size_t)h * n + i) * head_dim
                                : (part == 1 ? kc : vc) + ((size_t)h * cap + r) * head_dim;
        reinterpret_cast<T *>(dst)[c] = token[t];
    }
}

/* Elements 8C..8C+7 of the row SRC, rotated where ROT says. */
__device__ __forceinline__ void rotated8_rn(float *x, const __half *src, const float *rp, int c,
                                            int rot)
{
    const half8 v = unpack(reinterpret_cast<const uint4 *>(src)[c]);
#pragma unroll
    for (int e = 0; e < 8; ++e)
        x[e] = c * 8 < rot ? rotated_rn(v.v[e], src, rp, c * 8 + e, rot) : v.v[e];
}

/* The same for a cache of BITS-bit rows (kv_rows.h): a block per token and
 * head, a warp each for q, k and v, lane L holding elements L + 32i.
 * Rotated values are computed in fp32 in the reference's order and
 * roundings, and k and v are quantized from them, not from their fp16
 * roundings, as the CPU target quantizes its floats. */
template <int BITS>
__global__ void qkv_rotary_quant_kernel(__half *q, unsigned char *kc, unsigned char *vc,
                                        const __half *qkv, const float *rope, const int *pos,
                                        const int *row, int n, int heads, int head_dim, int rot,
                                        int cap, int group)
{
    __shared__ float xs[2][kKvMaxHeadDim];
    __shared__ float2 meta[2][kKvMaxHeadDim];
    const int i = blockIdx.x, h = blockIdx.y, part = threadIdx.x / 32, lane = threadIdx.x % 32;
    /* The step's positions and rows are inputs of the whole step, final
     * before the graph runs: read before the wait, they are not one more
     * trip to L2 in front of the rope rows. */
    const int p = *pos + i, r = *row + i;
    rk_wait_previous();
    rk_allow_next();
    const __half *src = qkv + ((size_t)i * heads + h) * 3 * head_dim + (size_t)part * head_dim;
    const float *rp = rope + (size_t)p * rot;
    /* Every element's loads before the first store: q's stores may alias
     * the QKV rows as far as the compiler knows, which kept each element's
     * loads one trip to L2 behind the element before's. */
    float x[kKvMaxHeadDim / 32] = {};
#pragma unroll
    for (int k = 0; k < kKvMaxHeadDim / 32; ++k) {
        const int j = lane + 32 * k;
        if (j >= head_dim)
            break;
        x[k] = rotated_rn(__half2float(src[j]), src, rp, j, part < 2 ? rot : 0);
    }
#pragma unroll
    for (int k = 0; k < kKvMaxHeadDim / 32; ++k) {
        const int j = lane + 32 * k;
        if (j >= head_dim)
            break;
        if (part == 0)
            q[((size_t)h * n + i) * head_dim + j] = __float2half_rn(x[k]);
        else
            xs[part - 1][j] = x[k];
    }
    if (part == 0)
        return;
    unsigned char *dst = (part == 1 ? kc : vc) +
                         ((size_t)h * cap + r) * kv_row_bytes(BITS, head_dim, group);
    if (kv_row_lanes_fit(group)) {
        kv_quantize_row_lanes<BITS>(dst, x, head_dim, group, lane);
    } else {
        __syncwarp();
        kv_quantize_row_warp<BITS>(dst, xs[part - 1], meta[part - 1], head_dim, group, lane);
    }
}

/* The same codes for a GROUP of 8, 16 or 32 (G), a thread per group, for
 * a prompt's rows: a warp per row leaves each lane two or three elements
 * and a long chain of shuffles, which a 1920-token prompt pays 184k times
 * a layer. A decode step's few rows are the other way round: a thread's
 * sixteen elements in a row are the longer chain there (int8 at 1920
 * positions decoded 4 % slower on the H200), so up to kRotaryFewRows rows
 * keep the warp per row. Threads of a token: head_dim / 8 per head for q's
 * chunks, then head_dim / G per head for k's groups, then v's, so that a
 * warp's threads take the same path. */
constexpr int kRotaryFewRows = 16;

template <int BITS, int G>
__global__ void qkv_rotary_quant_groups_kernel(__half *q, unsigned char *kc, unsigned char *vc,
                                               const __half *qkv, const float *rope,
                                               const int *pos, const int *row, int n, int heads,
                                               int head_dim, int rot, int cap)
{
    rk_wait_previous();
    rk_allow_next();
    const int qchunks = head_dim / 8, groups = head_dim / G;
    const int t = blockIdx.y * blockDim.x + threadIdx.x, qthreads = heads * qchunks;
    if (t >= heads * (qchunks + 2 * groups))
        return;
    const int i = blockIdx.x, p = *pos + i, r = *row + i;
    const float *rp = rope + (size_t)p * rot;
    if (t < qthreads) {
        const int h = t / qchunks, c = t % qchunks;
        float x[8];
        rotated8_rn(x, qkv + ((size_t)i * heads + h) * 3 * head_dim, rp, c, rot);
        reinterpret_cast<uint4 *>(q + ((size_t)h * n + i) * head_dim)[c] = kv_pack_half8(x);
        return;
    }
    const int u = t - qthreads, part = 1 + u / (heads * groups), h = u / groups % heads;
    const int g = u % groups;
    const __half *src = qkv + (((size_t)i * heads + h) * 3 + part) * head_dim;
    float x[G];
#pragma unroll
    for (int c = 0; c < G / 8; ++c)
        rotated8_rn(x + 8 * c, src, rp, g * (G / 8) + c, part == 1 ? rot : 0);
    float lo = INFINITY, hi = -INFINITY;
#pragma unroll
    for (int e = 0; e < G; ++e) {
        lo = fminf(lo, x[e]);
        hi = fmaxf(hi, x[e]);
    }
    const float2 sm = kv_group_scale_min<BITS>(lo, hi);
    unsigned char *dst = (part == 1 ? kc : vc) + ((size_t)h * cap + r) * kv_row_bytes(BITS, head_dim, G);
    reinterpret_cast<__half2 *>(dst + head_dim * BITS / 8)[g] =
        __halves2half2(__float2half_rn(sm.x), __float2half_rn(sm.y));
    /* The group's codes as whole words, element E at bit BITS x E (the
     * bytes' order): 32-bit words, or one 16-bit word for 8 2-bit codes. */
    constexpr int kPerWord = 32 / BITS, kWords = (G + kPerWord - 1) / kPerWord;
#pragma unroll
    for (int w = 0; w < kWords; ++w) {
        unsigned word = 0;
#pragma unroll
        for (int e = 0; e < kPerWord && w * kPerWord + e < G; ++e)
            word |= kv_code_of<BITS>(x[w * kPerWord + e], sm) << (BITS * e);
        unsigned char *at = dst + (g * G + w * kPerWord) * BITS / 8;
        if (G * BITS >= 32)
            *reinterpret_cast<unsigned *>(at) = word;
        else
            *reinterpret_cast<unsigned short *>(at) = (unsigned short)word;
    }
}

__global__ void gelu_kernel(__half *x, size_t chunks)
{
    rk_wait_previous();
    rk_allow_next();
    uint4 *xv = reinterpret_cast<uint4 *>(x);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < chunks;
         i += (size_t)gridDim.x * blockDim.x) {
        half8 v = unpack(xv[i]);
#pragma unroll
        for (int k = 0; k < 8; k++)
            v.v[k] = 0.5f * v.v[k] * (1.0f + erff(v.v[k] * 0.70710678118654752f));
        xv[i] = pack(v);
    }
}

/* Many blocks each reduce a strided share of the logits to (value, index);
 * the last block to finish (a counter in the scratch, which it resets for
 * the next call) reduces those. Ties keep the smaller index. */
constexpr int kArgmaxThreads = 256, kArgmaxBlocks = 128;

struct arg_best {
    float v;
    int i;
};

__device__ __forceinline__ void keep_better(float &v, int &i, float ov, int oi)
{
    if (ov > v || (ov == v && oi < i)) {
        v = ov;
        i = oi;
    }
}

__device__ void block_best(float &v, int &i)
{
    __shared__ arg_best warp_best[kArgmaxThreads / 32];
    for (int o = 16; o > 0; o >>= 1)
        keep_better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    if (threadIdx.x % 32 == 0)
        warp_best[threadIdx.x / 32] = {v, i};
    __syncthreads();
    if (threadIdx.x == 0)
        for (int w = 1; w < kArgmaxThreads / 32; w++)
            keep_better(v, i, warp_best[w].v, warp_best[w].i);
}

__global__ void argmax_kernel(float *out_val, int *out, const float *logits, int vocab,
                              arg_best *partial, unsigned *done)
{
    __shared__ bool last;
    rk_wait_previous();
    float v = -INFINITY;
    int idx = vocab;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < vocab; i += gridDim.x * blockDim.x)
        keep_better(v, idx, logits[i], i);
    block_best(v, idx);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = {v, idx};
        __threadfence();
        last = atomicAdd(done, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    v = -INFINITY;
    idx = vocab;
    for (int b = threadIdx.x; b < (int)gridDim.x; b += blockDim.x)
        keep_better(v, idx, partial[b].v, partial[b].i);
    block_best(v, idx);
    if (threadIdx.x == 0) {
        *out = idx < vocab ? idx : 0;
        *out_val = logits[*out];
        *done = 0;
    }
}

/* Logits as unsigned keys that order like the floats. */
__device__ __forceinline__ unsigned order_key(float f)
{
    const unsigned b = __float_as_uint(f);
    return b & 0x80000000u ? ~b : b | 0x80000000u;
}

/* The K largest by radix select: four passes over the logits each fix
 * eight more bits of the K-th largest key (a histogram of the next digit
 * among the keys that share the bits fixed so far); then every larger key
 * and as many keys equal to it as are needed are written out. One block:
 * the vocabulary is read from L2 a few times, a few microseconds. */
constexpr int kTopKThreads = 1024;

__global__ void top_k_kernel(float *vals, int *ids, const float *logits, int vocab, int k)
{
    __shared__ unsigned hist[256];
    __shared__ unsigned prefix, mask;
    __shared__ int need, n_greater, n_equal;
    rk_wait_previous();
    const int tid = threadIdx.x;
    if (tid == 0) {
        prefix = 0;
        mask = 0;
        need = k;
        n_greater = 0;
        n_equal = 0;
    }
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int d = tid; d < 256; d += blockDim.x)
            hist[d] = 0;
        __syncthreads();
        for (int i = tid; i < vocab; i += blockDim.x) {
            const unsigned key = order_key(logits[i]);
            if ((key & mask) == prefix)
                atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid == 0) {
            int above = 0;
            for (int d = 255; d >= 0; d--) {
                if (above + (int)hist[d] >= need) {
                    prefix |= (unsigned)d << shift;
                    mask |= 255u << shift;
                    need -= above;
                    break;
                }
                above += hist[d];
            }
        }
        __syncthreads();
    }
    /* k - need keys are larger than the K-th; need of the equal ones fill
     * the last slots. */
    for (int i = tid; i < vocab; i += blockDim.x) {
        const unsigned key = order_key(logits[i]);
        int slot = -1;
        if (key > prefix) {
            slot = atomicAdd(&n_greater, 1);
        } else if (key == prefix) {
            const int e = atomicAdd(&n_equal, 1);
            if (e < need)
                slot = k - need + e;
        }
        if (slot >= 0) {
            vals[slot] = logits[i];
            ids[slot] = i;
        }
    }
}

unsigned grid_for(size_t count)
{
    size_t blocks = (count + kThreads - 1) / kThreads;
    return (unsigned)(blocks < 65535 ? (blocks ? blocks : 1) : 65535);
}

} // namespace

extern "C" {

int rk_k_supports_dim(int dim) { return dim % 8 == 0 && dim / 8 <= kThreads * kMaxChunks; }

void rk_k_embed(cudaStream_t s, void *x, const void *table, const int *tokens, int n, int dim)
{
    launch_dependent(embed_kernel, dim3(n), dim3(kThreads), 0, s, (__half *)x,
                     (const __half *)table, tokens, dim);
}

void rk_k_add_layernorm(cudaStream_t s, void *x, const void *a, const void *b, void *y1,
                        const void *w1, const void *b1, void *y2, const void *w2, const void *b2,
                        int n, int dim, float eps)
{
    const int nc = dim / 8;
    const int threads = nc < kThreads ? (nc + 31) / 32 * 32 : kThreads;
    const int chunks = (nc + threads - 1) / threads;
    auto kernel = chunks <= 1 ? add_layernorm_kernel<1>
                  : chunks <= 2 ? add_layernorm_kernel<2>
                                : add_layernorm_kernel<kMaxChunks>;
    launch_dependent(kernel, dim3(n), dim3(threads), 0, s, (__half *)x, (const __half *)a,
                     (const __half *)b, (__half *)y1, (const __half *)w1, (const __half *)b1,
                     (__half *)y2, (const __half *)w2, (const __half *)b2, dim, eps);
}

void rk_k_qkv_rotary(cudaStream_t s, void *q, const rk_k_kv *cache, const void *qkv,
                     const float *rope, const int *pos, const int *row, int n, int rot_dims)
{
    const int heads = cache->heads, head_dim = cache->head_dim, cap = cache->cap;
    if (cache->bits == 16) {
        const bool wide = head_dim % 8 == 0;
        const int per_token = heads * 3 * head_dim / (wide ? 8 : 2);
        const int threads = per_token < kThreads ? (per_token + 31) / 32 * 32 : kThreads;
        /* At most 48 KB: hidden is at most 8192 (rk_k_supports_dim). */
        const size_t token_bytes = (size_t)heads * 3 * head_dim * sizeof(__half);
        launch_dependent(wide ? qkv_rotary_kernel<uint4> : qkv_rotary_kernel<uint32_t>, dim3(n),
                         dim3(threads), token_bytes, s,
                         (__half *)q, (__half *)cache->k, (__half *)cache->v,
                         (const __half *)qkv, rope, pos, row, n, heads, head_dim, rot_dims, cap);
        return;
    }
    const int group = cache->group;
    if (n > kRotaryFewRows && (group == 8 || group == 16 || group == 32)) {
        void (*kernel)(__half *, unsigned char *, unsigned char *, const __half *, const float *,
                       const int *, const int *, int, int, int, int, int) =
#define RK_GROUPS_KERNEL(G)                                                                        \
    cache->bits == 8 ? qkv_rotary_quant_groups_kernel<8, G>                                        \
    : cache->bits == 4 ? qkv_rotary_quant_groups_kernel<4, G>                                      \
                       : qkv_rotary_quant_groups_kernel<2, G>
            group == 8 ? RK_GROUPS_KERNEL(8) : group == 16 ? RK_GROUPS_KERNEL(16) : RK_GROUPS_KERNEL(32);
#undef RK_GROUPS_KERNEL
        const int per_token = heads * (head_dim / 8 + 2 * head_dim / group);
        launch_dependent(kernel, dim3(n, (per_token + kThreads - 1) / kThreads), dim3(kThreads),
                         0, s, (__half *)q, (unsigned char *)cache->k, (unsigned char *)cache->v,
                         (const __half *)qkv, rope, pos, row, n, heads, head_dim, rot_dims, cap);
        return;
    }
    void (*kernel)(__half *, unsigned char *, unsigned char *, const __half *, const float *,
                   const int *, const int *, int, int, int, int, int, int) =
        cache->bits == 8   ? qkv_rotary_quant_kernel<8>
        : cache->bits == 4 ? qkv_rotary_quant_kernel<4>
                           : qkv_rotary_quant_kernel<2>;
    launch_dependent(kernel, dim3(n, heads), dim3(96), 0, s, (__half *)q,
                     (unsigned char *)cache->k, (unsigned char *)cache->v, (const __half *)qkv,
                     rope, pos, row, n, heads, head_dim, rot_dims, cap, cache->group);
}

size_t rk_k_top_k_scratch_bytes(void) { return kArgmaxBlocks * sizeof(arg_best) + 16; }

void rk_k_top_k(cudaStream_t s, float *vals, int *ids, const float *logits, int vocab, int k,
                void *scratch)
{
    if (k == 1) {
        arg_best *partial = static_cast<arg_best *>(scratch);
        launch_dependent(argmax_kernel, dim3(kArgmaxBlocks), dim3(kArgmaxThreads), 0, s, vals,
                         ids, logits, vocab, partial,
                         reinterpret_cast<unsigned *>(partial + kArgmaxBlocks));
    } else {
        launch_dependent(top_k_kernel, dim3(1), dim3(kTopKThreads), 0, s, vals, ids, logits,
                         vocab, k);
    }
}

void rk_k_gelu(cudaStream_t s, void *x, size_t count)
{
    launch_dependent(gelu_kernel, dim3(grid_for(count / 8)), dim3(kThreads), 0, s, (__half *)x,
                     count / 8);
}

} // extern "C"
