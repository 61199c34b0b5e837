/* Access to a model directory's goldens.json (HF transformers reference
 * values) for the parity tests. */
#ifndef RK_GOLDEN_H
#define RK_GOLDEN_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "textio.h"

static inline cJSON *golden_load(const char *model_dir)
{
    char path[4096];
    char *text;
    size_t len;
    snprintf(path, sizeof path, "%s/goldens.json", model_dir);
    if (rk_read_file(path, SIZE_MAX, &text, &len) != RK_OK)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

/* A JSON number array as malloc'd int32 / double arrays; *n gets the length. */
static inline int32_t *golden_ints(const cJSON *arr, int *n)
{
    *n = cJSON_GetArraySize(arr);
    int32_t *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) v[i++] = (int32_t)e->valuedouble;
    return v;
}

static inline double *golden_doubles(const cJSON *arr, int *n)
{
    *n = cJSON_GetArraySize(arr);
    double *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) v[i++] = e->valuedouble;
    return v;
}

static inline const cJSON *golden_path(const cJSON *j, const char *a, const char *b,
                                       const char *c)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    if (x && b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    if (x && c)
        x = cJSON_GetObjectItemCaseSensitive(x, c);
    return x;
}

#endif
