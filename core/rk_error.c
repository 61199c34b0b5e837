#include "rk_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

rk_status rk_fail(rk_status st, const char *fmt, ...)
{
    /* Formatted apart first: callers prefix context to rk_last_error(), which
     * must not be both the source and the destination of one vsnprintf. */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return st;
}

const char *rk_last_error(void) { return last_error; }

const char *rk_status_name(rk_status st)
{
    switch (st) {
    case RK_OK: return "ok";
    case RK_EIO: return "io";
    case RK_EFORMAT: return "format";
    case RK_ECONFIG: return "config";
    case RK_ESHAPE: return "shape";
    case RK_EDTYPE: return "dtype";
    case RK_EMISSING: return "missing";
    case RK_ELIMIT: return "limit";
    case RK_ENOMEM: return "nomem";
    case RK_EINVAL: return "invalid";
    case RK_EDEVICE: return "device";
    }
    return "unknown";
}
