// Split lab: the landed one-row products (kernels/gemv.cu, included whole) at every split the
// rule may choose, on GPT-NeoX shapes from Pythia-160M to 12B; 16 layers of distinct weights,
// each chain a CUDA graph of programmatic launches; which split the rule picks.
// From the repository root: nvcc -O3 -arch=sm_90a -std=c++17 -Ikernels bench/results/gemv_split_h200/split_lab.cu -o split_lab && ./split_lab
#include "gemv.cu" /* the landed kernels, with -Ikernels */
#include <stdio.h>
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

/* the landed launch at a given split (-1: the rule's) */
static int launch_at(cudaStream_t st, const gemv_job &j, int split_log2)
{
    const int chunks = (j.sum ? j.a.in + j.b.in : (j.a.in > j.b.in ? j.a.in : j.b.in)) / 8;
    const size_t smem = (size_t)(j.a.in + (j.b.w ? j.b.in : 0)) * sizeof(__half);
    if (split_log2 < 0) { const launch_shape l = shape_for(j, false); launch_dependent(l.kernel, dim3(l.grid), dim3(kWarps * 32), l.smem, st, j); return l.split; }
    const int split = 1 << split_log2, per = (chunks + split - 1) / split;
    const gemv_fn kernel = kernel_for(false, split_log2, batch_kind(per));
    int per_sm = 0; cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, smem);
    const int wave = (per_sm > 0 ? per_sm : 1) * sms, groups = (j.rows + kWarps / split - 1) / (kWarps / split);
    const int rounds = (groups + wave - 1) / wave;
    launch_dependent(kernel, dim3((groups + rounds - 1) / rounds), dim3(kWarps * 32), smem, st, j);
    return split;
}

int main()
{
    rk_k_gemv_init();
    struct { const char *n; int D, F; } shapes[] = {{"160M", 768, 3072}, {"410M", 1024, 4096}, {"1.4B", 2048, 8192},
        {"2.8B", 2560, 10240}, {"6.9B", 4096, 16384}, {"12B", 5120, 20480}};
    cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    const int L = 16;
    __half *x; CK(cudaMalloc(&x, 1 << 20)); fill_kernel<<<64, 256>>>(x, 1 << 19, 7);
    __half *y; CK(cudaMalloc(&y, 1 << 22));
    for (auto &sh : shapes) {
        const size_t pair_w = (size_t)(3 * sh.D + sh.F) * sh.D, sum_w = (size_t)(sh.D + sh.F) * sh.D;
        __half *w; CK(cudaMalloc(&w, (pair_w + sum_w) * L * 2));
        fill_kernel<<<1024, 256>>>(w, (pair_w + sum_w) * L, 3);
        CK(cudaDeviceSynchronize());
        for (int kind = 0; kind < 2; kind++) {
            auto job = [&](int l) {
                gemv_job j{};
                __half *wl = w + (pair_w + sum_w) * l;
                if (kind == 0) { j.a = {y, wl, x, x, sh.D, 3 * sh.D, 0}; j.b = {y + 65536, wl + (size_t)3 * sh.D * sh.D, x + 32768, x, sh.D, sh.F, 1}; j.rows = 3 * sh.D + sh.F; }
                else { j.a = {y, wl + pair_w, x, x, sh.D, sh.D, 0}; j.b = {nullptr, wl + pair_w + (size_t)sh.D * sh.D, x + 32768, x, sh.F, sh.D, 0}; j.rows = sh.D; j.sum = 1; }
                return j;
            };
            const double mb = (kind == 0 ? pair_w : sum_w) * 2 / 1e6;
            printf("%-5s %-9s %7.1f MB:", sh.n, kind == 0 ? "QKV+fc1" : "dense+fc2", mb);
            int picked = 0;
            for (int sl = -1; sl < 4; sl++) {
                const int chunks = (kind == 0 ? sh.D : sh.D + sh.F) / 8;
                if (sl > 0 && chunks / (1 << sl) < kMinShare) break;
                cudaGraph_t g; cudaGraphExec_t e; int split = 0;
                CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
                for (int l = 0; l < L; l++) split = launch_at(s, job(l), sl);
                CK(cudaStreamEndCapture(s, &g)); CK(cudaGraphInstantiate(&e, g, 0));
                cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
                std::vector<float> t;
                for (int r = 0; r < 23; r++) { cudaEventRecord(a, s); cudaGraphLaunch(e, s); cudaEventRecord(b, s); cudaEventSynchronize(b); float ms; cudaEventElapsedTime(&ms, a, b); if (r >= 3) t.push_back(ms); }
                std::sort(t.begin(), t.end());
                const double us = t[t.size() / 2] * 1000 / L;
                if (sl < 0) picked = split; else printf("  %d warps %6.2f us %4.2f TB/s%s", split, us, mb / us, split == picked ? " (rule)" : "");
                cudaGraphExecDestroy(e); cudaGraphDestroy(g);
            }
            printf("\n");
        }
        CK(cudaFree(w));
    }
    CK(cudaGetLastError());
    return 0;
}
