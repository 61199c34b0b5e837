/* Small host utilities the tools share: whole-file reads and a clock. */
#ifndef RK_TEXTIO_H
#define RK_TEXTIO_H

#include <stddef.h>

#include "rk_error.h"

/* Reads the regular file PATH into a malloc'd, NUL-terminated buffer; a file
 * larger than MAX_BYTES is refused before anything is read. */
rk_status rk_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* Rewrites CRLF and lone CR as LF in place, as Python's text-mode reads do
 * (how the HF reference read its evaluation texts); returns the new length. */
size_t rk_text_universal_newlines(char *s, size_t len);

/* The last component of PATH, trailing slashes ignored (a model's
 * directory name), into BUF. */
void rk_base_name(const char *path, char *buf, size_t len);

/* Monotonic seconds. */
double rk_now(void);

#endif
