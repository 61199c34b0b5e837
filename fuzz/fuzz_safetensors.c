/* libFuzzer target: arbitrary bytes as a whole safetensors file image. On
 * success every tensor's bytes are read, so the sanitizers see any range
 * the validation let through; the tensors must fill the data section
 * exactly, and the finiteness check must agree with the conversions. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "safetensors.h"

/* Keeps the conversions from being optimised away. */
static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rk_safetensors *st = NULL;

    rk_fail(RK_OK, "%s", "");
    if (rk_st_open_memory(data, size, &st) != RK_OK) {
        if (st != NULL || rk_last_error()[0] == '\0')
            __builtin_trap();
        return 0;
    }
    uint64_t hlen = 0, covered = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)data[i] << (8 * i);
    for (int i = 0; i < rk_st_count(st); i++) {
        const rk_tensor *t = rk_st_at(st, i);
        const unsigned char *p = t->data;
        int finite = 1;
        if (rk_st_find(st, t->name) != t || t->ndim < 0 || t->ndim > RK_MAX_DIMS)
            __builtin_trap();
        covered += t->nbytes;
        if (!p)
            continue;
        if ((const uint8_t *)p < data + 8 + hlen || (const uint8_t *)p + t->nbytes > data + size)
            __builtin_trap();
        for (size_t off = 0; off + rk_dtype_size(t->dtype) <= t->nbytes; off += rk_dtype_size(t->dtype)) {
            uint16_t h;
            float f = 0.0f;
            switch (t->dtype) {
            case RK_F16:
                memcpy(&h, p + off, 2);
                f = rk_f16_to_f32(h);
                break;
            case RK_BF16:
                memcpy(&h, p + off, 2);
                f = rk_bf16_to_f32(h);
                break;
            case RK_F32:
                memcpy(&f, p + off, 4);
                sink += (float)rk_f32_to_f16(f);
                break;
            case RK_DTYPE_OTHER:
                break;
            }
            sink += f;
            finite &= isfinite(f) != 0;
        }
        if ((rk_st_check_finite(st, t) == RK_OK) != finite)
            __builtin_trap();
    }
    if (covered != size - 8 - hlen)
        __builtin_trap();
    rk_st_close(st);
    return 0;
}
