/* Dispatch of the attention entry points (attention.h) to the instances
 * of each storage format (attention_kernels.cuh). */
#include "attention_kernels.cuh"

namespace rk_attn {

/* Each storage format's instances come from its own file. */
#define RK_EXTERN(BITS)                                                                            \
    extern template void configure<BITS>();                                                        \
    extern template void prefill<BITS>(cudaStream_t, void *, float2 *, const void *,               \
                                       const rk_k_kv *, const int *, int);                         \
    extern template void decode<BITS>(cudaStream_t, void *, float2 *, float *, const void *,       \
                                      const rk_k_kv *, void *, const int *, int,                   \
                                      const rk_attention_rotary &);
RK_KV_BITS(RK_EXTERN)
RK_KIVI_FORMATS(RK_EXTERN)
RK_EXTERN(RK_SMART_FORMAT)
#undef RK_EXTERN

int sm_count;

/* Raising the shared-memory limits is not a stream operation, so it is done
 * once, on the first call of any entry point: the scratch query comes at
 * planning time, before a decode step can be under graph capture. */
void configure_once()
{
    static const bool done = [] {
#define RK_CONFIGURE(BITS) configure<BITS>();
        RK_KV_BITS(RK_CONFIGURE)
        RK_KIVI_FORMATS(RK_CONFIGURE)
        RK_CONFIGURE(RK_SMART_FORMAT)
#undef RK_CONFIGURE
        configure_mass();
        int device = 0;
        cudaGetDevice(&device);
        cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
        return true;
    }();
    (void)done;
}

template <int D> size_t decode_scratch(int n, int heads, int cap)
{
    return (size_t)heads * decode_slices<kDecodeMinKeys>(cap) * n * (D + 2) * sizeof(float);
}

} // namespace rk_attn

using namespace rk_attn;

extern "C" int rk_attention_instance_dim(int head_dim, int bits)
{
    const bool padded = bits == 16 && head_dim > 0 && head_dim % 2 == 0;
#define RK_FIT(D)                                                                                  \
    if (head_dim == D || (padded && head_dim < D))                                                 \
        return D;
    RK_ATTENTION_HEAD_DIMS(RK_FIT)
#undef RK_FIT
    return 0;
}

extern "C" int rk_attention_supports(int head_dim, int bits)
{
    return rk_attention_instance_dim(head_dim, bits) != 0;
}

extern "C" void rk_attention_prefill(cudaStream_t s, void *out, float *stats, const void *q,
                                     const rk_k_kv *cache, const int *pos, int n)
{
    configure_once();
    switch (cache->bits) {
#define RK_CASE(B)                                                                                 \
    case B: prefill<B>(s, out, reinterpret_cast<float2 *>(stats), q, cache, pos, n); break;
        RK_KV_BITS(RK_CASE)
        RK_KIVI_FORMATS(RK_CASE)
        RK_CASE(RK_SMART_FORMAT)
#undef RK_CASE
    }
}

extern "C" size_t rk_attention_decode_scratch_bytes(int n, int heads, int head_dim, int cap)
{
    configure_once();
    switch (rk_attention_instance_dim(head_dim, 16)) {
#define RK_CASE(D)                                                                                 \
    case D: return decode_scratch<D>(n, heads, cap);
        RK_ATTENTION_HEAD_DIMS(RK_CASE)
#undef RK_CASE
    }
    return 0;
}

extern "C" void rk_attention_decode(cudaStream_t s, void *out, float *stats, float *scores,
                                    const void *q, const rk_k_kv *cache, void *scratch,
                                    const int *pos, int n, const rk_attention_rotary *rot)
{
    configure_once();
    float2 *const st = reinterpret_cast<float2 *>(stats);
    const rk_attention_rotary none = {};
    if (cache->bits != 16 && rot)
        return;
    switch (cache->bits) {
#define RK_CASE(B)                                                                                 \
    case B: decode<B>(s, out, st, scores, q, cache, scratch, pos, n, rot ? *rot : none); break;
        RK_KV_BITS(RK_CASE)
        RK_KIVI_FORMATS(RK_CASE)
        RK_CASE(RK_SMART_FORMAT)
#undef RK_CASE
    }
}
