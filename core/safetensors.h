/* safetensors reader: files are mmapped, headers parsed with cJSON, every
 * tensor's dtype, shape and byte range checked before anyone reads it, and
 * each file checked whole as the reference implementation does (UTF-8
 * header, dtypes of the spec only, byte ranges tiling the data section up
 * to the end of the file). */
#ifndef RK_SAFETENSORS_H
#define RK_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "rk_error.h"

typedef enum { RK_F32 = 0, RK_F16, RK_BF16, RK_DTYPE_OTHER } rk_dtype;

#define RK_MAX_DIMS 4
#define RK_MAX_NAME 192

typedef struct {
    char name[RK_MAX_NAME];
    rk_dtype dtype;      /* RK_DTYPE_OTHER: any other dtype of the safetensors spec */
    char dtype_name[16]; /* as written in the header, e.g. "F16", "BOOL" */
    int ndim;
    int64_t shape[RK_MAX_DIMS];
    const void *data;    /* points into the mapping; NULL for RK_DTYPE_OTHER */
    size_t nbytes;
} rk_tensor;

typedef struct rk_safetensors rk_safetensors;

/* Opens PATH, which is a .safetensors file, a model.safetensors.index.json,
 * or a directory holding either (the index wins when both exist). */
rk_status rk_st_open(const char *path, rk_safetensors **out);

/* Parses a whole safetensors file image held in memory (header and data).
 * The image must outlive the result. Used by the fuzzer and the tests. */
rk_status rk_st_open_memory(const void *image, size_t len, rk_safetensors **out);

void rk_st_close(rk_safetensors *st);

int rk_st_count(const rk_safetensors *st);
const rk_tensor *rk_st_at(const rk_safetensors *st, int i);
/* NULL when absent. */
const rk_tensor *rk_st_find(const rk_safetensors *st, const char *name);

/* Element I of T, a tensor in F32, F16 or BF16, as a float (exactly). */
float rk_tensor_value(const rk_tensor *t, size_t i);

/* RK_OK when every element of T, a tensor of ST in F32, F16 or BF16, is
 * finite; otherwise RK_EFORMAT naming the file, the tensor, the first NaN or
 * infinity and where it is. Reads all of T's bytes. */
rk_status rk_st_check_finite(const rk_safetensors *st, const rk_tensor *t);

size_t rk_dtype_size(rk_dtype dt);
const char *rk_dtype_name(rk_dtype dt);

/* IEEE half and bfloat16 to float. */
float rk_f16_to_f32(uint16_t h);
float rk_bf16_to_f32(uint16_t h);
uint16_t rk_f32_to_f16(float f);

#endif
