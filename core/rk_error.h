/* Status codes and the last error message.
 * Every fallible call returns an rk_status; the message that explains it is
 * kept per thread so callers can print it without threading buffers through. */
#ifndef RK_ERROR_H
#define RK_ERROR_H

typedef enum {
    RK_OK = 0,
    RK_EIO,      /* file missing or unreadable */
    RK_EFORMAT,  /* malformed file contents (JSON, safetensors header) */
    RK_ECONFIG,  /* config values missing, absurd or unsupported */
    RK_ESHAPE,   /* tensor shape does not match the config */
    RK_EDTYPE,   /* unsupported or unexpected dtype */
    RK_EMISSING, /* required tensor or key absent */
    RK_ELIMIT,   /* request exceeds the planned limits */
    RK_ENOMEM,   /* allocation failed (start-up only) */
    RK_EINVAL,   /* bad argument or input (e.g. invalid UTF-8) */
    RK_EDEVICE   /* accelerator missing or failing */
} rk_status;

/* Records a printf-style message for the calling thread and returns st.
 * The arguments may include rk_last_error(), to add context to a failure. */
rk_status rk_fail(rk_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The message of the most recent rk_fail on this thread ("" if none). */
const char *rk_last_error(void);

const char *rk_status_name(rk_status st);

#endif
