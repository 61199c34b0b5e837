#include <cuda_fp16.h>
#include <math.h>

#include "erank.h"

enum { THREADS = 256, MAX_DIM = 256 };

/* One block per row: the query in shared memory, each thread a strided set
 * of keys; scores in fp32 as the forward pass has them, softmax in double. */
__global__ void attention_matrix_kernel(double *a, const __half *q, const __half *k, int n, int hd,
                                        float scale)
{
    __shared__ float qs[MAX_DIM];
    __shared__ double red[THREADS / 32];
    const int i = blockIdx.x, t = threadIdx.x;
    double *row = a + (size_t)i * n;
    for (int d = t; d < hd; d += THREADS)
        qs[d] = __half2float(q[(size_t)i * hd + d]);
    __syncthreads();

    double mx = -INFINITY;
    for (int j = t; j <= i; j += THREADS) {
        const __half *kj = k + (size_t)j * hd;
        float s = 0.f;
        for (int d = 0; d < hd; d++)
            s += qs[d] * __half2float(kj[d]);
        row[j] = (double)(s * scale);
        mx = fmax(mx, row[j]);
    }
    for (int o = 16; o > 0; o >>= 1)
        mx = fmax(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (t % 32 == 0)
        red[t / 32] = mx;
    __syncthreads();
    mx = red[0];
    for (int w = 1; w < THREADS / 32; w++)
        mx = fmax(mx, red[w]);
    __syncthreads();

    double sum = 0;
    for (int j = t; j <= i; j += THREADS) {
        row[j] = exp(row[j] - mx);
        sum += row[j];
    }
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (t % 32 == 0)
        red[t / 32] = sum;
    __syncthreads();
    sum = 0;
    for (int w = 0; w < THREADS / 32; w++)
        sum += red[w];
    const double inv = 1.0 / sum;
    for (int j = t; j < n; j += THREADS)
        row[j] = j <= i ? row[j] * inv : 0.0;
}

void rk_k_attention_matrix(cudaStream_t s, double *a, const void *q, const void *k, int n,
                           int head_dim)
{
    attention_matrix_kernel<<<n, THREADS, 0, s>>>(a, (const __half *)q, (const __half *)k, n,
                                                   head_dim, 1.0f / sqrtf((float)head_dim));
}
