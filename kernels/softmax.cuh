/* A query's softmax probability of a row, from its unscaled score and the
 * statistics attention leaves (attention.h, STATS: the largest scaled
 * score in log2 units and the sum of 2^(that - max)): one expression for
 * rk_attention_mass_of_scores and the eviction that adds the mass itself
 * (kv_compress.h), so that both give the same bits; with it, the 2^x and
 * the scale every attention kernel uses. */
#ifndef RK_SOFTMAX_CUH
#define RK_SOFTMAX_CUH

#include <cuda_runtime.h>
#include <math.h>

constexpr float kLog2e = 1.4426950408889634f;

/* 2^x on the special-function unit; 2^-inf is exactly 0, which masking uses. */
__device__ __forceinline__ float exp2_approx(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* What scales an unscaled score q·k into log2 units. */
inline float scale_log2(int head_dim) { return kLog2e / sqrtf((float)head_dim); }

/* The probability of a row of unscaled score SCORE under statistics ML. */
__device__ __forceinline__ float softmax_prob(float score, float2 ml, float scale_log2)
{
    return exp2_approx(fmaf(score, scale_log2, -ml.x)) * (1.0f / ml.y);
}

#endif
