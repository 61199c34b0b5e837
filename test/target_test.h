/* Tests that run on a named target skip, saying why, when this build or this
 * machine lacks it (a CUDA test on a machine without a GPU). */
#ifndef RK_TARGET_TEST_H
#define RK_TARGET_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "rk_test.h"
#include "targets.h"

static inline const rk_ops *rk_test_require_target(const char *name)
{
    const rk_ops *ops = rk_target_find(name);
    void *ctx = NULL;
    if (!ops || ops->init(&ctx) != RK_OK) {
        printf("SKIP: target %s is not available here: %s\n", name, rk_last_error());
        exit(RK_SKIP);
    }
    ops->shutdown(ctx);
    return ops;
}

#endif
