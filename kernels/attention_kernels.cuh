/* Causal attention on tensor cores (mma.sync m16n8k16, fp16 in, fp32 out).
 *
 * Both kernels share one warp-level step: a warp owns 16 or 32 query rows
 * (one or two MMA row tiles), forms the scores of a tile of keys with the
 * queries as A fragments, turns them into probabilities with an online
 * softmax kept in registers, and multiplies them by the value tile. head_dim
 * reaches the MMAs as a multiple of 16 on both sides (80 = 5 x 16), so no
 * size needs padding.
 *
 * Prefill: a block takes 64 or 128 consecutive queries of one head and
 * streams key and value tiles through double-buffered shared memory
 * (cp.async), up to the block's last visible key; only tiles crossing the
 * diagonal are masked, and a warp skips the tiles that lie wholly after its
 * rows.
 *
 * Decode: each warp takes a fixed slice of the context for up to 16 queries
 * and writes its unnormalised output with its softmax max and sum to the
 * scratch; a second kernel, launched as a programmatic dependent so that its
 * launch overlaps the first, merges the slices. The grids cover the whole
 * cache (cap) and slices past pos0+n exit at once, so nothing launched
 * depends on pos0. Over an fp16 cache the split kernel can take the step's
 * rows straight from the QKV product (attention.h's rk_attention_rotary):
 * every block rotates its queries, and the slice that holds the step's rows
 * rotates and appends them, so no rotary kernel runs in between.
 *
 * Both read a cache of fp16 rows with cp.async. A cache of quantized rows
 * (kv_rows.h) is read back into the same fp16 tiles in shared memory:
 * prefill copies a tile's codes as they lie into shared memory with
 * cp.async first, decode loads a slice's codes into registers; everything
 * after the tiles is the same code for every storage format. */
#ifndef RK_ATTENTION_KERNELS_CUH
#define RK_ATTENTION_KERNELS_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "async_copy.cuh"
#include "attention.h"
#include "kv_rows.cuh"
#include "launch.cuh"
#include "softmax.cuh"

/* The kernels and their launchers, templates over head_dim and the cache's
 * storage bits. Each storage format's instances are compiled in a file of
 * their own (attention_fp16.cu, attention_int8.cu, ...), so that the
 * formats compile in parallel; attention.cu dispatches to them. */
namespace rk_attn {

/* Shared-memory rows are padded by 16 bytes: with a row stride of D+8 halves
 * the 8 rows one ldmatrix phase reads land on distinct banks for every
 * supported D, and rows stay 16-byte aligned for cp.async. */
constexpr int kPad = 8;

/* Prefill blocks are kPrefillWarps warps of MT row tiles of 16 queries and
 * take key tiles of prefill_keys(D) keys. Two row tiles per warp let each K
 * and V fragment read from shared memory feed twice the MMAs, which
 * shared-memory bandwidth otherwise limits (on an H100, n = 1920: +10% at
 * head_dim 80, +10% at 128). It halves the number of blocks, though, and
 * below about three blocks per SM one row tile is faster (n = 256 after 1536
 * cached rows: 35 us instead of 50). At 128 two row tiles fit in registers
 * only with 32-key tiles, and at 256 not at all. */
constexpr int kPrefillWarps = 4;
constexpr int kPrefillWideMinBlocksPerSM = 3;

template <int D> constexpr int prefill_keys() { return D >= 128 ? 32 : 64; }
template <int D> constexpr int prefill_wide_tiles() { return D <= 128 ? 2 : 1; }

/* Decode blocks are WARPS warps of KEYS keys each: the fastest of the shapes
 * tried on an H100 at 1920 cached rows (KEYS 32, 64 or 128; WARPS 2, 4 or 8).
 * Longer slices leave fewer partials to merge, but 128 keys per warp spill
 * registers, and at head_dim 256 64 keys were slower than 32. A cache too
 * short to give every SM a block of such slices takes kDecodeMinKeys-key
 * slices instead (launch_decode). */
template <int D, int BITS> struct DecodeShape {
    static constexpr int kWarps = D <= 80 ? 4 : 2;
    /* A warp holds a quantized slice's codes in registers, keys and values
     * together so that both are loaded in one round trip: 32 rows of them
     * fit. */
    static constexpr int kKeys = BITS != 16 || D > 128 ? 32 : 64;
};

/* Decode slices are never shorter than this, whatever the format: the
 * scratch is sized by it. */
constexpr int kDecodeMinKeys = 32;

constexpr int kDecodeRows = 16;
constexpr int kCombineWarps = 8;
/* From this many cached rows on, the merge lets the next kernel launch
 * before it waits (decode_combine_kernel). */
constexpr int kEarlyMergeRows = 1024;

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* load_rows for rows whose size is not a multiple of 8 halves, and whose
 * starts are therefore only 4-byte aligned. Rare, so out of line: inlined,
 * it would double the code of the loops that read tiles. */
template <int D, int ROWS, int THREADS>
__device__ __noinline__ void load_rows_pairs(__half *dst, const __half *src, int first, int limit,
                                             int tid, int hd)
{
    constexpr int kPairs = D / 2, kTotal = ROWS * kPairs;
    for (int i = tid; i < kTotal; i += THREADS) {
        const int r = i / kPairs, p = i - r * kPairs;
        const bool valid = first + r < limit && 2 * p < hd;
        const __half *from = src + (valid ? (size_t)(first + r) * hd + 2 * p : 0);
        cp_async4_zfill(smem_addr(dst + r * (D + kPad) + 2 * p), from, valid);
    }
}

/* Copies ROWS rows of HD halves (HD even, at most D; rows HD apart), rows
 * FIRST.. of SRC, into shared DST (stride D + kPad), THREADS threads
 * cooperating. Dims HD..D-1 become zeros, which add nothing to a score and
 * give output dims no one reads. Rows at or past LIMIT become zeros too:
 * they may lie past the buffer, or be unwritten cache rows whose bits could
 * be a NaN, which a zero softmax weight would not cancel. */
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_rows(__half *dst, const __half *src, int first, int limit,
                                          int tid, int hd)
{
    if (hd % 8 != 0) {
        load_rows_pairs<D, ROWS, THREADS>(dst, src, first, limit, tid, hd);
        return;
    }
    constexpr int kChunks = D / 8;
    constexpr int kTotal = ROWS * kChunks;
#pragma unroll
    for (int j = 0; j < (kTotal + THREADS - 1) / THREADS; ++j) {
        const int i = tid + j * THREADS;
        if (kTotal % THREADS == 0 || i < kTotal) {
            const int r = i / kChunks, c = i - r * kChunks;
            const bool valid = first + r < limit && c * 8 < hd;
            const __half *from = src + (valid ? (size_t)(first + r) * hd + c * 8 : 0);
            cp_async16(smem_addr(dst + r * (D + kPad) + c * 8), from, valid);
        }
    }
}

/* ROWS cache rows of BITS-bit codes (kv_rows.h) from HEAD, the first of
 * one head's rows, THREADS threads cooperating: fetch loads their codes
 * and scales into registers, store writes them to shared DST as load_rows
 * lays out fp16 rows (zeros at or past LIMIT). Apart, so that a tile's
 * loads are in flight while the previous tile is computed on. */
template <int D, int BITS, int ROWS, int THREADS> struct KvTile {
    static constexpr int kChunks = D / 8, kTotal = ROWS * kChunks;
    static constexpr int kPer = (kTotal + THREADS - 1) / THREADS;
    KvChunk<BITS> chunk[kPer];

    __device__ __forceinline__ void fetch(const unsigned char *head, int group, int first,
                                          int limit, int tid)
    {
        const size_t row_bytes = kv_row_bytes(BITS, D, group);
#pragma unroll
        for (int j = 0; j < kPer; ++j) {
            const int i = tid + j * THREADS, r = i / kChunks, c = i - r * kChunks;
            chunk[j] = (kTotal % THREADS == 0 || i < kTotal) && first + r < limit
                           ? kv_chunk_load<BITS>(head + (size_t)(first + r) * row_bytes, D,
                                                 group, c)
                           : kv_chunk_zero<BITS>();
        }
    }

    __device__ __forceinline__ void store(__half *dst, const unsigned char *head, int group,
                                          int first, int limit, int tid) const
    {
        if (group % 8 != 0) {
            store_any(dst, head, group, first, limit, tid);
            return;
        }
        const size_t row_bytes = kv_row_bytes(BITS, D, group);
#pragma unroll
        for (int j = 0; j < kPer; ++j) {
            const int i = tid + j * THREADS, r = i / kChunks, c = i - r * kChunks;
            if (kTotal % THREADS != 0 && i >= kTotal)
                continue;
            *reinterpret_cast<uint4 *>(dst + r * (D + kPad) + c * 8) =
                first + r < limit ? kv_chunk_half8<BITS>(chunk[j]) : make_uint4(0, 0, 0, 0);
        }
    }

    /* The same from the rows themselves, under a group that is not a
     * multiple of 8 (20 at head_dim 80, say), whose chunks span groups.
     * Rare, so out of line and unhurried: inlined, it would double the code
     * of the loops that read tiles, which the instruction cache holds. */
    static __device__ __noinline__ void store_any(__half *dst, const unsigned char *head,
                                                  int group, int first, int limit, int tid)
    {
        const size_t row_bytes = kv_row_bytes(BITS, D, group);
        for (int i = tid; i < kTotal; i += THREADS) {
            const int r = i / kChunks, c = i - r * kChunks;
            uint4 out = make_uint4(0, 0, 0, 0);
            if (first + r < limit) {
                const unsigned char *row = head + (size_t)(first + r) * row_bytes;
                float x[8];
                kv_chunk_values<BITS>(kv_chunk_load<BITS>(row, D, group, c), row, D, group, c,
                                      x);
                out = kv_pack_half8(x);
            }
            *reinterpret_cast<uint4 *>(dst + r * (D + kPad) + c * 8) = out;
        }
    }
};

/* dequant_tile under a group that is not a multiple of 8 (20 at head_dim
 * 80, say), whose chunks span groups. Rare, so out of line: inlined, it
 * would double the code of the loop that reads tiles, which the
 * instruction cache holds. */
template <int D, int BITS, int ROWS, int THREADS>
__device__ __noinline__ void dequant_tile_any(__half *dst, const unsigned char *codes, int group,
                                              int valid, int tid)
{
    constexpr int kChunks = D / 8, kTotal = ROWS * kChunks;
    const int row_bytes = (int)kv_row_bytes(BITS, D, group);
    for (int i = tid; i < kTotal; i += THREADS) {
        const int r = i / kChunks, c = i - r * kChunks;
        uint4 out = make_uint4(0, 0, 0, 0);
        if (r < valid) {
            const unsigned char *row = codes + r * row_bytes;
            float x[8];
            kv_chunk_values<BITS>(kv_chunk_load<BITS, false>(row, D, group, c), row, D, group, c,
                                  x);
            out = kv_pack_half8(x);
        }
        *reinterpret_cast<uint4 *>(dst + r * (D + kPad) + c * 8) = out;
    }
}

/* Prefill's quantized tiles: rows FIRST.. (ROWS of them, none at or past
 * LIMIT) of one head's cache, whose rows lie one after another, copied as
 * they are into shared DST by cp.async, 16 bytes at a time where WIDE says
 * the rows allow it (kv_rows.h only promises 4). Staged in shared memory,
 * not in registers as decode holds its slices, the codes leave a warp room
 * for two row tiles of queries. */
template <int THREADS>
__device__ __forceinline__ void fetch_codes(unsigned char *dst, const unsigned char *head,
                                            int row_bytes, int first, int limit, int rows,
                                            bool wide, int tid)
{
    const int valid = min(rows, limit - first);
    if (valid <= 0)
        return;
    const unsigned char *src = head + (size_t)first * row_bytes;
    const int bytes = valid * row_bytes;
    if (wide) {
        for (int i = tid * 16; i < bytes; i += THREADS * 16)
            cp_async16_bytes(smem_addr(dst + i), src + i, min(16, bytes - i));
    } else {
        for (int i = tid * 4; i < bytes; i += THREADS * 4)
            cp_async4(smem_addr(dst + i), src + i);
    }
}

/* VALID rows of codes staged by fetch_codes, read back into the fp16 tile
 * DST as load_rows lays it out, ROWS rows, zeros past VALID. */
template <int D, int BITS, int ROWS, int THREADS>
__device__ __forceinline__ void dequant_tile(__half *dst, const unsigned char *codes, int group,
                                             int valid, int tid)
{
    constexpr int kChunks = D / 8, kTotal = ROWS * kChunks;
    if (group % 8 != 0) {
        dequant_tile_any<D, BITS, ROWS, THREADS>(dst, codes, group, valid, tid);
        return;
    }
    const int row_bytes = (int)kv_row_bytes(BITS, D, group);
#pragma unroll
    for (int j = 0; j < (kTotal + THREADS - 1) / THREADS; ++j) {
        const int i = tid + j * THREADS, r = i / kChunks, c = i - r * kChunks;
        if (kTotal % THREADS != 0 && i >= kTotal)
            continue;
        *reinterpret_cast<uint4 *>(dst + r * (D + kPad) + c * 8) =
            r < valid ? kv_chunk_half8<BITS>(
                            kv_chunk_load<BITS, false>(codes + r * row_bytes, D, group, c))
                      : make_uint4(0, 0, 0, 0);
    }
}

/* A KIVI cache's instances (kv_rows.h): BITS is its RK_KIVI_FORMAT, keys'
 * bits in the high nibble, values' in the low. */
template <int BITS> __host__ __device__ constexpr bool is_kivi() { return BITS > 16; }

/* A smartkv cache's instances (kv_rows.h). */
template <int BITS> __host__ __device__ constexpr bool is_smart() { return BITS == RK_SMART_FORMAT; }

/* Caches whose heads are not cap rows of one format, KIVI's and smartkv's:
 * their tiles are read back where they are used, through their layouts. */
template <int BITS> __host__ __device__ constexpr bool own_layout()
{
    return is_kivi<BITS>() || is_smart<BITS>();
}

/* Bytes of one head's K (IS_V false) or V: CAP rows of a row format of
 * head_dim HD, or those of a cache of its own layout. */
template <int BITS>
__device__ __forceinline__ size_t head_stride(bool is_v, int cap, int group, int hd,
                                              const rk_k_kivi &kivi, const rk_k_smart &smart)
{
    if constexpr (is_kivi<BITS>())
        return is_v ? kivi.v_head : kivi.k_head;
    else if constexpr (is_smart<BITS>())
        return is_v ? smart.v_head : smart.k_head;
    else
        return (size_t)cap * kv_row_bytes(BITS, hd, group);
}

/* ROWS rows FIRST.. of one head of a KIVI cache of LIMIT rows read back
 * into the fp16 tiles KS and VS as load_rows lays them out (zeros at or
 * past LIMIT), THREADS threads cooperating: rows below the last flush
 * boundary from their codes (keys with their group of positions'
 * per-channel scales, values as token rows), the others from the
 * residual's fp16 slots. Loaded where used, not staged ahead: a thread
 * that takes a run of rows of one chunk, to load a key group's scales once
 * for its rows, measured slower on the H200 (16.4 against 15.0 us a decode
 * step's split kernel, 202 against 185 us a 1920-row prefill's, head_dim
 * 80). */
template <int D, int BITS, int ROWS, int THREADS>
__device__ __forceinline__ void kivi_tiles(__half *ks, __half *vs, const unsigned char *kh,
                                           const unsigned char *vh, const rk_k_kivi &kivi,
                                           int group, int first, int limit, int tid)
{
    constexpr int KB = BITS >> 4, VB = BITS & 15, kChunks = D / 8, kTotal = ROWS * kChunks;
    const int R = kivi.residual, quantized = limit / R * R;
    const size_t k_row = D * KB / 8, v_row = kv_row_bytes(VB, D, group);
    for (int i = tid; i < kTotal; i += THREADS) {
        const int r = i / kChunks, c = i - r * kChunks, row = first + r;
        uint4 k8 = make_uint4(0, 0, 0, 0), v8 = k8;
        if (row < limit && row >= quantized) {
            const size_t at = ((size_t)(row % R) * D + c * 8) * sizeof(__half);
            k8 = ldg_words4(kh + kivi.k_fp16 + at);
            v8 = ldg_words4(vh + kivi.v_fp16 + at);
        } else if (row < limit) {
            const KvChunk<KB> codes = kv_chunk_load_codes<KB>(kh + (size_t)row * k_row, c);
            const unsigned *meta = reinterpret_cast<const unsigned *>(kh + kivi.k_meta) +
                                   (size_t)(row / group) * D + c * 8;
            unsigned m[8];
            if (kivi.meta16) {
                const uint4 a = __ldg(reinterpret_cast<const uint4 *>(meta)),
                            b = __ldg(reinterpret_cast<const uint4 *>(meta) + 1);
                m[0] = a.x, m[1] = a.y, m[2] = a.z, m[3] = a.w;
                m[4] = b.x, m[5] = b.y, m[6] = b.z, m[7] = b.w;
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e)
                    m[e] = __ldg(meta + e);
            }
            float x[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const float2 sm = __half22float2(*reinterpret_cast<const __half2 *>(&m[e]));
                x[e] = kv_code_value(kv_chunk_code<KB>(codes, e), sm.x, sm.y);
            }
            k8 = kv_pack_half8(x);
            kv_dequant8<VB>(vh + (size_t)row * v_row, D, group, c, x);
            v8 = kv_pack_half8(x);
        }
        *reinterpret_cast<uint4 *>(ks + r * (D + kPad) + c * 8) = k8;
        *reinterpret_cast<uint4 *>(vs + r * (D + kPad) + c * 8) = v8;
    }
}

/* smart_tiles under a group that is not a multiple of 8 (20 at head_dim
 * 80, say), whose chunks span groups: each element's group looked up in
 * its row. Inline: out of line, the layout it takes by reference would be
 * copied from the kernel's parameters to the stack. */
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void smart_tiles_any(__half *ks, __half *vs, const unsigned char *kh,
                                             const unsigned char *vh, const rk_k_smart &smart,
                                             int group, int first, int limit, int tid)
{
    constexpr int kChunks = D / 8, kTotal = ROWS * kChunks;
    const int *const where = reinterpret_cast<const int *>(kh + smart.maps);
    for (int i = tid; i < kTotal; i += THREADS) {
        const int r = i / kChunks, c = i - r * kChunks, row = first + r;
        uint4 k8 = make_uint4(0, 0, 0, 0), v8 = k8;
        if (row < limit) {
            const SmartSlot at = smart_slot(smart, __ldg(where + row));
            float x[8];
            smart_chunk_values(kh + at.at, at.bits, D, group, c, x);
            k8 = kv_pack_half8(x);
            smart_chunk_values(vh + at.at, at.bits, D, group, c, x);
            v8 = kv_pack_half8(x);
        }
        *reinterpret_cast<uint4 *>(ks + r * (D + kPad) + c * 8) = k8;
        *reinterpret_cast<uint4 *>(vs + r * (D + kPad) + c * 8) = v8;
    }
}

/* ROWS rows FIRST.. of one head of a smartkv cache of LIMIT rows read back
 * into the fp16 tiles KS and VS as load_rows lays them out (zeros at or
 * past LIMIT), THREADS threads cooperating: each row from its slot (K's
 * row-to-slot map), in its tier's format. A lane loads the slots of rows
 * LANE, LANE + 32.. once and the lanes pass them round, and a chunk's words
 * are loaded whatever its tier (smart_chunk_load), so that a warp whose
 * rows lie in different tiers waits for one round of loads, not one per
 * tier and per slot. */
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void smart_tiles(__half *ks, __half *vs, const unsigned char *kh,
                                            const unsigned char *vh, const rk_k_smart &smart,
                                            int group, int first, int limit, int tid)
{
    constexpr int kChunks = D / 8, kTotal = ROWS * kChunks, kSlotRegs = (ROWS + 31) / 32;
    static_assert(kTotal % THREADS == 0 && THREADS % 32 == 0,
                  "every lane of a warp takes the same rounds (the slots pass by shuffles)");
    if (group % 8 != 0) {
        smart_tiles_any<D, ROWS, THREADS>(ks, vs, kh, vh, smart, group, first, limit, tid);
        return;
    }
    const int lane = tid & 31;
    const int *const where = reinterpret_cast<const int *>(kh + smart.maps);
    int slots[kSlotRegs];
#pragma unroll
    for (int s = 0; s < kSlotRegs; ++s) {
        const int r = lane + 32 * s;
        slots[s] = r < ROWS && first + r < limit ? __ldg(where + first + r) : 0;
    }
#pragma unroll
    for (int j = 0; j < kTotal / THREADS; ++j) {
        const int i = tid + j * THREADS, r = i / kChunks, c = i - r * kChunks;
        int slot = 0;
#pragma unroll
        for (int s = 0; s < kSlotRegs; ++s) {
            const int x = __shfl_sync(0xffffffffu, slots[s], r & 31);
            if (r >> 5 == s)
                slot = x;
        }
        uint4 k8 = make_uint4(0, 0, 0, 0), v8 = k8;
        if (first + r < limit) {
            const SmartSlot at = smart_slot(smart, slot);
            const SmartChunk kc = smart_chunk_load(kh + at.at, at.bits, D, group, c);
            const SmartChunk vc = smart_chunk_load(vh + at.at, at.bits, D, group, c);
            k8 = smart_chunk_half8(kc);
            v8 = smart_chunk_half8(vc);
        }
        *reinterpret_cast<uint4 *>(ks + r * (D + kPad) + c * 8) = k8;
        *reinterpret_cast<uint4 *>(vs + r * (D + kPad) + c * 8) = v8;
    }
}

/* The tiles of a cache of its own layout (own_layout). */
template <int D, int BITS, int ROWS, int THREADS>
__device__ __forceinline__ void layout_tiles(__half *ks, __half *vs, const unsigned char *kh,
                                             const unsigned char *vh, const rk_k_kivi &kivi,
                                             const rk_k_smart &smart, int group, int first,
                                             int limit, int tid)
{
    if constexpr (is_kivi<BITS>())
        kivi_tiles<D, BITS, ROWS, THREADS>(ks, vs, kh, vh, kivi, group, first, limit, tid);
    else
        smart_tiles<D, ROWS, THREADS>(ks, vs, kh, vh, smart, group, first, limit, tid);
}

/* The A fragments of a warp's MT row tiles of queries. Small enough, they
 * stay in registers; otherwise (beyond 40 registers) they would crowd out the
 * output accumulators, so they are read again from shared memory at each
 * use. */
template <int D, int MT> struct QueryFrags {
    static constexpr bool kInRegs = D * MT <= 160;
    uint32_t frag[kInRegs ? MT : 1][kInRegs ? D / 16 : 1][4];
    uint32_t base;

    __device__ __forceinline__ void init(const __half *rows, int lane)
    {
        base = smem_addr(rows + (lane & 15) * (D + kPad) + (lane >> 4) * 8);
        if constexpr (kInRegs) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int kk = 0; kk < D / 16; ++kk)
                    ldsm_x4(frag[mt][kk], base + (mt * 16 * (D + kPad) + kk * 16) * 2);
        }
    }

    __device__ __forceinline__ void get(int mt, int kk, uint32_t (&a)[4]) const
    {
        if constexpr (kInRegs) {
#pragma unroll
            for (int i = 0; i < 4; ++i)
                a[i] = frag[mt][kk][i];
        } else {
            ldsm_x4(a, base + (mt * 16 * (D + kPad) + kk * 16) * 2);
        }
    }
};

/* s = Q · Kᵀ for the warp's MT row tiles against 8*NT keys at KS. */
template <int D, int NT, int MT>
__device__ __forceinline__ void tile_scores(float (&s)[MT][NT][4], const QueryFrags<D, MT> &q,
                                            const __half *ks, int lane)
{
    const uint32_t kb =
        smem_addr(ks + ((lane & 7) + ((lane >> 4) << 3)) * (D + kPad) + ((lane >> 3) & 1) * 8);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int j = 0; j < NT; ++j)
            s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
            q.get(mt, kk, a[mt]);
#pragma unroll
        for (int j = 0; j < NT / 2; ++j) {
            uint32_t b[4];
            ldsm_x4(b, kb + (j * 16 * (D + kPad) + kk * 16) * 2);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                mma_16816(s[mt][2 * j], a[mt], b[0], b[1]);
                mma_16816(s[mt][2 * j + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

/* o += P · V for probabilities P (score layout) over the 8*NT value rows at VS. */
template <int D, int NT, int MT>
__device__ __forceinline__ void tile_pv(float (&o)[MT][D / 8][4], const float (&p)[MT][NT][4],
                                        const __half *vs, int lane)
{
    const uint32_t vb = smem_addr(vs + (lane & 15) * (D + kPad) + (lane >> 4) * 8);
#pragma unroll
    for (int kk = 0; kk < NT / 2; ++kk) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            a[mt][0] = pack_half2(p[mt][2 * kk][0], p[mt][2 * kk][1]);
            a[mt][1] = pack_half2(p[mt][2 * kk][2], p[mt][2 * kk][3]);
            a[mt][2] = pack_half2(p[mt][2 * kk + 1][0], p[mt][2 * kk + 1][1]);
            a[mt][3] = pack_half2(p[mt][2 * kk + 1][2], p[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dn = 0; dn < D / 16; ++dn) {
            uint32_t b[4];
            ldsm_x4_trans(b, vb + (kk * 16 * (D + kPad) + dn * 16) * 2);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                mma_16816(o[mt][2 * dn], a[mt], b[0], b[1]);
                mma_16816(o[mt][2 * dn + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

/* Sets to -inf the scores of keys after each row's position. The thread
 * holds rows ROW0 and ROW0+8 (absolute positions) and, in tile column j,
 * keys KEY0 + 8j + {0, 1}. */
template <int NT>
__device__ __forceinline__ void mask_causal(float (&s)[NT][4], int row0, int key0)
{
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
            if (key0 + 8 * j + (e & 1) > row0 + 8 * (e >> 1))
                s[j][e] = -INFINITY;
}

/* One online-softmax step over a row tile's raw scores: the running max M
 * (in log2 units, i.e. of score * scale * log2 e) absorbs the tile, the
 * output and this thread's part of the sum L are rescaled, and S becomes the
 * unnormalised probabilities. A row that has seen only masked keys keeps
 * M = -inf; its weights are computed against 0 so they stay 0, not NaN. */
template <int NT, int DT>
__device__ __forceinline__ void softmax_step(float (&s)[NT][4], float (&o)[DT][4], float (&m)[2],
                                             float (&l)[2], float scale_log2)
{
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < NT; ++j)
            mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m[r], mx * scale_log2);
        const float base = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = exp2_approx(m[r] - base);
        m[r] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; ++e) {
                s[j][e] = exp2_approx(fmaf(s[j][e], scale_log2, -base));
                sum += s[j][e];
            }
        l[r] = l[r] * alpha + sum;
#pragma unroll
        for (int dt = 0; dt < DT; ++dt) {
            o[dt][2 * r] *= alpha;
            o[dt][2 * r + 1] *= alpha;
        }
    }
}

__device__ __forceinline__ float quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/* fp16 K and V tiles are double-buffered (cp.async fills the next while
 * the current is read). A quantized cache's have one buffer each; for a
 * row format the next tile's codes (GROUP sets their size) land beside
 * them while the current tile is read, and KIVI's and smartkv's tiles are
 * read back where they are used. */
template <int BITS> __host__ __device__ constexpr int prefill_tile_buffers()
{
    return BITS == 16 ? 2 : 1;
}

template <int D, int BITS, int WARPS, int MT, int BN>
__host__ __device__ constexpr size_t prefill_smem_bytes(int group)
{
    return (size_t)(16 * MT * WARPS + 2 * prefill_tile_buffers<BITS>() * BN) * (D + kPad) * 2 +
           (BITS == 16 || own_layout<BITS>() ? 0 : 2 * (size_t)BN * kv_row_bytes(BITS, D, group));
}

/* grid (heads, query tiles), the last tiles, which see the most keys, first. */
template <int D, int BITS, int WARPS, int MT, int BN>
__global__ void __launch_bounds__(WARPS * 32)
    prefill_kernel(__half *__restrict__ out, float2 *__restrict__ stats,
                   const __half *__restrict__ q,
                   const unsigned char *__restrict__ k_cache,
                   const unsigned char *__restrict__ v_cache, int group, int wide,
                   const int *__restrict__ pos, int n, int heads, int cap, int hd,
                   float scale_log2, rk_k_kivi kivi, rk_k_smart smart)
{
    constexpr int WM = 16 * MT, BM = WM * WARPS, LD = D + kPad, NT = BN / 8, DT = D / 8;
    constexpr int THREADS = WARPS * 32, BUFS = prefill_tile_buffers<BITS>();
    extern __shared__ uint4 smem_raw[];
    __half *const qs = reinterpret_cast<__half *>(smem_raw);
    __half *const ks = qs + BM * LD;
    __half *const vs = ks + BUFS * BN * LD;
    const int row_bytes = own_layout<BITS>() ? 0 : (int)kv_row_bytes(BITS, D, group);
    unsigned char *const kc = reinterpret_cast<unsigned char *>(vs + BUFS * BN * LD);
    unsigned char *const vc = kc + BN * row_bytes;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int h = blockIdx.x;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const int pos0 = *pos;
    const int kv_len = pos0 + n;
    const int rows = min(BM, n - q0);
    const int n_tiles = (pos0 + q0 + rows + BN - 1) / BN;
    /* Tiles before this one lie wholly at or before the block's first query. */
    const int first_masked = (pos0 + q0 + 1) / BN;
    /* Warps whose rows are all past n (in the last block) only keep the
     * barriers; the others stop computing after the tile of their last row. */
    const int warp_q0 = q0 + warp * WM;
    const int warp_end = warp_q0 < n ? pos0 + min(warp_q0 + WM, n) : 0;

    const unsigned char *const kh =
        k_cache + h * head_stride<BITS>(false, cap, group, hd, kivi, smart);
    const unsigned char *const vh =
        v_cache + h * head_stride<BITS>(true, cap, group, hd, kivi, smart);
    load_rows<D, BM, THREADS>(qs, q + (size_t)h * n * hd, q0, n, tid, hd);
    if constexpr (own_layout<BITS>()) {
        /* Each tile is read back where it is used. */
    } else if constexpr (BITS == 16) {
        load_rows<D, BN, THREADS>(ks, reinterpret_cast<const __half *>(kh), 0, kv_len, tid, hd);
        load_rows<D, BN, THREADS>(vs, reinterpret_cast<const __half *>(vh), 0, kv_len, tid, hd);
    } else {
        fetch_codes<THREADS>(kc, kh, row_bytes, 0, kv_len, BN, wide, tid);
        fetch_codes<THREADS>(vc, vh, row_bytes, 0, kv_len, BN, wide, tid);
    }
    cp_async_commit();

    float o[MT][DT][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
            o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.0f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }
    QueryFrags<D, MT> qf;
    const int row0 = pos0 + warp_q0 + (lane >> 2);

    for (int t = 0; t < n_tiles; ++t) {
        const int buf = BUFS == 2 ? t & 1 : 0;
        if constexpr (BITS == 16) {
            if (t + 1 < n_tiles) {
                load_rows<D, BN, THREADS>(ks + (buf ^ 1) * BN * LD,
                                          reinterpret_cast<const __half *>(kh), (t + 1) * BN,
                                          kv_len, tid, hd);
                load_rows<D, BN, THREADS>(vs + (buf ^ 1) * BN * LD,
                                          reinterpret_cast<const __half *>(vh), (t + 1) * BN,
                                          kv_len, tid, hd);
                cp_async_commit();
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
        } else {
            /* Every thread's copies of this tile's codes are in, and every
             * warp is done with the last tile, once all pass the barrier. */
            cp_async_wait<0>();
            __syncthreads();
            if constexpr (own_layout<BITS>()) {
                layout_tiles<D, BITS, BN, THREADS>(ks, vs, kh, vh, kivi, smart, group, t * BN,
                                                   kv_len, tid);
            } else {
                dequant_tile<D, BITS, BN, THREADS>(ks, kc, group, kv_len - t * BN, tid);
                dequant_tile<D, BITS, BN, THREADS>(vs, vc, group, kv_len - t * BN, tid);
            }
        }
        __syncthreads();
        if constexpr (BITS != 16 && !own_layout<BITS>()) {
            if (t + 1 < n_tiles) {
                fetch_codes<THREADS>(kc, kh, row_bytes, (t + 1) * BN, kv_len, BN, wide, tid);
                fetch_codes<THREADS>(vc, vh, row_bytes, (t + 1) * BN, kv_len, BN, wide, tid);
                cp_async_commit();
            }
        }
        if (t == 0)
            qf.init(qs + warp * WM * LD, lane);

        if (t * BN < warp_end) {
            float s[MT][NT][4];
            tile_scores<D, NT, MT>(s, qf, ks + buf * BN * LD, lane);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                if (t >= first_masked)
                    mask_causal<NT>(s[mt], row0 + 16 * mt, t * BN + 2 * (lane & 3));
                softmax_step<NT, DT>(s[mt], o[mt], m[mt], l[mt], scale_log2);
            }
            tile_pv<D, NT, MT>(o, s, vs + buf * BN * LD, lane);
        }
        /* The next iteration refills the buffer just read (a quantized
         * tile's waits for its codes first, at a barrier of its own). */
        if constexpr (BITS == 16)
            __syncthreads();
    }

    /* Stage the warp's rows (its own rows of qs, which no other warp reads)
     * to store whole 16-byte pieces of the output rows. */
    __half *const stage = qs + warp * WM * LD;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float sum = quad_sum(l[mt][r]), inv = 1.0f / sum;
            const int qi = warp_q0 + 16 * mt + (lane >> 2) + 8 * r;
            if (stats && (lane & 3) == 0 && qi < n)
                stats[(size_t)h * n + qi] = make_float2(m[mt][r], sum);
            __half *const row = stage + (16 * mt + (lane >> 2) + 8 * r) * LD + 2 * (lane & 3);
#pragma unroll
            for (int dt = 0; dt < DT; ++dt)
                *reinterpret_cast<__half2 *>(row + dt * 8) =
                    __floats2half2_rn(o[mt][dt][2 * r] * inv, o[mt][dt][2 * r + 1] * inv);
        }
    __syncwarp();
    __half *const out_h = out + (size_t)h * hd;
    const size_t out_stride = (size_t)heads * hd;
    if (hd % 8 != 0) {
        /* Rows start only 4-byte aligned. */
        for (int i = lane; i < WM * (D / 2); i += 32) {
            const int r = i / (D / 2), p = i - r * (D / 2), qi = warp_q0 + r;
            if (2 * p < hd && qi < n)
                *reinterpret_cast<__half2 *>(out_h + qi * out_stride + 2 * p) =
                    *reinterpret_cast<const __half2 *>(stage + r * LD + 2 * p);
        }
        return;
    }
#pragma unroll
    for (int j = 0; j < (WM * DT + 31) / 32; ++j) {
        const int i = lane + 32 * j;
        const int r = i / DT, c = i - r * DT;
        const int qi = warp_q0 + r;
        if (i < WM * DT && qi < n && c * 8 < hd)
            *reinterpret_cast<uint4 *>(out_h + qi * out_stride + c * 8) =
                *reinterpret_cast<const uint4 *>(stage + r * LD + c * 8);
    }
}

template <int D, int KW, int WARPS> constexpr int decode_smem_bytes()
{
    return (kDecodeRows + 2 * WARPS * KW) * (D + kPad) * 2;
}

/* Partial results of decode slice c (keys c*KW..), query row i, head h:
 * part_o[((h * slices + c) * n + i) * D ..] is the unnormalised output,
 * part_ml[(h * slices + c) * n + i] the max (log2 units) and the sum. */
template <int KW> __host__ __device__ constexpr int decode_slices(int cap)
{
    return (cap + KW - 1) / KW;
}

/* A decode call's rotary (attention.h) with the cache's K and V to append
 * to: the kernel reads the cache through read-only pointers, and only rows
 * before the step, which these never write. */
struct DecodeRotary {
    rk_attention_rotary r;
    __half *k, *v;
};

/* Head H's q of row I of ROT.qkv ([n, heads, 3, hd]); its k and v follow
 * at HD and 2 * HD. */
__device__ __forceinline__ const __half *qkv_row(const rk_attention_rotary &rot, int i, int h,
                                                 int hd)
{
    return static_cast<const __half *>(rot.qkv) + ((size_t)i * gridDim.y + h) * 3 * hd;
}

/* The rotated queries r0.. of head H (rows of ROT.qkv at positions P0 + i,
 * P0 = *ROT.pos) into shared QS as load_rows would have copied them from
 * the rotary kernel's output: rows past N and dims past HD zeros. STORE:
 * this block also writes them to ROT.q. */
template <int D>
__device__ __forceinline__ void rotate_queries(__half *qs, const rk_attention_rotary &rot, int h,
                                               int r0, int n, int hd, int p0, bool store)
{
    for (int e = threadIdx.x; e < kDecodeRows * D; e += blockDim.x) {
        const int r = e / D, d = e - r * D, i = r0 + r;
        __half x = __float2half_rn(0.0f);
        if (i < n && d < hd) {
            const __half *src = qkv_row(rot, i, h, hd);
            x = __float2half_rn(rotated_rn(__half2float(src[d]), src,
                                           rot.rope + (size_t)(p0 + i) * rot.rot_dims, d,
                                           rot.rot_dims));
            if (store)
                static_cast<__half *>(rot.q)[((size_t)h * n + i) * hd + d] = x;
        }
        qs[r * (D + kPad) + d] = x;
    }
}

/* The step's rows ROW0.. (positions P0..) that fall in the warp's slice
 * (keys KEY0..): k rotated, v as it is, into the slice's tiles KS, VS (where
 * load_rows left zeros) and to the cache's rows of head H (KH, VH). A lane's
 * loads of a row all go out before its first store: the cache may alias the
 * QKV product's rows as far as the compiler knows, so each element's loads
 * waited behind the element before's stores, three trips to L2 in a row at
 * head_dim 80 on the path of every decode step. */
template <int D, int KW>
__device__ __forceinline__ void append_rows(__half *ks, __half *vs, __half *kh, __half *vh,
                                            const rk_attention_rotary &rot, int h, int key0,
                                            int row0, int p0, int n, int hd, int lane)
{
    constexpr int E = (D + 31) / 32;
    for (int i = max(0, key0 - row0); i < n && row0 + i < key0 + KW; ++i) {
        const int t = row0 + i - key0;
        const __half *src = qkv_row(rot, i, h, hd);
        const float *rp = rot.rope + (size_t)(p0 + i) * rot.rot_dims;
        __half k[E], v[E];
#pragma unroll
        for (int e = 0; e < E; ++e) {
            const int d = lane + 32 * e;
            if (d < hd) {
                k[e] = __float2half_rn(
                    rotated_rn(__half2float(src[hd + d]), src + hd, rp, d, rot.rot_dims));
                v[e] = src[2 * hd + d];
            }
        }
#pragma unroll
        for (int e = 0; e < E; ++e) {
            const int d = lane + 32 * e;
            if (d < hd) {
                ks[t * (D + kPad) + d] = k[e];
                vs[t * (D + kPad) + d] = v[e];
                kh[(size_t)(row0 + i) * hd + d] = k[e];
                vh[(size_t)(row0 + i) * hd + d] = v[e];
            }
        }
    }
}

/* grid (blocks of WARPS slices over cap, heads, groups of 16 queries). */
template <int D, int BITS, int KW, int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
    decode_split_kernel(float *__restrict__ part_o, float2 *__restrict__ part_ml,
                        float *__restrict__ scores, const __half *__restrict__ q,
                        const unsigned char *__restrict__ k_cache,
                        const unsigned char *__restrict__ v_cache, int group,
                        const int *__restrict__ pos, int n, int cap, int hd, float scale_log2,
                        rk_k_kivi kivi, rk_k_smart smart, DecodeRotary rot)
{
    constexpr int LD = D + kPad, NT = KW / 8, DT = D / 8;
    extern __shared__ uint4 smem_raw[];
    __half *const qs = reinterpret_cast<__half *>(smem_raw);

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int h = blockIdx.y, r0 = blockIdx.z * kDecodeRows;
    /* Rotating its own rows, the kernel reads only rows before the step
     * from the cache; the step's come from the QKV product. */
    const bool rotates = BITS == 16 && rot.r.qkv;
    /* pos (the step's first cache row) and, where it rotates, its first
     * position are inputs of the whole step, final before the graph runs,
     * so they are read before the wait below: read after it, each was one
     * more trip to L2 in front of the rope rows on the step's path. */
    const int pos0 = *pos, p0 = rotates ? *rot.r.pos : 0;
    const int kv_len = pos0 + n;
    const int cached = rotates ? pos0 : kv_len;
    const int slice = blockIdx.x * WARPS + warp;
    const int key0 = slice * KW;
    const bool active = key0 < kv_len;
    /* A slice of rows cached before this step holds nothing a running
     * kernel writes: the one before us (rotary, a KIVI cache's append, or
     * the QKV product where we rotate) writes only the step's own rows, and
     * lets us launch only once it has waited for everything earlier; the
     * slice's keys and values are fetched while it still runs. Except: a
     * KIVI cache's rows move from the residual into codes when a block
     * fills, so only blocks flushed before this step are final; a smartkv
     * cache's append may move any row to another slot, so none is. */
    const bool early =
        !is_smart<BITS>() &&
        key0 + KW <= (is_kivi<BITS>() ? pos0 / kivi.residual * kivi.residual : pos0);
    __half *const ks = qs + kDecodeRows * LD + warp * 2 * KW * LD;
    __half *const vs = ks + KW * LD;
    const unsigned char *const kh =
        k_cache + h * head_stride<BITS>(false, cap, group, hd, kivi, smart);
    const unsigned char *const vh =
        v_cache + h * head_stride<BITS>(true, cap, group, hd, kivi, smart);

    /* Launched as a programmatic dependent of the previous kernel: wait for
     * it (the queries and the step's rows are its outputs), then let the
     * merge kernel launch; it waits for this grid to finish before it reads
     * the partials. A warp of an early slice waits after its loads, the
     * others before: one call site of the loads keeps the code of a
     * quantized cache's, which reads its codes back inline, small enough
     * for the instruction cache. */
    if (!early) {
        rk_wait_previous();
        rk_allow_next();
    }
    if (active) {
        if constexpr (BITS == 16) {
#pragma unroll 1
            for (int side = 0; side < 2; ++side)
                load_rows<D, KW, 32>(side ? vs : ks,
                                     reinterpret_cast<const __half *>(side ? vh : kh), key0,
                                     cached, lane, hd);
        } else if constexpr (own_layout<BITS>()) {
            layout_tiles<D, BITS, KW, 32>(ks, vs, kh, vh, kivi, smart, group, key0, kv_len,
                                          lane);
        } else {
            KvTile<D, BITS, KW, 32> tk, tv;
            tk.fetch(kh, group, key0, kv_len, lane);
            tv.fetch(vh, group, key0, kv_len, lane);
            tk.store(ks, kh, group, key0, kv_len, lane);
            tv.store(vs, vh, group, key0, kv_len, lane);
        }
    }
    if (early) {
        rk_wait_previous();
        rk_allow_next();
    }
    if (blockIdx.x * WARPS * KW >= kv_len)
        return;

    if (rotates)
        rotate_queries<D>(qs, rot.r, h, r0, n, hd, p0, blockIdx.x == 0);
    else
        load_rows<D, kDecodeRows, WARPS * 32>(qs, q + (size_t)h * n * hd, r0, n, tid, hd);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    if (!active)
        return;
    if (rotates && key0 + KW > pos0) {
        append_rows<D, KW>(ks, vs, rot.k + (size_t)h * cap * hd, rot.v + (size_t)h * cap * hd,
                           rot.r, h, key0, pos0, p0, n, hd, lane);
        __syncwarp();
    }

    QueryFrags<D, 1> qf;
    qf.init(qs, lane);
    float s[1][NT][4];
    tile_scores<D, NT, 1>(s, qf, ks, lane);
    const int row0 = r0 + (lane >> 2);
    mask_causal<NT>(s[0], pos0 + row0, key0 + 2 * (lane & 3));
    if (scores) {
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int i = row0 + 8 * (e >> 1), c = key0 + 8 * j + 2 * (lane & 3) + (e & 1);
                if (i < n && c < kv_len)
                    scores[((size_t)h * n + i) * cap + c] = s[0][j][e];
            }
    }

    float o[1][DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
        o[0][dt][0] = o[0][dt][1] = o[0][dt][2] = o[0][dt][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    softmax_step<NT, DT>(s[0], o[0], m, l, scale_log2);
    tile_pv<D, NT, 1>(o, s, vs, lane);

    const size_t base = ((size_t)h * decode_slices<KW>(cap) + slice) * n;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float sum = quad_sum(l[r]);
        const int row = row0 + 8 * r;
        if (row >= n)
            continue;
        float *const dst = part_o + (base + row) * D + 2 * (lane & 3);
#pragma unroll
        for (int dt = 0; dt < DT; ++dt)
            *reinterpret_cast<float2 *>(dst + dt * 8) =
                make_float2(o[0][dt][2 * r], o[0][dt][2 * r + 1]);
        if ((lane & 3) == 0)
            part_ml[base + row] = make_float2(m[r], sum);
    }
}

/* grid (heads, n): merges the slices that query row i sees, 0..(pos0+i)/KW,
 * each of which holds at least one of its keys and so a finite max. Each
 * warp folds every kCombineWarps-th slice into a running max, sum and output
 * (loads of later slices do not wait on the arithmetic of earlier ones), then
 * the warps' results are merged. */
template <int D, int KW>
__global__ void __launch_bounds__(kCombineWarps * 32)
    decode_combine_kernel(__half *__restrict__ out, float2 *__restrict__ stats,
                          const float *__restrict__ part_o,
                          const float2 *__restrict__ part_ml, const int *__restrict__ pos, int n,
                          int heads, int cap, int hd)
{
    constexpr int DL = (D + 31) / 32;
    __shared__ float warp_m[kCombineWarps], warp_l[kCombineWarps];
    __shared__ float warp_o[kCombineWarps][D];

    const int h = blockIdx.x, row = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    /* pos was final before the split kernel got past its own wait, which
     * precedes its launch trigger: it may be read before this grid's wait. */
    const int pos0 = *pos, count = (pos0 + row) / KW + 1;
    const size_t first = (size_t)h * decode_slices<KW>(cap) * n + row;
    /* The next kernel (the output projection) prefetches its weights while
     * the partials are merged; behind a long attention, while the split
     * still runs. It may launch before this grid waits: the split waited
     * for the kernels before it before it let this grid launch, so they are
     * done (launch.cuh). Behind a short attention its early blocks only took
     * bandwidth and SM slots from the split: on an H200, up to 1.7 % of a
     * step with 512-640 rows cached, against 1.5 % gained at 1920 (README,
     * "Decode at the bandwidth limit"). */
    const bool early = pos0 >= kEarlyMergeRows;
    if (early)
        rk_allow_next();
    rk_wait_previous();
    if (!early)
        rk_allow_next();

    float m = -INFINITY, l = 0.0f, acc[DL];
#pragma unroll
    for (int i = 0; i < DL; ++i)
        acc[i] = 0.0f;
#pragma unroll 4
    for (int c = warp; c < count; c += kCombineWarps) {
        const size_t at = first + (size_t)c * n;
        const float2 ml = part_ml[at];
        float v[DL];
#pragma unroll
        for (int i = 0; i < DL; ++i)
            v[i] = lane + 32 * i < D ? part_o[at * D + lane + 32 * i] : 0.0f;
        const float m_new = fmaxf(m, ml.x);
        const float alpha = exp2_approx(m - m_new), w = exp2_approx(ml.x - m_new);
        l = l * alpha + w * ml.y;
#pragma unroll
        for (int i = 0; i < DL; ++i)
            acc[i] = acc[i] * alpha + w * v[i];
        m = m_new;
    }
    if (lane == 0) {
        warp_m[warp] = m;
        warp_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < DL; ++i)
        if (lane + 32 * i < D)
            warp_o[warp][lane + 32 * i] = acc[i];
    __syncthreads();

    float mx = warp_m[0];
#pragma unroll
    for (int w = 1; w < kCombineWarps; ++w)
        mx = fmaxf(mx, warp_m[w]);
    float scale[kCombineWarps], sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kCombineWarps; ++w) {
        scale[w] = exp2_approx(warp_m[w] - mx);
        sum += scale[w] * warp_l[w];
    }
    const float inv = 1.0f / sum;
    if (stats && threadIdx.x == 0)
        stats[(size_t)h * n + row] = make_float2(mx, sum);
    for (int d = threadIdx.x; d < hd; d += kCombineWarps * 32) {
        float x = 0.0f;
#pragma unroll
        for (int w = 0; w < kCombineWarps; ++w)
            x += scale[w] * warp_o[w][d];
        out[((size_t)row * heads + h) * hd + d] = __float2half_rn(x * inv);
    }
}

/* Up to the widest rows a quantized cache can have, a group of 1. */
template <int D, int BITS, int MT> void allow_prefill_smem()
{
    cudaFuncSetAttribute(prefill_kernel<D, BITS, kPrefillWarps, MT, prefill_keys<D>()>,
                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                         (int)prefill_smem_bytes<D, BITS, kPrefillWarps, MT, prefill_keys<D>()>(1));
}

template <int D, int BITS> void configure_format()
{
    using S = DecodeShape<D, BITS>;
    allow_prefill_smem<D, BITS, 1>();
    allow_prefill_smem<D, BITS, prefill_wide_tiles<D>()>();
    cudaFuncSetAttribute(decode_split_kernel<D, BITS, S::kKeys, S::kWarps>,
                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                         decode_smem_bytes<D, S::kKeys, S::kWarps>());
    cudaFuncSetAttribute(decode_split_kernel<D, BITS, kDecodeMinKeys, S::kWarps>,
                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                         decode_smem_bytes<D, kDecodeMinKeys, S::kWarps>());
}


/* The device's SM count, read once by attention.cu's configure_once. */
extern int sm_count;

/* Raises the kernels' shared-memory limits, once (attention.cu), the mass
 * kernel's among them (attention_mass.cu). */
void configure_once();
void configure_mass();

template <int D, int BITS, int MT>
void launch_prefill_with(cudaStream_t s, void *out, float2 *stats, const void *q,
                         const rk_k_kv *c, const int *pos, int n)
{
    constexpr int BM = 16 * MT * kPrefillWarps, BN = prefill_keys<D>();
    const dim3 grid(c->heads, (n + BM - 1) / BM);
    /* Tiles start at multiples of BN rows: 16-byte copies need the heads'
     * bases 16-byte aligned too. */
    const size_t head_bytes =
        own_layout<BITS>() ? 0 : (size_t)c->cap * kv_row_bytes(BITS, D, c->group);
    const int wide = ((uintptr_t)c->k | (uintptr_t)c->v | head_bytes) % 16 == 0;
    prefill_kernel<D, BITS, kPrefillWarps, MT, BN>
        <<<grid, kPrefillWarps * 32, prefill_smem_bytes<D, BITS, kPrefillWarps, MT, BN>(c->group),
           s>>>(static_cast<__half *>(out), stats, static_cast<const __half *>(q),
                static_cast<const unsigned char *>(c->k), static_cast<const unsigned char *>(c->v),
                c->group, wide, pos, n, c->heads, c->cap, c->head_dim, scale_log2(c->head_dim),
                c->kivi, c->smart);
}

template <int D, int BITS>
void launch_prefill(cudaStream_t s, void *out, float2 *stats, const void *q, const rk_k_kv *c,
                    const int *pos, int n)
{
    constexpr int wide = prefill_wide_tiles<D>(), wide_rows = 16 * wide * kPrefillWarps;
    const long wide_blocks = (long)c->heads * ((n + wide_rows - 1) / wide_rows);
    if (wide_blocks >= (long)kPrefillWideMinBlocksPerSM * sm_count)
        launch_prefill_with<D, BITS, wide>(s, out, stats, q, c, pos, n);
    else
        launch_prefill_with<D, BITS, 1>(s, out, stats, q, c, pos, n);
}

/* The split kernel's grid over C's slices of KW keys, for N queries. */
template <int KW, int WARPS> dim3 decode_grid(const rk_k_kv *c, int n)
{
    return dim3((decode_slices<KW>(c->cap) + WARPS - 1) / WARPS, c->heads,
                (n + kDecodeRows - 1) / kDecodeRows);
}

template <int D, int BITS, int KW>
void launch_decode_slices(cudaStream_t s, void *out, float2 *stats, float *scores, const void *q,
                          const rk_k_kv *c, void *scratch, const int *pos, int n,
                          const rk_attention_rotary &rot)
{
    constexpr int WARPS = DecodeShape<D, BITS>::kWarps;
    const int slices = decode_slices<KW>(c->cap), heads = c->heads;
    float *const part_o = static_cast<float *>(scratch);
    float2 *const part_ml = reinterpret_cast<float2 *>(part_o + (size_t)heads * slices * n * D);
    launch_dependent(decode_split_kernel<D, BITS, KW, WARPS>, decode_grid<KW, WARPS>(c, n),
                     dim3(WARPS * 32), decode_smem_bytes<D, KW, WARPS>(), s, part_o, part_ml,
                     scores, q,
                     static_cast<const unsigned char *>(c->k),
                     static_cast<const unsigned char *>(c->v), c->group, pos, n, c->cap,
                     c->head_dim, scale_log2(c->head_dim), c->kivi, c->smart,
                     DecodeRotary{rot, static_cast<__half *>(c->k), static_cast<__half *>(c->v)});
    launch_dependent(decode_combine_kernel<D, KW>, dim3(heads, n), dim3(kCombineWarps * 32), 0, s,
                     out, stats, part_o, part_ml, pos, n, heads, c->cap, c->head_dim);
}

/* Blocks of the shape's slices, or, when those leave an SM without one,
 * of kDecodeMinKeys-key slices: twice the blocks, each half as long. On an
 * H200, SnapKV and H2O caches of 640 rows (32 heads) went from 96 blocks to
 * 160, and their TPOT down 0.3-1.3 % and 1.7-1.9 % (README, "Decode at the
 * bandwidth limit"). */
template <int D, int BITS>
void launch_decode(cudaStream_t s, void *out, float2 *stats, float *scores, const void *q,
                   const rk_k_kv *c, void *scratch, const int *pos, int n,
                   const rk_attention_rotary &rot)
{
    using S = DecodeShape<D, BITS>;
    const dim3 g = decode_grid<S::kKeys, S::kWarps>(c, n);
    if (S::kKeys > kDecodeMinKeys && (long)g.x * g.y * g.z < sm_count)
        launch_decode_slices<D, BITS, kDecodeMinKeys>(s, out, stats, scores, q, c, scratch, pos,
                                                      n, rot);
    else
        launch_decode_slices<D, BITS, S::kKeys>(s, out, stats, scores, q, c, scratch, pos, n,
                                                rot);
}

/* Per storage format, over every head_dim of RK_ATTENTION_HEAD_DIMS (a
 * shape rk_attention_supports rejects launches nothing): raising the
 * kernels' shared-memory limits, prefill and decode. */
template <int BITS> void configure()
{
#define RK_CONFIGURE(D) configure_format<D, BITS>();
    RK_ATTENTION_HEAD_DIMS(RK_CONFIGURE)
#undef RK_CONFIGURE
}

template <int BITS>
void prefill(cudaStream_t s, void *out, float2 *stats, const void *q, const rk_k_kv *c,
             const int *pos, int n)
{
    switch (rk_attention_instance_dim(c->head_dim, BITS)) {
#define RK_CASE(D)                                                                                 \
    case D: launch_prefill<D, BITS>(s, out, stats, q, c, pos, n); break;
        RK_ATTENTION_HEAD_DIMS(RK_CASE)
#undef RK_CASE
    }
}

template <int BITS>
void decode(cudaStream_t s, void *out, float2 *stats, float *scores, const void *q,
            const rk_k_kv *c, void *scratch, const int *pos, int n, const rk_attention_rotary &rot)
{
    switch (rk_attention_instance_dim(c->head_dim, BITS)) {
#define RK_CASE(D)                                                                                 \
    case D: launch_decode<D, BITS>(s, out, stats, scores, q, c, scratch, pos, n, rot); break;
        RK_ATTENTION_HEAD_DIMS(RK_CASE)
#undef RK_CASE
    }
}

/* The instances of one storage format, made in its own file. */
#define RK_ATTENTION_INSTANCES(BITS)                                                               \
    template void configure<BITS>();                                                               \
    template void prefill<BITS>(cudaStream_t, void *, float2 *, const void *, const rk_k_kv *,     \
                                const int *, int);                                                 \
    template void decode<BITS>(cudaStream_t, void *, float2 *, float *, const void *,              \
                               const rk_k_kv *, void *, const int *, int,                          \
                               const rk_attention_rotary &);

} // namespace rk_attn

#endif
