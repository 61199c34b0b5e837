/* Small host utilities the tools share: whole-file reads, output files that
 * are written whole or not at all, and a clock. */
#ifndef RK_TEXTIO_H
#define RK_TEXTIO_H

#include <stddef.h>
#include <stdio.h>

#include "rk_error.h"

/* Reads the regular file PATH into a malloc'd, NUL-terminated buffer; a file
 * larger than MAX_BYTES is refused before anything is read. */
rk_status rk_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* Opens the regular file PATH for reading (*FD) and gives its size; a FIFO is
 * refused, not waited on. */
rk_status rk_open_regular(const char *path, int *fd, size_t *size);

/* Why PATH cannot be opened, given open's ERR: strerror's text, or that PATH
 * is a dangling symlink or a symlink loop (which ENOENT and ELOOP hide). */
const char *rk_open_error(const char *path, int err);

/* An output file: written to a temporary file beside PATH and renamed over
 * it only once every byte has reached the disk, so a failed or interrupted
 * write leaves whatever PATH held before. */
typedef struct {
    FILE *f;
    char *path; /* where it goes: a symlink's target, so that the link stays */
    char *temp;
} rk_outfile;

/* Whether PATH can be written that way: it names no existing non-regular
 * file (a device, FIFO or directory is never replaced), and its directory
 * exists and takes new files. *TARGET (malloc'd, may be NULL) gets the path
 * that will be replaced. */
rk_status rk_out_check(const char *path, char **target);

/* Opens the temporary file for PATH (after rk_out_check). */
rk_status rk_out_open(rk_outfile *o, const char *path);

/* Flushes, syncs and closes the temporary file and renames it to the path;
 * on any failure removes it and leaves the path as it was. */
rk_status rk_out_commit(rk_outfile *o);

/* Closes and removes the temporary file. */
void rk_out_abort(rk_outfile *o);

/* Rewrites CRLF and lone CR as LF in place, as Python's text-mode reads do
 * (how the HF reference read its evaluation texts); returns the new length
 * and writes a NUL there (S holds LEN + 1 bytes). */
size_t rk_text_universal_newlines(char *s, size_t len);

/* The last component of PATH, trailing slashes ignored (a model's
 * directory name), into BUF. */
void rk_base_name(const char *path, char *buf, size_t len);

/* Monotonic seconds. */
double rk_now(void);

#endif
