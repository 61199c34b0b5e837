// Power lab: the landed one-row products alone (kernels/gemv.cu, included whole), the 2.8B shape's
// QKV + fc1 pair and dense + fc2 sum for 32 layers of distinct random weights, at the split the
// rule picks, recorded as one CUDA graph of programmatic launches and replayed back to back for
// SECONDS (default 3), so that nvidia-smi can sample the board while only the products run.
// From the repository root: nvcc -O3 -arch=sm_90a -std=c++17 -Ikernels
//   bench/results/decode_host_h200/power_lab.cu -o power_lab && ./power_lab 3
#include "gemv.cu" /* the landed kernels, with -Ikernels */
#include <stdio.h>
#include <stdlib.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("CUDA %s at %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); exit(1);} } while (0)

__global__ void fill_kernel(__half *p, size_t n, uint32_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed; h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        p[i] = __float2half(((h & 0xffff) / 65536.0f - 0.5f) * 0.05f);
    }
}

int main(int argc, char **argv)
{
    const double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    rk_k_gemv_init();
    const int D = 2560, F = 10240, L = 32;
    cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    __half *x; CK(cudaMalloc(&x, 1 << 20)); fill_kernel<<<64, 256>>>(x, 1 << 19, 7);
    __half *y; CK(cudaMalloc(&y, 1 << 22));
    const size_t pair_w = (size_t)(3 * D + F) * D, sum_w = (size_t)(D + F) * D;
    __half *w; CK(cudaMalloc(&w, (pair_w + sum_w) * L * 2));
    fill_kernel<<<1024, 256>>>(w, (pair_w + sum_w) * L, 3);
    CK(cudaDeviceSynchronize());
    cudaGraph_t g; cudaGraphExec_t e;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int l = 0; l < L; l++) {
        __half *wl = w + (pair_w + sum_w) * l;
        gemv_job p{}, q{};
        p.a = {y, wl, x, x, D, 3 * D, 0}; p.b = {y + 65536, wl + (size_t)3 * D * D, x + 32768, x, D, F, 1}; p.rows = 3 * D + F;
        q.a = {y, wl + pair_w, x, x, D, D, 0}; q.b = {nullptr, wl + pair_w + (size_t)D * D, x + 32768, x, F, D, 0}; q.rows = D; q.sum = 1;
        for (const gemv_job *j : {&p, &q}) {
            const launch_shape ls = shape_for(*j, false);
            launch_dependent(ls.kernel, dim3(ls.grid), dim3(kWarps * 32), ls.smem, s, *j);
        }
    }
    CK(cudaStreamEndCapture(s, &g)); CK(cudaGraphInstantiate(&e, g, 0));
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    CK(cudaGraphLaunch(e, s)); CK(cudaStreamSynchronize(s));
    cudaEventRecord(a, s);
    int replays = 0;
    float ms = 0;
    while (ms < seconds * 1e3) {
        for (int i = 0; i < 64; i++, replays++)
            cudaGraphLaunch(e, s);
        cudaEventRecord(b, s); cudaEventSynchronize(b); cudaEventElapsedTime(&ms, a, b);
    }
    CK(cudaGetLastError());
    const double us = ms * 1e3 / replays / L, mb = (pair_w + sum_w) * 2 / 1e6;
    printf("%d replays of 32 layers' QKV + fc1 and dense + fc2 in %.0f ms: %.2f us a layer, %.2f TB/s\n",
           replays, ms, us, mb / us);
    return 0;
}
