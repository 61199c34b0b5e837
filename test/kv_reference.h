/* The quantized KV cache's arithmetic written out plainly, for the tests
 * that check core's quantizers against it (kv_quant.h states the rule). */
#ifndef RK_KV_REFERENCE_H
#define RK_KV_REFERENCE_H

#include <math.h>

#include "rk_test.h"
#include "safetensors.h"

/* X rounded to fp16 and back. */
static inline float rk_test_half(float x) { return rk_f16_to_f32(rk_f32_to_f16(x)); }

/* One group of N values X (already fp16) to its fp16 scale S and minimum
 * M and each value's code Q. */
static inline void rk_test_quantize_group(int bits, const float *x, int n, float *s, float *m,
                                          unsigned *q)
{
    const float qmax = (float)((1 << bits) - 1);
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++)
        lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
    *m = rk_test_half(lo);
    *s = rk_test_half(fmaxf(hi - *m, 0.0f) / qmax);
    for (int i = 0; i < n; i++) {
        const float c = *s > 0 ? rintf((x[i] - *m) / *s) : 0.0f;
        q[i] = c < 0 ? 0u : c > qmax ? (unsigned)qmax : (unsigned)c;
    }
}

/* Code I of packed BITS-bit codes, element 0 in the low bits of byte 0. */
static inline unsigned rk_test_code_at(const unsigned char *codes, int bits, int i)
{
    const int per = 8 / bits;
    return (codes[i / per] >> (bits * (i % per))) & ((1u << bits) - 1u);
}

#endif
