#include <cuda_fp16.h>

#include "elementwise.h"

namespace {

constexpr int kThreads = 256;

__global__ void embed_kernel(__half *x, const __half *table, const int *tokens, int dim)
{
    const __half *src = table + (size_t)tokens[blockIdx.x] * dim;
    __half *dst = x + (size_t)blockIdx.x * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        dst[j] = src[j];
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

/* Two passes over the row (mean, then squared deviations) keep the variance
 * accurate in fp32; the second read hits L1/L2. */
__global__ void layernorm_kernel(__half *y, const __half *x, const __half *w, const __half *b,
                                 int dim, float eps)
{
    __shared__ float shared[kThreads / 32];
    const __half *xr = x + (size_t)blockIdx.x * dim;
    __half *yr = y + (size_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        s += __half2float(xr[j]);
    const float mean = block_sum(s, shared) / dim;
    float v = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        float d = __half2float(xr[j]) - mean;
        v += d * d;
    }
    const float rstd = rsqrtf(block_sum(v, shared) / dim + eps);
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        yr[j] = __float2half((__half2float(xr[j]) - mean) * rstd * __half2float(w[j]) +
                             __half2float(b[j]));
}

/* One block per (token, head), one thread per dimension. */
__global__ void qkv_rotary_kernel(__half *q, __half *kc, __half *vc, const __half *qkv,
                                  const float *rope, const int *pos, int n, int heads,
                                  int head_dim, int rot, int cap)
{
    const int i = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
    if (j >= head_dim)
        return;
    const int p = *pos + i;
    const __half *src = qkv + ((size_t)i * heads + h) * 3 * head_dim;
    float qv = __half2float(src[j]), kv = __half2float(src[head_dim + j]);
    if (j < rot) {
        const int half = rot / 2, jj = j < half ? j : j - half;
        const float c = rope[(size_t)p * rot + 2 * jj], sn = rope[(size_t)p * rot + 2 * jj + 1];
        const int partner = j < half ? j + half : j - half;
        const float sign = j < half ? -1.0f : 1.0f;
        qv = qv * c + sign * __half2float(src[partner]) * sn;
        kv = kv * c + sign * __half2float(src[head_dim + partner]) * sn;
    }
    q[((size_t)h * n + i) * head_dim + j] = __float2half(qv);
    const size_t row = ((size_t)h * cap + p) * head_dim + j;
    kc[row] = __float2half(kv);
    vc[row] = src[2 * head_dim + j];
}

__global__ void residual_kernel(__half *x, const __half *a, const __half *b, size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = __half2float(x[i]) + __half2float(a[i]);
        if (b)
            v += __half2float(b[i]);
        x[i] = __float2half(v);
    }
}

__global__ void gelu_kernel(__half *x, size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = __half2float(x[i]);
        x[i] = __float2half(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
    }
}

unsigned grid_for(size_t count)
{
    size_t blocks = (count + kThreads - 1) / kThreads;
    return (unsigned)(blocks < 65535 ? (blocks ? blocks : 1) : 65535);
}

} // namespace

extern "C" {

void rk_k_embed(cudaStream_t s, void *x, const void *table, const int *tokens, int n, int dim)
{
    embed_kernel<<<n, kThreads, 0, s>>>((__half *)x, (const __half *)table, tokens, dim);
}

void rk_k_layernorm(cudaStream_t s, void *y, const void *x, const void *w, const void *b, int n,
                    int dim, float eps)
{
    layernorm_kernel<<<n, kThreads, 0, s>>>((__half *)y, (const __half *)x, (const __half *)w,
                                            (const __half *)b, dim, eps);
}

void rk_k_qkv_rotary(cudaStream_t s, void *q, void *k_cache, void *v_cache, const void *qkv,
                     const float *rope, const int *pos, int n, int heads, int head_dim,
                     int rot_dims, int cap)
{
    const int threads = (head_dim + 31) / 32 * 32;
    qkv_rotary_kernel<<<dim3(n, heads), threads, 0, s>>>(
        (__half *)q, (__half *)k_cache, (__half *)v_cache, (const __half *)qkv, rope, pos, n,
        heads, head_dim, rot_dims, cap);
}

void rk_k_residual(cudaStream_t s, void *x, const void *a, const void *b, size_t count)
{
    residual_kernel<<<grid_for(count), kThreads, 0, s>>>((__half *)x, (const __half *)a,
                                                        (const __half *)b, count);
}

void rk_k_gelu(cudaStream_t s, void *x, size_t count)
{
    gelu_kernel<<<grid_for(count), kThreads, 0, s>>>((__half *)x, count);
}

} // extern "C"
