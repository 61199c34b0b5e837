/* Device side of kv_rows.h: writing a row of a quantized format and reading
 * eight of its elements back. The arithmetic is core/kv_quant.c's, step for
 * step and rounded the same way (explicit _rn intrinsics, so the compiler
 * fuses nothing the C reference computes in two roundings), which is what
 * makes the codes the CPU target's for the same floats. */
#ifndef RK_KV_ROWS_CUH
#define RK_KV_ROWS_CUH

#include <cuda_fp16.h>
#include <stdint.h>

#include "kv_rows.h"

/* The largest head_dim a row is staged for in shared memory. */
constexpr int kKvMaxHeadDim = 256;

/* Element J (value X) of a q or k row SRC after rotary (cos, sin pairs at
 * RP) in fp32, in the reference's order and roundings: every kernel that
 * rotates (the appends, the decode attention that rotates its own rows)
 * gets the same bits. */
__device__ __forceinline__ float rotated_rn(float x, const __half *src, const float *rp, int j,
                                            int rot)
{
    if (j >= rot)
        return x;
    const int half = rot / 2, jj = j < half ? j : j - half;
    const float other = __half2float(src[j < half ? j + half : j - half]);
    const float a = __fmul_rn(x, rp[2 * jj]), b = __fmul_rn(other, rp[2 * jj + 1]);
    return j < half ? __fsub_rn(a, b) : __fadd_rn(a, b);
}

/* Rotary dims JJ and JJ + rot / 2 of one row, LO and HI, both rotated:
 * OUT's x and y are rotated_rn's results for the two, the same operations
 * and roundings, for a caller that owns the pair. */
__device__ __forceinline__ void rotated_pair_rn(float lo, float hi, const float *rp, int jj,
                                                float2 *out)
{
    const float c = rp[2 * jj], s = rp[2 * jj + 1];
    out->x = __fsub_rn(__fmul_rn(lo, c), __fmul_rn(hi, s));
    out->y = __fadd_rn(__fmul_rn(hi, c), __fmul_rn(lo, s));
}

__host__ __device__ constexpr size_t kv_row_bytes(int bits, int head_dim, int group)
{
    return bits == 16 ? (size_t)head_dim * 2
                      : (size_t)head_dim * bits / 8 + (size_t)(head_dim / group) * 4;
}

/* Elements 8C..8C+7 of a row of BITS-bit codes (8, 4 or 2) of HEAD_DIM
 * elements in groups of GROUP, as loaded: their codes and the (scale,
 * minimum) of the group of element 8C. Loading is apart from reading back
 * so that a warp can have all of its chunks' loads in flight before it
 * waits for any. Rows and their codes' offsets are 4-byte aligned for every
 * supported shape (kv_rows.h). The cache is read through the read-only
 * path: no kernel writes rows it reads. */
template <int BITS> struct KvChunk {
    uint32_t code[BITS == 8 ? 2 : 1];
    uint32_t meta;
};

/* The codes alone of chunk C of CODES (a KIVI key row, whose scales lie
 * apart from it, kv_rows.h); the chunk's meta is left 0. GLOBAL: through the
 * read-only path; otherwise plain loads, which shared memory (a tile's codes
 * staged there) needs. */
template <int BITS, bool GLOBAL = true>
__device__ __forceinline__ KvChunk<BITS> kv_chunk_load_codes(const unsigned char *codes, int c)
{
    const auto u32 = [](const unsigned char *p) {
        const unsigned *w = reinterpret_cast<const unsigned *>(p);
        return GLOBAL ? __ldg(w) : *w;
    };
    KvChunk<BITS> k;
    if constexpr (BITS == 8) {
        k.code[0] = u32(codes + c * 8);
        k.code[1] = u32(codes + c * 8 + 4);
    } else if constexpr (BITS == 4) {
        k.code[0] = u32(codes + c * 4);
    } else {
        const unsigned short *p = reinterpret_cast<const unsigned short *>(codes + c * 2);
        k.code[0] = GLOBAL ? __ldg(p) : *p;
    }
    k.meta = 0;
    return k;
}

template <int BITS, bool GLOBAL = true>
__device__ __forceinline__ KvChunk<BITS> kv_chunk_load(const unsigned char *row, int head_dim,
                                                       int group, int c)
{
    KvChunk<BITS> k = kv_chunk_load_codes<BITS, GLOBAL>(row, c);
    const unsigned *meta = reinterpret_cast<const unsigned *>(row + head_dim * BITS / 8) + c * 8 / group;
    k.meta = GLOBAL ? __ldg(meta) : *meta;
    return k;
}

/* A chunk of zeros (rows past the valid ones): codes 0 at scale 0 and
 * minimum 0. */
template <int BITS> __device__ __forceinline__ KvChunk<BITS> kv_chunk_zero()
{
    KvChunk<BITS> k = {};
    return k;
}

/* Element E's code of a chunk. */
template <int BITS> __device__ __forceinline__ unsigned kv_chunk_code(const KvChunk<BITS> &k, int e)
{
    if constexpr (BITS == 8)
        return (k.code[e / 4] >> (8 * (e % 4))) & 0xffu;
    else
        return (k.code[0] >> (BITS * e)) & ((1u << BITS) - 1u);
}

/* CODE read back under a group's (scale, minimum), as core/kv_quant.c
 * computes it: a product and a sum, each rounded. */
__device__ __forceinline__ float kv_code_value(unsigned code, float scale, float min)
{
    return __fadd_rn(__fmul_rn((float)code, scale), min);
}

/* The chunk read back as code x scale + minimum, as rk_kv_dequantize_tokens
 * computes it. A group that is a multiple of 8 holds whole chunks; under
 * any other the elements past the first group look theirs up in ROW. */
template <int BITS>
__device__ __forceinline__ void kv_chunk_values(const KvChunk<BITS> &k, const unsigned char *row,
                                                int head_dim, int group, int c, float (&x)[8])
{
    const __half2 *meta = reinterpret_cast<const __half2 *>(row + head_dim * BITS / 8);
    const bool one_group = group % 8 == 0 || c * 8 / group == (c * 8 + 7) / group;
    const unsigned mbits = k.meta;
    float2 sm = __half22float2(*reinterpret_cast<const __half2 *>(&mbits));
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        if (!one_group)
            sm = __half22float2(meta[(c * 8 + e) / group]);
        x[e] = kv_code_value(kv_chunk_code<BITS>(k, e), sm.x, sm.y);
    }
}

/* Four 4-byte words from P (fp16 rows that are 4-byte aligned, no more: a
 * KIVI residual's, a smartkv tier's), through the read-only path. */
__device__ __forceinline__ uint4 ldg_words4(const unsigned char *p)
{
    const unsigned *w = reinterpret_cast<const unsigned *>(p);
    return make_uint4(__ldg(w), __ldg(w + 1), __ldg(w + 2), __ldg(w + 3));
}

/* Slot SLOT of a smartkv head (kv_rows.h): where its row lies from the
 * head's start, and the bits of its tier. Tiers compared in turn, not
 * indexed, so that the layout stays in the kernel's parameters. */
struct SmartSlot {
    size_t at;
    int bits;
};

__device__ __forceinline__ SmartSlot smart_slot(const rk_k_smart &s, int slot)
{
    SmartSlot x = {s.off[0] + (size_t)slot * s.row[0], s.bits[0]};
#pragma unroll
    for (int t = 1; t < RK_K_SMART_TIERS; ++t)
        if (slot >= s.first[t])
            x = {s.off[t] + (size_t)(slot - s.first[t]) * s.row[t], s.bits[t]};
    return x;
}

__device__ __forceinline__ uint4 kv_pack_half8(const float (&x)[8])
{
    uint4 u;
    __half2 *h = reinterpret_cast<__half2 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i)
        h[i] = __floats2half2_rn(x[2 * i], x[2 * i + 1]);
    return u;
}

/* kv_chunk_values rounded to 8 halves, the attention kernels' tiles, for a
 * GROUP that is a multiple of 8. */
template <int BITS>
__device__ __forceinline__ uint4 kv_chunk_half8(const KvChunk<BITS> &k)
{
    const unsigned mbits = k.meta;
    const float2 sm = __half22float2(*reinterpret_cast<const __half2 *>(&mbits));
    float x[8];
#pragma unroll
    for (int e = 0; e < 8; ++e)
        x[e] = kv_code_value(kv_chunk_code<BITS>(k, e), sm.x, sm.y);
    return kv_pack_half8(x);
}

/* Elements 8C..8C+7 of ROW loaded and read back at once (the attention
 * mass kernel's keys). */
template <int BITS>
__device__ __forceinline__ void kv_dequant8(const unsigned char *row, int head_dim, int group,
                                            int c, float (&x)[8])
{
    kv_chunk_values<BITS>(kv_chunk_load<BITS>(row, head_dim, group, c), row, head_dim, group, c,
                          x);
}

/* Elements 8C..8C+7 of a smartkv row of BITS (16, 8, 4 or 2) read back as
 * rk_kv_dequantize_row reads them. */
__device__ __forceinline__ void smart_chunk_values(const unsigned char *row, int bits,
                                                   int head_dim, int group, int c, float (&x)[8])
{
    if (bits == 16) {
        const uint4 u = ldg_words4(row + c * 16);
        const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __half22float2(h[i]);
            x[2 * i] = f.x;
            x[2 * i + 1] = f.y;
        }
    } else if (bits == 8) {
        kv_dequant8<8>(row, head_dim, group, c, x);
    } else if (bits == 4) {
        kv_dequant8<4>(row, head_dim, group, c, x);
    } else {
        kv_dequant8<2>(row, head_dim, group, c, x);
    }
}

/* Chunk C of a smartkv row of BITS as loaded: the words that hold its
 * codes (an fp16 row's four words of halves; int2's two bytes in the word
 * that holds them, SHIFT bits up) and its group's (scale, minimum). The
 * loads are predicated on BITS, not branched on it, so that a warp whose
 * rows lie in different tiers issues them together. */
struct SmartChunk {
    unsigned w[4];
    unsigned meta;
    int bits, shift;
};

__device__ __forceinline__ SmartChunk smart_chunk_load(const unsigned char *row, int bits,
                                                       int head_dim, int group, int c)
{
    SmartChunk k;
    const int at = c * bits; /* the chunk's first byte: 8 elements of BITS */
    const int words = bits == 16 ? 4 : bits == 8 ? 2 : 1;
    const unsigned *const w = reinterpret_cast<const unsigned *>(row + (at & ~3));
#pragma unroll
    for (int i = 0; i < 4; ++i)
        k.w[i] = i < words ? __ldg(w + i) : 0u;
    k.meta = bits < 16 ? __ldg(reinterpret_cast<const unsigned *>(row + head_dim * bits / 8) +
                               c * 8 / group)
                       : 0u;
    k.bits = bits;
    k.shift = (at & 3) * 8;
    return k;
}

/* A loaded chunk as 8 halves, for a group that is a multiple of 8:
 * kv_chunk_half8 of its tier's codes, an fp16 row's halves as they are. */
__device__ __forceinline__ uint4 smart_chunk_half8(const SmartChunk &k)
{
    if (k.bits == 16)
        return make_uint4(k.w[0], k.w[1], k.w[2], k.w[3]);
    if (k.bits == 8) {
        KvChunk<8> x;
        x.code[0] = k.w[0];
        x.code[1] = k.w[1];
        x.meta = k.meta;
        return kv_chunk_half8<8>(x);
    }
    if (k.bits == 4) {
        KvChunk<4> x;
        x.code[0] = k.w[0];
        x.meta = k.meta;
        return kv_chunk_half8<4>(x);
    }
    KvChunk<2> x;
    x.code[0] = (k.w[0] >> k.shift) & 0xffffu;
    x.meta = k.meta;
    return kv_chunk_half8<2>(x);
}

/* A group's (scale, minimum) from its extremes, as rk_kv_quantize_group
 * rounds them: NaNs pass (fminf and fmaxf skip them), the range is clamped
 * to fp16's, and a minimum rounded up past the maximum leaves no range. */
template <int BITS> __device__ __forceinline__ float2 kv_group_scale_min(float lo, float hi)
{
    constexpr float kQmax = (float)((1u << BITS) - 1u), kFp16Max = 65504.0f;
    if (!(lo <= hi))
        lo = hi = 0.0f;
    lo = fminf(fmaxf(lo, -kFp16Max), kFp16Max);
    hi = fminf(fmaxf(hi, -kFp16Max), kFp16Max);
    const float m = __half2float(__float2half_rn(lo));
    const float range = fmaxf(__fsub_rn(hi, m), 0.0f);
    const float sc = __half2float(__float2half_rn(fminf(__fdiv_rn(range, kQmax), kFp16Max)));
    return make_float2(sc, m);
}

/* X's code under a group's (scale, minimum). Rounded to the nearest
 * integer, ties to even, as rintf does, and made an integer, without a
 * conversion instruction (those run at an eighth of the float rate):
 * adding 1.5 x 2^23 leaves no fraction bits, and 2^23 + q holds q in its
 * low bits. Quotients too large for that (|q| >= 2^22), infinities and NaNs
 * end where rintf's would, clamped to 0 or the largest code. */
template <int BITS> __device__ __forceinline__ unsigned kv_code_of(float x, float2 sm)
{
    constexpr float kQmax = (float)((1u << BITS) - 1u), kRound = 12582912.0f;
    float q = sm.x > 0.0f
                  ? __fsub_rn(__fadd_rn(__fdiv_rn(__fsub_rn(x, sm.y), sm.x), kRound), kRound)
                  : 0.0f;
    /* Rounding the minimum up or the scale down can put the extremes a code
     * outside. */
    q = !(q >= 0.0f) ? 0.0f : q > kQmax ? kQmax : q;
    return __float_as_uint(__fadd_rn(q, 8388608.0f)) & 0xffu;
}

/* One warp writes the row of HEAD_DIM floats X (shared memory) as BITS-bit
 * codes in groups of GROUP into ROW: rk_kv_quantize_tokens. META (shared,
 * head_dim / group entries) holds each group's (scale, minimum) between the
 * two passes. */
template <int BITS>
__device__ void kv_quantize_row_warp(unsigned char *row, const float *x, float2 *meta,
                                     int head_dim, int group, int lane)
{
    const int groups = head_dim / group, code_bytes = head_dim * BITS / 8;
    for (int g = lane; g < groups; g += 32) {
        float lo = INFINITY, hi = -INFINITY;
        for (int i = g * group; i < (g + 1) * group; ++i) {
            lo = fminf(lo, x[i]);
            hi = fmaxf(hi, x[i]);
        }
        const float2 sm = kv_group_scale_min<BITS>(lo, hi);
        reinterpret_cast<__half2 *>(row + code_bytes)[g] =
            __halves2half2(__float2half_rn(sm.x), __float2half_rn(sm.y));
        meta[g] = sm;
    }
    __syncwarp();
    constexpr int kPer = 8 / BITS;
    for (int b = lane; b < code_bytes; b += 32) {
        unsigned byte = 0;
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
            const int i = b * kPer + e;
            byte |= kv_code_of<BITS>(x[i], meta[i / group]) << (BITS * e);
        }
        row[b] = (unsigned char)byte;
    }
}

/* Whether kv_quantize_row_lanes takes GROUP: a power of two up to 32. */
__device__ __forceinline__ bool kv_row_lanes_fit(int group)
{
    return group <= 32 && (group & (group - 1)) == 0;
}

/* One warp writes a row of HEAD_DIM values as BITS-bit codes into ROW, the
 * same codes as kv_quantize_row_warp, for a GROUP that is a power of two
 * up to 32 (kv_row_lanes_fit): lane L holds elements L + 32k in X[k], a group's lanes are
 * aligned, and its extremes are reduced by shuffles instead of one lane's
 * pass over the group (the decode step's rotary kernel waits on this). */
template <int BITS>
__device__ __forceinline__ void kv_quantize_row_lanes(unsigned char *row, const float (&x)[8],
                                                      int head_dim, int group, int lane)
{
    constexpr int kPer = 8 / BITS;
    unsigned char *const meta = row + head_dim * BITS / 8;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        if (32 * k >= head_dim)
            break;
        const int j = lane + 32 * k;
        float lo = x[k], hi = x[k];
        for (int o = group / 2; o > 0; o /= 2) {
            lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
            hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
        }
        const float2 sm = kv_group_scale_min<BITS>(lo, hi);
        if (j < head_dim && j % group == 0)
            reinterpret_cast<__half2 *>(meta)[j / group] =
                __halves2half2(__float2half_rn(sm.x), __float2half_rn(sm.y));
        /* The codes of a byte from the lanes after its first; each lane's
         * own code is its low bits, as the lanes fold theirs in together. */
        unsigned byte = kv_code_of<BITS>(x[k], sm);
#pragma unroll
        for (int e = 1; e < kPer; ++e)
            byte |= __shfl_down_sync(0xffffffffu, byte & ((1u << BITS) - 1u), e) << (BITS * e);
        if (j < head_dim && j % kPer == 0)
            row[j / kPer] = (unsigned char)byte;
    }
}

#endif
