// GEMV lab: variants of the decode products on the Pythia-2.8B shape, 32 layers of distinct weights,
// each chain recorded as a CUDA graph of programmatic launches and replayed (us per layer, MB/us = TB/s).
// From the repository root: nvcc -O3 -arch=sm_90a -std=c++17 -Ikernels bench/results/gemv_pipeline_h200/gemv_lab.cu -o gemv_lab && ./gemv_lab
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#include "launch.cuh"

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); exit(1);} } while (0)

struct rk_gemv_part { void *y; const void *w, *x, *bias; int in, out, gelu; };
struct gemv_job { rk_gemv_part a, b; int rows; int sum; };
/* fused extras: LN of resid into the smem x (pair), or resid += round(acc) (sum) */
struct fuse_t { __half *resid; const __half *w1, *b1, *w2, *b2; float eps; };

constexpr int kWarps = 8;
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
__device__ __forceinline__ uint4 load_stream(const uint4 *p)
{
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}
struct row_view {
    const uint4 *w, *x; long long dw, dx; int n0;
    __device__ const uint4 *wat(int c) const { return w + c + (c < n0 ? 0 : dw); }
    __device__ uint4 xat(int c) const { return x[c + (c < n0 ? 0 : dx)]; }
};
__device__ __forceinline__ long long chunks_between(const uint4 *a, const uint4 *b)
{
    return ((long long)reinterpret_cast<uintptr_t>(b) - (long long)reinterpret_cast<uintptr_t>(a)) / (long long)sizeof(uint4);
}

// ---------------- V0: the landed kernel ----------------
template <bool F32OUT, int SPLIT>
__global__ void __launch_bounds__(kWarps * 32) gemv_v0(gemv_job j)
{
    constexpr int kRows = kWarps / SPLIT;
    __shared__ float partial[kWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % SPLIT;
    const int groups = (j.rows + kRows - 1) / kRows;
    rk_allow_next();
    bool waited = false;
    for (int g = blockIdx.x; g < groups; g += gridDim.x) {
        const int r = g * kRows + warp / SPLIT, rr = r < j.rows ? r : j.rows - 1;
        const bool second = !j.sum && rr >= j.a.out;
        const int orow = second ? rr - j.a.out : rr, in0 = second ? j.b.in : j.a.in;
        row_view v;
        v.w = reinterpret_cast<const uint4 *>(static_cast<const __half *>(second ? j.b.w : j.a.w) + (size_t)orow * in0);
        v.x = static_cast<const uint4 *>(second ? j.b.x : j.a.x);
        v.n0 = in0 / 8;
        if (j.sum) {
            const uint4 *w1 = reinterpret_cast<const uint4 *>(static_cast<const __half *>(j.b.w) + (size_t)orow * j.b.in);
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
            if (c < chunks) wv[i] = load_stream(v.wat(first + c));
        }
        if (!waited) { rk_wait_previous(); waited = true; }
        float acc = 0.0f;
        for (int base = 0;;) {
#pragma unroll
            for (int i = 0; i < kBatch; i++) {
                const int c = base + lane + 32 * i;
                if (c < chunks) acc += dot8(wv[i], v.xat(first + c));
            }
            base += 32 * kBatch;
            if (base >= chunks) break;
#pragma unroll
            for (int i = 0; i < kBatch; i++) {
                const int c = base + lane + 32 * i;
                if (c < chunks) wv[i] = load_stream(v.wat(first + c));
            }
        }
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (SPLIT > 1) {
            if (lane == 0) partial[warp] = acc;
            __syncthreads();
            for (int k = 1; k < SPLIT; k++) acc += partial[warp - part + k];
            __syncthreads();
        }
        if (lane != 0 || part != 0 || r >= j.rows) continue;
        const __half *bias = static_cast<const __half *>(second ? j.b.bias : j.a.bias);
        if (bias) acc += __half2float(bias[orow]);
        if (j.sum && j.b.bias) acc += __half2float(static_cast<const __half *>(j.b.bias)[orow]);
        if (second ? j.b.gelu : j.a.gelu) acc = 0.5f * acc * (1.0f + erff(acc * 0.70710678118654752f));
        void *y = second ? j.b.y : j.a.y;
        if (F32OUT) static_cast<float *>(y)[orow] = acc;
        else static_cast<__half *>(y)[orow] = __float2half(acc);
    }
}

// ---------------- V1..: pipelined batches, optional x in shared memory, optional fusions ----------------
struct half8 { float v[8]; };
__device__ __forceinline__ half8 unpack(uint4 u)
{
    half8 r; const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) { float2 f = __half22float2(h[i]); r.v[2 * i] = f.x; r.v[2 * i + 1] = f.y; }
    return r;
}
__device__ __forceinline__ uint4 pack(const half8 &r)
{
    uint4 u; __half2 *h = reinterpret_cast<__half2 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2half2_rn(r.v[2 * i], r.v[2 * i + 1]);
    return u;
}
__device__ float block_sum(float v, float *shared)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < (int)blockDim.x / 32; w++) total += shared[w];
    return total;
}

struct view {
    const uint4 *w; long long dw; int n0; int first, chunks; int xoff; int orow; bool second; int r;
    __device__ const uint4 *wat(int c) const { return w + c + (c < n0 ? 0 : dw); }
};

template <int SPLIT>
__device__ __forceinline__ view make_view(const gemv_job &j, int g, int warp, int part, int per)
{
    constexpr int kRows = kWarps / SPLIT;
    view v;
    v.r = g * kRows + warp / SPLIT;
    const int rr = v.r < j.rows ? v.r : j.rows - 1;
    v.second = !j.sum && rr >= j.a.out;
    v.orow = v.second ? rr - j.a.out : rr;
    const int in0 = v.second ? j.b.in : j.a.in;
    v.w = reinterpret_cast<const uint4 *>(static_cast<const __half *>(v.second ? j.b.w : j.a.w) + (size_t)v.orow * in0);
    v.n0 = in0 / 8;
    if (j.sum) {
        const uint4 *w1 = reinterpret_cast<const uint4 *>(static_cast<const __half *>(j.b.w) + (size_t)v.orow * j.b.in);
        v.dw = chunks_between(v.w, w1) - v.n0;
    } else {
        v.dw = 0;
    }
    v.xoff = v.second ? j.a.in / 8 : 0;
    const int all = v.n0 + (j.sum ? j.b.in / 8 : 0);
    v.first = part * per < all ? part * per : all;
    v.chunks = all - v.first < per ? all - v.first : per;
    return v;
}

/* B chunks per lane per batch; a warp's work is its groups' batches in order, the next batch's
 * loads issued before the current one is multiplied. XS: x (both products' inputs, concatenated)
 * in shared memory. LN: x is LayerNorm of f.resid (pair: ln1 for A, ln2 for B). RES: resid += round(y). */
template <bool F32OUT, int SPLIT, int B, bool XS, int LN, bool RES, int MINB>
__global__ void __launch_bounds__(kWarps * 32, MINB) gemv_v1(gemv_job j, fuse_t f)
{
    extern __shared__ uint4 xs[];
    __shared__ float partial[kWarps];
    __shared__ float red[kWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % SPLIT;
    constexpr int kRows = kWarps / SPLIT;
    const int groups = (j.rows + kRows - 1) / kRows;
    const int all = (j.sum ? j.a.in + j.b.in : (j.a.in > j.b.in ? j.a.in : j.b.in)) / 8;
    const int per = (all + SPLIT - 1) / SPLIT, nb = (per + 32 * B - 1) / (32 * B);
    rk_allow_next();
    int g = blockIdx.x, k = 0;
    if (g >= groups) return;
    uint4 cur[B], nxt[B];
    {
        const view v = make_view<SPLIT>(j, g, warp, part, per);
#pragma unroll
        for (int i = 0; i < B; i++) { const int c = lane + 32 * i; if (c < v.chunks) cur[i] = load_stream(v.wat(v.first + c)); }
    }
    /* LN weights are weights: load before the wait */
    rk_wait_previous();
    const int xin = (j.a.in + (j.b.w ? j.b.in : 0)) / 8;
    if (LN) {
        const int nc = j.a.in / 8; /* = 320 chunks: 2 per thread at 256 threads */
        half8 xv[2];
        float s = 0.0f;
        const uint4 *xr = reinterpret_cast<const uint4 *>(f.resid);
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int c = threadIdx.x + i * 256;
            if (c < nc) { xv[i] = unpack(xr[c]);
#pragma unroll
                for (int q = 0; q < 8; q++) s += xv[i].v[q]; }
        }
        const float mean = block_sum(s, red) / j.a.in;
        float q2 = 0.0f;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int c = threadIdx.x + i * 256;
            if (c < nc)
#pragma unroll
                for (int q = 0; q < 8; q++) q2 += (xv[i].v[q] - mean) * (xv[i].v[q] - mean);
        }
        const float rstd = rsqrtf(block_sum(q2, red) / j.a.in + f.eps);
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int c = threadIdx.x + i * 256;
            if (c < nc) {
                const half8 w1 = unpack(reinterpret_cast<const uint4 *>(f.w1)[c]), b1 = unpack(reinterpret_cast<const uint4 *>(f.b1)[c]);
                const half8 w2 = unpack(reinterpret_cast<const uint4 *>(f.w2)[c]), b2 = unpack(reinterpret_cast<const uint4 *>(f.b2)[c]);
                half8 o1, o2;
#pragma unroll
                for (int q = 0; q < 8; q++) {
                    o1.v[q] = (xv[i].v[q] - mean) * rstd * w1.v[q] + b1.v[q];
                    o2.v[q] = (xv[i].v[q] - mean) * rstd * w2.v[q] + b2.v[q];
                }
                xs[c] = pack(o1);
                xs[nc + c] = pack(o2);
            }
        }
        __syncthreads();
    } else if (XS) {
        const uint4 *xa = static_cast<const uint4 *>(j.a.x), *xb = static_cast<const uint4 *>(j.b.x);
        const int na = j.a.in / 8;
        for (int c = threadIdx.x; c < xin; c += blockDim.x) xs[c] = c < na ? xa[c] : xb[c - na];
        __syncthreads();
    }
    float acc = 0.0f;
    for (;;) {
        /* the batch after this one, its loads issued before this one is multiplied */
        int gn = g, kn = k + 1;
        if (kn >= nb) { gn = g + gridDim.x; kn = 0; }
        const bool more = gn < groups;
        if (more) {
            const view vn = make_view<SPLIT>(j, gn, warp, part, per);
#pragma unroll
            for (int i = 0; i < B; i++) { const int c = kn * 32 * B + lane + 32 * i; if (c < vn.chunks) nxt[i] = load_stream(vn.wat(vn.first + c)); }
        }
        const view v = make_view<SPLIT>(j, g, warp, part, per);
#pragma unroll
        for (int i = 0; i < B; i++) {
            const int c = k * 32 * B + lane + 32 * i;
            if (c < v.chunks) {
                uint4 xv;
                if (XS || LN) xv = xs[v.xoff + v.first + c];
                else {
                    const int cc = v.first + c;
                    const uint4 *x = static_cast<const uint4 *>(v.second ? j.b.x : j.a.x);
                    xv = (j.sum && cc >= v.n0) ? static_cast<const uint4 *>(j.b.x)[cc - v.n0] : x[cc];
                }
                acc += dot8(cur[i], xv);
            }
        }
        if (k == nb - 1) {
            for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (SPLIT > 1) {
                if (lane == 0) partial[warp] = acc;
                __syncthreads();
                for (int q = 1; q < SPLIT; q++) acc += partial[warp - part + q];
                __syncthreads();
            }
            if (lane == 0 && part == 0 && v.r < j.rows) {
                const __half *bias = static_cast<const __half *>(v.second ? j.b.bias : j.a.bias);
                if (bias) acc += __half2float(bias[v.orow]);
                if (j.sum && j.b.bias) acc += __half2float(static_cast<const __half *>(j.b.bias)[v.orow]);
                if (v.second ? j.b.gelu : j.a.gelu) acc = 0.5f * acc * (1.0f + erff(acc * 0.70710678118654752f));
                void *y = v.second ? j.b.y : j.a.y;
                if (F32OUT) static_cast<float *>(y)[v.orow] = acc;
                else {
                    const __half h = __float2half(acc);
                    static_cast<__half *>(y)[v.orow] = h;
                    if (RES) f.resid[v.orow] = __float2half(__half2float(h) + __half2float(f.resid[v.orow]));
                }
            }
            acc = 0.0f;
        }
        if (!more) break;
        g = gn; k = kn;
#pragma unroll
        for (int i = 0; i < B; i++) cur[i] = nxt[i];
    }
}

// ---------------- add + LayerNorm (the landed kernel, 2 chunks a thread) ----------------
__global__ void add_layernorm_kernel(__half *x, const __half *a, __half *y1, const __half *w1, const __half *b1,
                                     __half *y2, const __half *w2, const __half *b2, int dim, float eps)
{
    __shared__ float shared[8];
    uint4 *xr = reinterpret_cast<uint4 *>(x);
    const int nc = dim / 8, stride = blockDim.x;
    const int mine = threadIdx.x < nc ? (nc - 1 - threadIdx.x) / stride + 1 : 0;
    rk_allow_next();
    uint4 pw1[2], pb1[2], pw2[2], pb2[2];
    for (int i = 0; i < 2; i++) if (i < mine) { const int c = threadIdx.x + i * stride;
        pw1[i] = reinterpret_cast<const uint4 *>(w1)[c]; pb1[i] = reinterpret_cast<const uint4 *>(b1)[c];
        pw2[i] = reinterpret_cast<const uint4 *>(w2)[c]; pb2[i] = reinterpret_cast<const uint4 *>(b2)[c]; }
    rk_wait_previous();
    half8 v[2];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (i >= mine) break;
        const int c = threadIdx.x + i * stride;
        v[i] = unpack(xr[c]);
        const half8 av = unpack(reinterpret_cast<const uint4 *>(a)[c]);
#pragma unroll
        for (int k = 0; k < 8; k++) v[i].v[k] = av.v[k] + v[i].v[k];
        const uint4 stored = pack(v[i]);
        xr[c] = stored;
        v[i] = unpack(stored);
#pragma unroll
        for (int k = 0; k < 8; k++) s += v[i].v[k];
    }
    const float mean = block_sum(s, shared) / dim;
    float q = 0.0f;
#pragma unroll
    for (int i = 0; i < 2; i++) { if (i >= mine) break;
#pragma unroll
        for (int k = 0; k < 8; k++) q += (v[i].v[k] - mean) * (v[i].v[k] - mean); }
    const float rstd = rsqrtf(block_sum(q, shared) / dim + eps);
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (i >= mine) break;
        const int c = threadIdx.x + i * stride;
        const half8 a1 = unpack(pw1[i]), c1 = unpack(pb1[i]), a2 = unpack(pw2[i]), c2 = unpack(pb2[i]);
        half8 o1, o2;
#pragma unroll
        for (int k = 0; k < 8; k++) { o1.v[k] = (v[i].v[k] - mean) * rstd * a1.v[k] + c1.v[k]; o2.v[k] = (v[i].v[k] - mean) * rstd * a2.v[k] + c2.v[k]; }
        reinterpret_cast<uint4 *>(y1)[c] = pack(o1);
        reinterpret_cast<uint4 *>(y2)[c] = pack(o2);
    }
}

__global__ void fill_kernel(__half *p, size_t n, uint32_t seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed; h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        p[i] = __float2half(((h & 0xffff) / 65536.0f - 0.5f) * scale);
    }
}

// ---------------- host ----------------
static int g_sms;
template <typename K> static int resident(K kernel, size_t smem)
{
    int per = 0; CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, kernel, kWarps * 32, smem));
    return (per > 0 ? per : 1) * g_sms;
}
template <typename K> static int grid_for(K kernel, size_t smem, int groups)
{
    const int wave = resident(kernel, smem);
    const int rounds = (groups + wave - 1) / wave;
    return (groups + rounds - 1) / rounds;
}

struct Model {
    int D = 2560, F = 10240, V = 50304, L = 32;
    __half *w; size_t per_layer;
    __half *qkv_w(int l) { return w + l * per_layer; }
    __half *fc1_w(int l) { return qkv_w(l) + (size_t)3 * D * D; }
    __half *dense_w(int l) { return fc1_w(l) + (size_t)F * D; }
    __half *fc2_w(int l) { return dense_w(l) + (size_t)D * D; }
    __half *bias, *lnw, *lnb, *unembed;
    __half *resid, *h, *h2, *qkv, *mlp_h, *att, *mlp_out; float *logits;
};

typedef void (*layer_fn)(cudaStream_t, Model &, int);

static float time_chain(Model &m, cudaStream_t s, layer_fn fn, int layers, int reps)
{
    cudaGraph_t graph; cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int l = 0; l < layers; l++) fn(s, m, l);
    CK(cudaStreamEndCapture(s, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    cudaEvent_t a, b; CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int r = 0; r < reps + 3; r++) {
        CK(cudaEventRecord(a, s)); CK(cudaGraphLaunch(exec, s)); CK(cudaEventRecord(b, s)); CK(cudaEventSynchronize(b));
        float ms; CK(cudaEventElapsedTime(&ms, a, b)); if (r >= 3) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    CK(cudaGraphExecDestroy(exec)); CK(cudaGraphDestroy(graph));
    return t[t.size() / 2] * 1000.0f / layers; /* us per layer */
}

static gemv_job pair_job(Model &m, int l)
{
    gemv_job j{};
    j.a = {m.qkv, m.qkv_w(l), m.h, m.bias, m.D, 3 * m.D, 0};
    j.b = {m.mlp_h, m.fc1_w(l), m.h2, m.bias, m.D, m.F, 1};
    j.rows = 3 * m.D + m.F; j.sum = 0; return j;
}
static gemv_job sum_job(Model &m, int l)
{
    gemv_job j{};
    j.a = {m.mlp_out, m.dense_w(l), m.att, m.bias, m.D, m.D, 0};
    j.b = {nullptr, m.fc2_w(l), m.mlp_h, m.bias, m.F, m.D, 0};
    j.rows = m.D; j.sum = 1; return j;
}
static gemv_job logits_job(Model &m)
{
    gemv_job j{};
    j.a = {m.logits, m.unembed, m.h, nullptr, m.D, m.V, 0};
    j.rows = m.V; return j;
}

template <bool F32OUT, int SPLIT> static void run_v0(cudaStream_t s, const gemv_job &j)
{
    const int groups = (j.rows + kWarps / SPLIT - 1) / (kWarps / SPLIT);
    launch_dependent(gemv_v0<F32OUT, SPLIT>, dim3(grid_for(gemv_v0<F32OUT, SPLIT>, 0, groups)), dim3(256), 0, s, j);
}
template <bool F32OUT, int SPLIT, int B, bool XS, int LN, bool RES, int MINB>
static void run_v1(cudaStream_t s, const gemv_job &j, fuse_t f = {})
{
    auto k = gemv_v1<F32OUT, SPLIT, B, XS, LN, RES, MINB>;
    const size_t smem = (XS || LN) ? (size_t)(j.a.in + (j.b.w ? j.b.in : 0)) * 2 : 0;
    if (smem > 48 * 1024) CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const int groups = (j.rows + kWarps / SPLIT - 1) / (kWarps / SPLIT);
    launch_dependent(k, dim3(grid_for(k, smem, groups)), dim3(256), smem, s, j, f);
}
static void run_ln(cudaStream_t s, Model &m)
{
    launch_dependent(add_layernorm_kernel, dim3(1), dim3(256), 0, s, m.resid, m.mlp_out, m.h, m.lnw, m.lnb, m.h2, m.lnw, m.lnb, m.D, 1e-5f);
}
static fuse_t fuse_of(Model &m) { return fuse_t{m.resid, m.lnw, m.lnb, m.lnw, m.lnb, 1e-5f}; }

/* ---- layers of each experiment ---- */
#define PAIR_V0(s, m, l) run_v0<false, 2>(s, pair_job(m, l))
#define SUM_V0(s, m, l) run_v0<false, 8>(s, sum_job(m, l))
static void L_pair_v0(cudaStream_t s, Model &m, int l) { PAIR_V0(s, m, l); }
static void L_sum_v0(cudaStream_t s, Model &m, int l) { SUM_V0(s, m, l); }
static void L_chain_v0(cudaStream_t s, Model &m, int l) { PAIR_V0(s, m, l); SUM_V0(s, m, l); run_ln(s, m); }
static void L_logits_v0(cudaStream_t s, Model &m, int) { run_v0<true, 1>(s, logits_job(m)); }

#define VAR(NAME, SP_P, B_P, SP_S, B_S, XS, MINB)                                                              \
    static void L_pair_##NAME(cudaStream_t s, Model &m, int l) { run_v1<false, SP_P, B_P, XS, 0, false, MINB>(s, pair_job(m, l)); } \
    static void L_sum_##NAME(cudaStream_t s, Model &m, int l) { run_v1<false, SP_S, B_S, XS, 0, false, MINB>(s, sum_job(m, l)); }   \
    static void L_chain_##NAME(cudaStream_t s, Model &m, int l) { L_pair_##NAME(s, m, l); L_sum_##NAME(s, m, l); run_ln(s, m); }   \
    static void L_fused_##NAME(cudaStream_t s, Model &m, int l) { run_v1<false, SP_P, B_P, true, 1, false, MINB>(s, pair_job(m, l), fuse_of(m)); \
        run_v1<false, SP_S, B_S, XS, 0, true, MINB>(s, sum_job(m, l), fuse_of(m)); }

VAR(p2s8b57, 2, 5, 8, 7, false, 1)
VAR(p2s8b57x, 2, 5, 8, 7, true, 1)
VAR(p2s8b57x4, 2, 5, 8, 7, true, 4)
VAR(p2s8b57x3, 2, 5, 8, 7, true, 3)
VAR(p2s8b44x4, 2, 4, 8, 4, true, 4)
VAR(p1s4b55x, 1, 5, 4, 5, true, 1)
VAR(p2s8b44x, 2, 4, 8, 4, true, 1)
VAR(p4s8b33x, 4, 3, 8, 3, true, 1)
VAR(p2s8b88x, 2, 8, 8, 8, true, 1)
VAR(p2s8b33x, 2, 3, 8, 3, true, 1)

static void L_logits_b5x(cudaStream_t s, Model &m, int) { run_v1<true, 2, 5, true, 0, false, 1>(s, logits_job(m)); }
static void L_logits_b10x(cudaStream_t s, Model &m, int) { run_v1<true, 1, 5, true, 0, false, 1>(s, logits_job(m)); }
static void L_logits_b4(cudaStream_t s, Model &m, int) { run_v1<true, 1, 4, false, 0, false, 1>(s, logits_job(m)); }

/* correctness: every variant's outputs against V0's */
static double max_diff(const __half *a, const __half *b, int n)
{
    std::vector<__half> x(n), y(n);
    CK(cudaMemcpy(x.data(), a, n * 2, cudaMemcpyDeviceToHost)); CK(cudaMemcpy(y.data(), b, n * 2, cudaMemcpyDeviceToHost));
    double d = 0; for (int i = 0; i < n; i++) d = fmax(d, fabs((double)__half2float(x[i]) - (double)__half2float(y[i])));
    return d;
}

int main()
{
    int dev = 0; CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, dev));
    cudaDeviceProp prop; CK(cudaGetDeviceProperties(&prop, dev));
    printf("device %s, %d SMs\n", prop.name, g_sms);
    Model m;
    m.per_layer = (size_t)3 * m.D * m.D + (size_t)m.F * m.D + (size_t)m.D * m.D + (size_t)m.D * m.F;
    CK(cudaMalloc(&m.w, m.per_layer * m.L * 2));
    CK(cudaMalloc(&m.unembed, (size_t)m.V * m.D * 2));
    CK(cudaMalloc(&m.bias, 65536 * 2)); CK(cudaMalloc(&m.lnw, 65536 * 2)); CK(cudaMalloc(&m.lnb, 65536 * 2));
    CK(cudaMalloc(&m.resid, 65536 * 2)); CK(cudaMalloc(&m.h, 65536 * 2)); CK(cudaMalloc(&m.h2, 65536 * 2));
    CK(cudaMalloc(&m.qkv, 65536 * 2)); CK(cudaMalloc(&m.mlp_h, 65536 * 2)); CK(cudaMalloc(&m.att, 65536 * 2));
    CK(cudaMalloc(&m.mlp_out, 65536 * 2)); CK(cudaMalloc(&m.logits, 65536 * 4));
    fill_kernel<<<1024, 256>>>(m.w, m.per_layer * m.L, 1, 0.05f);
    fill_kernel<<<1024, 256>>>(m.unembed, (size_t)m.V * m.D, 2, 0.05f);
    fill_kernel<<<64, 256>>>(m.bias, 65536, 3, 0.1f);
    fill_kernel<<<64, 256>>>(m.lnw, 65536, 4, 2.0f);
    fill_kernel<<<64, 256>>>(m.lnb, 65536, 5, 0.2f);
    fill_kernel<<<64, 256>>>(m.resid, 65536, 6, 2.0f);
    fill_kernel<<<64, 256>>>(m.h, 65536, 7, 1.0f); fill_kernel<<<64, 256>>>(m.h2, 65536, 8, 1.0f);
    fill_kernel<<<64, 256>>>(m.att, 65536, 9, 1.0f); fill_kernel<<<64, 256>>>(m.mlp_h, 65536, 10, 1.0f);
    CK(cudaDeviceSynchronize());
    cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    /* copy bandwidth: 1 GiB each way */
    { void *a, *b; size_t n = (size_t)1 << 30; CK(cudaMalloc(&a, n)); CK(cudaMalloc(&b, n));
      cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1); float best = 1e9;
      for (int r = 0; r < 6; r++) { cudaEventRecord(e0, s); cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s); cudaEventRecord(e1, s); cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); if (r) best = fmin(best, ms); }
      printf("copy bandwidth %.3f TB/s (read+write)\n", 2.0 * n / (best * 1e-3) / 1e12); cudaFree(a); cudaFree(b); }

    /* correctness against V0 */
    {
        __half *ref; CK(cudaMalloc(&ref, 65536 * 2 * 3));
        gemv_job pj = pair_job(m, 3), sj = sum_job(m, 3);
        run_v0<false, 2>(s, pj); CK(cudaMemcpyAsync(ref, m.qkv, 3 * m.D * 2, cudaMemcpyDeviceToDevice, s));
        CK(cudaMemcpyAsync(ref + 8192, m.mlp_h, m.F * 2, cudaMemcpyDeviceToDevice, s));
        run_v0<false, 8>(s, sj); CK(cudaMemcpyAsync(ref + 20480 + 8192, m.mlp_out, m.D * 2, cudaMemcpyDeviceToDevice, s));
        CK(cudaStreamSynchronize(s));
        struct { const char *n; layer_fn p, q; } v[] = {
            {"p2s8b57", L_pair_p2s8b57, L_sum_p2s8b57}, {"p2s8b57x", L_pair_p2s8b57x, L_sum_p2s8b57x},
            {"p1s4b55x", L_pair_p1s4b55x, L_sum_p1s4b55x}, {"p4s8b33x", L_pair_p4s8b33x, L_sum_p4s8b33x},
            {"p2s8b88x", L_pair_p2s8b88x, L_sum_p2s8b88x}};
        for (auto &e : v) {
            CK(cudaMemsetAsync(m.qkv, 0, 65536 * 2, s)); CK(cudaMemsetAsync(m.mlp_out, 0, 65536 * 2, s));
            e.p(s, m, 3); e.q(s, m, 3); CK(cudaStreamSynchronize(s));
            /* the sum reads mlp_h, which the pair rewrote: compare the sum against V0 on the same input */
            printf("check %-10s qkv %.2e fc1 %.2e", e.n, max_diff(ref, m.qkv, 3 * m.D), max_diff(ref + 8192, m.mlp_h, m.F));
            run_v0<false, 8>(s, sj); CK(cudaMemcpyAsync(ref + 40000, m.mlp_out, m.D * 2, cudaMemcpyDeviceToDevice, s));
            e.q(s, m, 3); CK(cudaStreamSynchronize(s));
            printf(" sum %.2e\n", max_diff(ref + 40000, m.mlp_out, m.D));
        }
        /* fused LN: pair on LN(resid) against add_layernorm (with mlp_out = 0) then pair */
        CK(cudaMemsetAsync(m.mlp_out, 0, 65536 * 2, s));
        run_ln(s, m); run_v0<false, 2>(s, pj); CK(cudaMemcpyAsync(ref, m.qkv, 3 * m.D * 2, cudaMemcpyDeviceToDevice, s));
        CK(cudaMemcpyAsync(ref + 8192, m.mlp_h, m.F * 2, cudaMemcpyDeviceToDevice, s));
        CK(cudaMemsetAsync(m.qkv, 0, 65536 * 2, s));
        run_v1<false, 2, 5, true, 1, false, 1>(s, pj, fuse_of(m)); CK(cudaStreamSynchronize(s));
        printf("check LN-fused pair qkv %.2e fc1 %.2e\n", max_diff(ref, m.qkv, 3 * m.D), max_diff(ref + 8192, m.mlp_h, m.F));
        /* residual: resid + round(sum) */
        CK(cudaMemcpyAsync(ref + 50000, m.resid, m.D * 2, cudaMemcpyDeviceToDevice, s));
        run_v0<false, 8>(s, sj); run_ln(s, m); /* resid += mlp_out */
        CK(cudaMemcpyAsync(ref + 55000, m.resid, m.D * 2, cudaMemcpyDeviceToDevice, s));
        CK(cudaMemcpyAsync(m.resid, ref + 50000, m.D * 2, cudaMemcpyDeviceToDevice, s));
        run_v1<false, 8, 7, true, 0, true, 1>(s, sj, fuse_of(m)); CK(cudaStreamSynchronize(s));
        printf("check residual sum %.2e\n", max_diff(ref + 55000, m.resid, m.D));
        fill_kernel<<<64, 256>>>(m.resid, 65536, 6, 2.0f); CK(cudaDeviceSynchronize());
    }

    const double pairMB = (double)(3 * m.D + m.F) * m.D * 2 / 1e6, sumMB = (double)(m.D + m.F) * m.D * 2 / 1e6;
    const double logMB = (double)m.V * m.D * 2 / 1e6;
    struct { const char *n; layer_fn f; double mb; int layers; } runs[] = {
        {"pair v0", L_pair_v0, pairMB, 32}, {"sum v0", L_sum_v0, sumMB, 32}, {"chain v0 (+LN)", L_chain_v0, pairMB + sumMB, 32},
        {"logits v0", L_logits_v0, logMB, 1},
#define R(NAME) {"pair " #NAME, L_pair_##NAME, pairMB, 32}, {"sum " #NAME, L_sum_##NAME, sumMB, 32}, \
    {"chain " #NAME " (+LN)", L_chain_##NAME, pairMB + sumMB, 32}, {"fused " #NAME, L_fused_##NAME, pairMB + sumMB, 32}
        R(p2s8b57), R(p2s8b57x), R(p2s8b57x4), R(p2s8b57x3), R(p2s8b44x4), R(p1s4b55x), R(p2s8b44x), R(p4s8b33x), R(p2s8b88x), R(p2s8b33x),
        {"logits b5x s2", L_logits_b5x, logMB, 1}, {"logits b5x s1", L_logits_b10x, logMB, 1}, {"logits b4 s1", L_logits_b4, logMB, 1},
    };
    for (int round = 0; round < 2; round++)
        for (auto &r : runs) {
            const float us = time_chain(m, s, r.f, r.layers, r.layers == 1 ? 200 : 30);
            printf("round %d %-24s %8.2f us/layer %6.3f TB/s\n", round, r.n, us, r.mb / us);
        }
    return 0;
}
