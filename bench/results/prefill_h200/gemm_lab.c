/* Lab: cuBLASLt's first heuristic algorithm against the fastest of its top 16, for the 2.8B
 * shape's prefill GEMMs (the layouts of targets/cuda/cuda_ops.c: y[out, n] = W^T x, fp16 in,
 * fp32 compute, fp16 out, bias epilogue). Prints per shape the two times and the layer sums.
 * With --pair, also QKV and fc1 as one GEMM over both weights (17920 outputs) from one input,
 * outside the layer sums (gemm_pair.txt); the model's two read two LayerNorms of the same x.
 * With --sum, weights and inputs are random (constant ones draw less power and run faster)
 * and dense and fc2 also run as one GEMM over their inputs side by side (12800 per row), as a
 * layout with att and fc1's output in one row and the two weights in one row would allow. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x) do { if ((x) != 0) { printf("fail %s line %d\n", #x, __LINE__); exit(1); } } while (0)

/* COUNT fp16 values of random sign and mantissa and magnitudes from 2^-8 to 2^-4 (the bits
 * built by hand: no half type in C), from a xorshift stream seeded with SEED, copied to device
 * memory DST. */
static void fill_random(void *dst, size_t count, uint64_t seed)
{
    uint16_t *h = malloc(count * sizeof *h);
    uint64_t st = 0x9E3779B97F4A7C15ull * seed;
    for (size_t i = 0; i < count; i++) {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        /* sign, exponent 7..10 (2^-8 .. 2^-5), a random mantissa */
        h[i] = (uint16_t)(((st >> 63) << 15) | ((7 + (st >> 40) % 4) << 10) | (st & 0x3ff));
    }
    CK(cudaMemcpy(dst, h, count * sizeof *h, cudaMemcpyHostToDevice));
    free(h);
}

int main(int argc, char **argv)
{
    const int D = 2560, F = 10240;
    const int shapes[6][2] = {{3 * D, D}, {D, D}, {F, D}, {D, F}, {3 * D + F, D}, {D, D + F}};
    const char *names[6] = {"qkv", "dense", "fc1", "fc2", "qkv+fc1", "dense+fc2"};
    const int pair = argc > 1 && strcmp(argv[1], "--pair") == 0;
    const int sum = argc > 1 && strcmp(argv[1], "--sum") == 0;
    const int n_shapes = pair || sum ? 5 : 4, O = 3 * D + F;
    const int rows[] = {512, 1920};
    cublasLtHandle_t lt;
    CK(cublasLtCreate(&lt));
    size_t ws = 32u << 20;
    void *w, *x, *y, *bias, *work;
    CK(cudaMalloc(&w, (size_t)O * D * 2));
    CK(cudaMalloc(&x, (size_t)2048 * (D + F) * 2));
    CK(cudaMalloc(&y, (size_t)2048 * O * 2));
    CK(cudaMalloc(&bias, (size_t)O * 2));
    CK(cudaMalloc(&work, ws));
    cudaMemset(w, 0x11, (size_t)O * D * 2);
    cudaMemset(x, 0x11, (size_t)2048 * (D + F) * 2);
    if (sum) {
        fill_random(w, (size_t)O * D, 1);
        fill_random(x, (size_t)2048 * (D + F), 2);
    }
    cudaMemset(bias, 0, (size_t)O * 2);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int ri = 0; ri < 2; ri++) {
        double first_sum = 0, best_sum = 0;
        for (int si = 0; si < n_shapes; si++) {
            const int s = sum && si == 4 ? 5 : si;
            const int m = shapes[s][0], n = rows[ri], k = shapes[s][1];
            cublasLtMatmulDesc_t desc;
            cublasLtMatrixLayout_t a, b, c;
            cublasLtMatmulPreference_t pref;
            const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
            cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
            CK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
            CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
            CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
            CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
            CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
            CK(cublasLtMatrixLayoutCreate(&a, CUDA_R_16F, k, m, k));
            CK(cublasLtMatrixLayoutCreate(&b, CUDA_R_16F, k, n, k));
            CK(cublasLtMatrixLayoutCreate(&c, CUDA_R_16F, m, n, m));
            CK(cublasLtMatmulPreferenceCreate(&pref));
            CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
            cublasLtMatmulHeuristicResult_t res[16];
            int found = 0;
            CK(cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, c, c, pref, 16, res, &found));
            const float one = 1.0f, zero = 0.0f;
            double first = 0, best = 1e30;
            int best_i = -1;
            for (int i = 0; i < found; i++) {
                float ms = 0, t = 1e30f;
                for (int rep = 0; rep < 3; rep++) {
                    for (int wu = 0; wu < 2; wu++)
                        cublasLtMatmul(lt, desc, &one, w, a, x, b, &zero, y, c, y, c, &res[i].algo, work, ws, 0);
                    cudaEventRecord(e0, 0);
                    for (int it = 0; it < 20; it++)
                        cublasLtMatmul(lt, desc, &one, w, a, x, b, &zero, y, c, y, c, &res[i].algo, work, ws, 0);
                    cudaEventRecord(e1, 0);
                    cudaEventSynchronize(e1);
                    cudaEventElapsedTime(&ms, e0, e1);
                    if (ms < t)
                        t = ms;
                }
                if (cudaGetLastError() != cudaSuccess) continue;
                const double us = t * 1000.0 / 20;
                if (i == 0)
                    first = us;
                if (us < best) {
                    best = us;
                    best_i = i;
                }
            }
            printf("rows %d %-5s %5dx%5dx%5d: %d algos, first %.1f us, best %.1f us (#%d), %.1f%% less, %.0f TFLOP/s best\n",
                   n, names[s], m, n, k, found, first, best, best_i, 100.0 * (first - best) / first,
                   2.0 * m * n * k / best / 1e6);
            if (s < 4) {
                first_sum += first;
                best_sum += best;
            }
        }
        printf("rows %d layer: first %.1f us, best %.1f us; x32 layers: %.2f ms -> %.2f ms\n", rows[ri],
               first_sum, best_sum, first_sum * 32 / 1000, best_sum * 32 / 1000);
    }
    return 0;
}
