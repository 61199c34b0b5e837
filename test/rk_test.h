/* Minimal assertion helpers for the ctest executables. A test binary exits 0
 * when every check held, 1 when any failed, and RK_SKIP (77, registered with
 * ctest as SKIP_RETURN_CODE) when a fixture it needs is absent. */
#ifndef RK_TEST_H
#define RK_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define RK_SKIP 77

static int rk_test_failures;
static int rk_test_checks;

#define CHECK(cond)                                                          \
    do {                                                                     \
        rk_test_checks++;                                                    \
        if (!(cond)) {                                                       \
            rk_test_failures++;                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

#define CHECKF(cond, ...)                                                    \
    do {                                                                     \
        rk_test_checks++;                                                    \
        if (!(cond)) {                                                       \
            rk_test_failures++;                                              \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* Uniform in [-1, 1) from the xorshift state S: each test seeds its own. */
static inline float rk_test_frand(unsigned long long *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((*s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* Exits with RK_SKIP, saying why, when PATH does not exist. */
static inline void rk_test_require_path(const char *path)
{
    if (access(path, R_OK) != 0) {
        printf("SKIP: %s is absent (the ../shared fixtures are not here)\n", path);
        exit(RK_SKIP);
    }
}

/* The largest |a - b| over N values, relative to the largest |b|: how far
 * two runs' rows or logits are apart. */
static inline double rk_test_rel_diff(const float *a, const float *b, int n)
{
    double d = 0, mx = 1e-30;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)b[i]));
    }
    return d / mx;
}

static inline int rk_test_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, rk_test_checks, rk_test_failures);
    return rk_test_failures ? 1 : 0;
}

#endif
