// MMA lab: one-row products on tensor cores against the landed kernels (kernels/gemv.cu, included
// whole), for the energy a byte of weights costs. A warp takes 8 weight rows; each lane loads 16
// bytes of one row (lane / 4 picks the row, lane % 4 the chunk), which are the lane's A fragment
// of an m16n8k16 MMA: halves 0-1 and 4-5 as row slot g, 2-3 and 6-7 as slot g + 8. Lanes 0-3 give
// x's matching halves as B's column 0 and lanes 4-7 as column 1, so D[g][0] + D[g + 8][1] is row
// g's dot product, in lane 4g. One MMA replaces 32 lanes' 8 conversions and 8 FMAs each. S warps
// share a row group along the inputs (partials summed in shared memory), NB chunks in flight a
// lane. Shapes: the 2.8B step's 17920 x 2560 (QKV + fc1 rows) and 2560 x 12800 (dense + fc2
// inputs), 32 layers of distinct random weights, each chain one CUDA graph of programmatic
// launches. Prints every variant's time, its largest difference from the landed kernel's fp32
// output relative to the output's largest magnitude, then runs the landed chain and the chosen
// MMA chain for SECONDS each (argv[1], default 3) for nvidia-smi to sample, each bracketed by
// "start" and "end" lines stamped as nvidia-smi stamps its samples.
// From the repository root: nvcc -O3 -arch=sm_90a -std=c++17 -Ikernels
//   bench/results/gemv_mma_h200/mma_lab.cu -o mma_lab && ./mma_lab 3
#include "gemv.cu" /* the landed kernels, with -Ikernels */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <algorithm>
#include <vector>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); exit(1);} } while (0)

__global__ void fill_kernel(__half *p, size_t n, uint32_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed; h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        p[i] = __float2half(((h & 0xffff) / 65536.0f - 0.5f) * 0.05f);
    }
}

__device__ __forceinline__ void mma16816(float *c, const uint4 &a, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

template <int S, int NB>
__global__ void __launch_bounds__(256) mma_gemv(const __half *__restrict__ w, const __half *__restrict__ x, float *y, int rows, int K)
{
    extern __shared__ uint4 xs[];
    __shared__ float red[8][8];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int group = blockIdx.x * (8 / S) + warp / S, part = warp % S, row0 = group * 8;
    const int iters = K / 32, it0 = part * iters / S, it1 = (part + 1) * iters / S;
    const uint4 *wrow = reinterpret_cast<const uint4 *>(w + (size_t)(row0 + g) * K) + t;
    const bool live = row0 < rows;
    uint4 cur[NB], nxt[NB];
#pragma unroll
    for (int b = 0; b < NB; b++)
        if (live && it0 + b < it1) cur[b] = load_stream(wrow + (size_t)(it0 + b) * 4);
    rk_wait_previous();
    for (int i = threadIdx.x; i < K / 8; i += blockDim.x) xs[i] = reinterpret_cast<const uint4 *>(x)[i];
    __syncthreads();
    rk_allow_next();
    float c[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    for (int it = it0; live && it < it1; it += NB) {
#pragma unroll
        for (int b = 0; b < NB; b++)
            if (it + NB + b < it1) nxt[b] = load_stream(wrow + (size_t)(it + NB + b) * 4);
#pragma unroll
        for (int b = 0; b < NB; b++)
            if (it + b < it1) {
                uint32_t b0 = 0, b1 = 0;
                if (g < 2) {
                    const uint4 xv = xs[(it + b) * 4 + t];
                    b0 = g == 0 ? xv.x : xv.y;
                    b1 = g == 0 ? xv.z : xv.w;
                }
                mma16816(c[b & 1], cur[b], b0, b1);
            }
#pragma unroll
        for (int b = 0; b < NB; b++)
            cur[b] = nxt[b];
    }
    const float partial = (c[0][0] + c[0][3]) + (c[1][0] + c[1][3]);
    if (S == 1) {
        if (live && t == 0) y[row0 + g] = partial;
        return;
    }
    if (t == 0) red[warp][g] = partial;
    __syncthreads();
    if (live && part == 0 && t == 0) {
        float s = 0;
        for (int p = 0; p < S; p++) s += red[warp + p][g];
        y[row0 + g] = s;
    }
}

typedef void (*mma_fn)(const __half *, const __half *, float *, int, int);
struct variant { const char *name; mma_fn fn; int S, NB; };
static const variant variants[] = {
    {"S1 NB4", mma_gemv<1, 4>, 1, 4}, {"S1 NB8", mma_gemv<1, 8>, 1, 8},
    {"S2 NB4", mma_gemv<2, 4>, 2, 4}, {"S2 NB8", mma_gemv<2, 8>, 2, 8},
    {"S4 NB4", mma_gemv<4, 4>, 4, 4}, {"S4 NB8", mma_gemv<4, 8>, 4, 8},
    {"S8 NB4", mma_gemv<8, 4>, 8, 4}, {"S8 NB8", mma_gemv<8, 8>, 8, 8},
};

struct shape { const char *name; int rows, K; };
static const shape shapes[] = {{"17920x2560", 17920, 2560}, {"2560x12800", 2560, 12800}};
static const int L = 32;

static void launch_mma(cudaStream_t s, const variant &v, const __half *w, const __half *x, float *y, int rows, int K)
{
    const int groups = rows / 8, per_block = 8 / v.S;
    launch_dependent(v.fn, dim3((groups + per_block - 1) / per_block), dim3(256), (size_t)K * 2, s, w, x, y, rows, K);
}

static void launch_landed(cudaStream_t s, const __half *w, const __half *x, float *y, int rows, int K)
{
    rk_gemv_part p = {y, w, x, nullptr, K, rows, 0};
    rk_k_gemv(s, &p, 1);
}

/* One graph of 32 layers; VI[k] < 0: the landed kernel for shape k; SH < 0: both shapes a layer. */
static cudaGraphExec_t chain(cudaStream_t s, const int *vi, int sh, __half *const *w, const __half *x, float *y)
{
    cudaGraph_t g; cudaGraphExec_t e;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 2; k++) {
            if (sh >= 0 && k != sh) continue;
            const __half *wl = w[k] + (size_t)shapes[k].rows * shapes[k].K * l;
            if (vi[k] < 0) launch_landed(s, wl, x, y, shapes[k].rows, shapes[k].K);
            else launch_mma(s, variants[vi[k]], wl, x, y, shapes[k].rows, shapes[k].K);
        }
    CK(cudaStreamEndCapture(s, &g)); CK(cudaGraphInstantiate(&e, g, 0)); CK(cudaGraphDestroy(g));
    return e;
}

static double time_graph(cudaStream_t s, cudaGraphExec_t e)
{
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    std::vector<float> t;
    for (int r = 0; r < 23; r++) {
        cudaEventRecord(a, s); cudaGraphLaunch(e, s); cudaEventRecord(b, s); cudaEventSynchronize(b);
        float ms; cudaEventElapsedTime(&ms, a, b); if (r >= 3) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2] * 1e3 / L;
}

/* The wall clock as nvidia-smi's timestamps print it. */
static void stamp(char *buf, size_t n)
{
    struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm; localtime_r(&ts.tv_sec, &tm);
    char day[32]; strftime(day, sizeof day, "%Y/%m/%d %H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03ld", day, ts.tv_nsec / 1000000);
}

static void run_for(cudaStream_t s, cudaGraphExec_t e, double seconds, const char *what)
{
    char at[64]; stamp(at, sizeof at);
    printf("%s %s start\n", at, what); fflush(stdout);
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    cudaEventRecord(a, s);
    int n = 0; float ms = 0;
    while (ms < seconds * 1e3) {
        for (int i = 0; i < 32; i++, n++) cudaGraphLaunch(e, s);
        cudaEventRecord(b, s); cudaEventSynchronize(b); cudaEventElapsedTime(&ms, a, b);
    }
    stamp(at, sizeof at);
    printf("%s %s end: %d replays, %.2f us a layer\n", at, what, n, ms * 1e3 / n / L);
}

int main(int argc, char **argv)
{
    const double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    rk_k_gemv_init();
    for (const variant &v : variants)
        CK(cudaFuncSetAttribute(v.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, 12800 * 2));
    cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    __half *x; CK(cudaMalloc(&x, 1 << 16)); fill_kernel<<<64, 256>>>(x, 1 << 15, 7);
    float *y, *ref; CK(cudaMalloc(&y, 1 << 20)); CK(cudaMalloc(&ref, 1 << 20));
    __half *w[2];
    for (int k = 0; k < 2; k++) {
        const size_t n = (size_t)shapes[k].rows * shapes[k].K * L;
        CK(cudaMalloc(&w[k], n * 2)); fill_kernel<<<1024, 256>>>(w[k], n, 3 + k);
    }
    CK(cudaDeviceSynchronize());
    std::vector<float> want(17920), got(17920);
    int best[2] = {-1, -1};
    double best_us[2] = {1e9, 1e9};
    for (int k = 0; k < 2; k++) {
        const shape &sh = shapes[k];
        const double mb = (double)sh.rows * sh.K * 2 / 1e6;
        /* S does not wait for the legacy stream's copies, nor they for it. */
        launch_landed(s, w[k], x, ref, sh.rows, sh.K);
        CK(cudaStreamSynchronize(s));
        CK(cudaMemcpy(want.data(), ref, sh.rows * 4, cudaMemcpyDeviceToHost));
        float scale = 0; for (int r = 0; r < sh.rows; r++) scale = fmaxf(scale, fabsf(want[r]));
        const int landed[2] = {-1, -1};
        cudaGraphExec_t e = chain(s, landed, k, w, x, y);
        const double us0 = time_graph(s, e); cudaGraphExecDestroy(e);
        printf("%s %6.1f MB  landed   %7.2f us a layer %5.2f TB/s\n", sh.name, mb, us0, mb / us0);
        for (int vi = 0; vi < (int)(sizeof variants / sizeof variants[0]); vi++) {
            CK(cudaMemsetAsync(y, 0xff, sh.rows * 4, s));
            launch_mma(s, variants[vi], w[k], x, y, sh.rows, sh.K);
            CK(cudaStreamSynchronize(s));
            CK(cudaMemcpy(got.data(), y, sh.rows * 4, cudaMemcpyDeviceToHost));
            float diff = 0;
            for (int r = 0; r < sh.rows; r++) {
                const float d = fabsf(got[r] - want[r]);
                if (isnan(d)) { /* an output never written */
                    diff = INFINITY;
                    break;
                }
                diff = fmaxf(diff, d);
            }
            const int pick[2] = {vi, vi};
            e = chain(s, pick, k, w, x, y);
            const double us = time_graph(s, e); cudaGraphExecDestroy(e);
            printf("%s %6.1f MB  %-8s %7.2f us a layer %5.2f TB/s  max |diff| %.2e of max |y| %.3f\n", sh.name, mb,
                   variants[vi].name, us, mb / us, diff / scale, scale);
            if (diff / scale < 1e-3 && us < best_us[k]) { best_us[k] = us; best[k] = vi; }
        }
    }
    CK(cudaGetLastError());
    if (best[0] < 0 || best[1] < 0) {
        printf("no variant matched the landed kernel on %s\n", shapes[best[0] < 0 ? 0 : 1].name);
        return 1;
    }
    printf("chosen: %s for %s, %s for %s\n", variants[best[0]].name, shapes[0].name, variants[best[1]].name, shapes[1].name);
    /* Power phases: both shapes a layer, the landed kernel, then the MMA variants chosen. */
    const int landed[2] = {-1, -1};
    cudaGraphExec_t e0 = chain(s, landed, -1, w, x, y), e1 = chain(s, best, -1, w, x, y);
    run_for(s, e0, seconds, "landed");
    struct timespec pause = {1, 500000000}; nanosleep(&pause, NULL);
    run_for(s, e1, seconds, "mma");
    CK(cudaGetLastError());
    return 0;
}
