/* realpath is XSI, beyond the POSIX level the build asks for. */
#define _XOPEN_SOURCE 700

#include "textio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *rk_open_error(const char *path, int err)
{
    struct stat sb;
    if ((err == ENOENT || err == ELOOP) && lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode))
        return err == ENOENT ? "a dangling symlink (its target does not exist)"
                             : "a symlink loop (too many levels of symbolic links)";
    return strerror(err);
}

rk_status rk_open_regular(const char *path, int *fd, size_t *size)
{
    /* O_NONBLOCK so that a FIFO given by mistake is refused, not waited on. */
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0)
        return rk_fail(RK_EIO, "cannot open %s: %s", path, rk_open_error(path, errno));
    struct stat sb;
    if (fstat(*fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(*fd);
        *fd = -1;
        return rk_fail(RK_EIO, "%s is not a readable regular file", path);
    }
    *size = (size_t)sb.st_size;
    return RK_OK;
}

rk_status rk_read_file(const char *path, size_t max_bytes, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd;
    size_t size, n = 0;
    rk_status st = rk_open_regular(path, &fd, &size);
    if (st != RK_OK)
        return st;
    if (size > max_bytes) {
        close(fd);
        return rk_fail(RK_ELIMIT, "%s is %zu bytes; at most %zu are accepted for this file",
                       path, size, max_bytes);
    }
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return rk_fail(RK_ENOMEM, "out of memory reading %s", path);
    }
    while (n < size) {
        ssize_t got = read(fd, buf + n, size - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            int err = got < 0 ? errno : EIO;
            close(fd);
            free(buf);
            return rk_fail(RK_EIO, "cannot read %s: %s", path, strerror(err));
        }
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return RK_OK;
}

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISSOCK(m) ? "a socket"
                         : "not a plain file";
}

/* The directory part of PATH, malloc'd ("." when it has none). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    return slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
}

rk_status rk_out_check(const char *path, char **target)
{
    if (target)
        *target = NULL;
    const size_t len = strlen(path);
    if (len == 0 || path[len - 1] == '/')
        return rk_fail(RK_EINVAL, "'%s' names no file", path);
    struct stat sb;
    char *to;
    if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode)) {
        if (!(to = realpath(path, NULL)))
            return rk_fail(RK_EIO, "cannot write %s: it is %s", path, rk_open_error(path, errno));
    } else if (!(to = strdup(path))) {
        return rk_fail(RK_ENOMEM, "out of memory");
    }
    rk_status st = RK_OK;
    char *dir = dir_of(to);
    const int exists = stat(to, &sb) == 0, err = errno;
    if (!dir)
        st = rk_fail(RK_ENOMEM, "out of memory");
    else if (exists && !S_ISREG(sb.st_mode))
        st = rk_fail(RK_EIO, "%s exists and is not a regular file (%s): it is never replaced",
                     path, file_kind(sb.st_mode));
    else if (exists ? access(to, W_OK) != 0 : err != ENOENT && err != ENOTDIR)
        st = rk_fail(RK_EIO, "cannot write %s: %s", path, strerror(exists ? errno : err));
    else if (stat(dir, &sb) != 0)
        st = errno == ENOENT
                 ? rk_fail(RK_EIO, "cannot write %s: directory %s does not exist", path, dir)
                 : rk_fail(RK_EIO, "cannot write %s: directory %s: %s", path, dir,
                           strerror(errno));
    else if (!S_ISDIR(sb.st_mode))
        st = rk_fail(RK_EIO, "cannot write %s: %s is not a directory", path, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        st = rk_fail(RK_EIO, "cannot write %s: cannot create files in %s: %s", path, dir,
                     strerror(errno));
    free(dir);
    if (st != RK_OK || !target)
        free(to);
    else
        *target = to;
    return st;
}

rk_status rk_out_open(rk_outfile *o, const char *path)
{
    *o = (rk_outfile){0};
    rk_status st = rk_out_check(path, &o->path);
    if (st != RK_OK)
        return st;
    const char *slash = strrchr(o->path, '/');
    const int dir_len = slash ? (int)(slash - o->path + 1) : 0;
    const size_t size = strlen(o->path) + 16;
    if (!(o->temp = malloc(size))) {
        rk_out_abort(o);
        return rk_fail(RK_ENOMEM, "out of memory");
    }
    /* Hidden, and in the same directory: rename is atomic only within one
     * file system. */
    snprintf(o->temp, size, "%.*s.%s.XXXXXX", dir_len, o->path, o->path + dir_len);
    int fd = mkstemp(o->temp);
    if (fd < 0) {
        st = rk_fail(RK_EIO, "cannot create a file beside %s: %s", path, strerror(errno));
        free(o->temp);
        o->temp = NULL;
        rk_out_abort(o);
        return st;
    }
    /* mkstemp makes it private; the file gets the mode of the one it
     * replaces, or what the umask gives a new one. */
    struct stat sb;
    mode_t mode;
    if (stat(o->path, &sb) == 0) {
        mode = sb.st_mode & 07777;
    } else {
        mode = umask(0);
        umask(mode);
        mode = 0666 & ~mode;
    }
    if (fchmod(fd, mode) != 0 || !(o->f = fdopen(fd, "w"))) {
        st = rk_fail(RK_EIO, "cannot write %s: %s", o->temp, strerror(errno));
        close(fd);
        rk_out_abort(o);
        return st;
    }
    return RK_OK;
}

rk_status rk_out_commit(rk_outfile *o)
{
    int err = 0;
    if (fflush(o->f) != 0 || ferror(o->f))
        err = errno ? errno : EIO;
    /* The data must be on the disk before the name points at it, or a crash
     * could leave an empty file where a good one was. */
    else if (fsync(fileno(o->f)) != 0)
        err = errno;
    if (fclose(o->f) != 0 && !err)
        err = errno;
    o->f = NULL;
    if (!err && rename(o->temp, o->path) != 0)
        err = errno;
    if (err) {
        rk_status st = rk_fail(RK_EIO, "cannot write %s: %s", o->path, strerror(err));
        rk_out_abort(o);
        return st;
    }
    free(o->temp);
    free(o->path);
    *o = (rk_outfile){0};
    return RK_OK;
}

void rk_out_abort(rk_outfile *o)
{
    if (o->f)
        fclose(o->f);
    if (o->temp)
        unlink(o->temp);
    free(o->temp);
    free(o->path);
    *o = (rk_outfile){0};
}

size_t rk_text_universal_newlines(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r') {
            s[o++] = '\n';
            if (i + 1 < len && s[i + 1] == '\n')
                i++;
        } else {
            s[o++] = s[i];
        }
    }
    s[o] = '\0';
    return o;
}

double rk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void rk_base_name(const char *path, char *buf, size_t len)
{
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    snprintf(buf, len, "%.*s", (int)(end - start), path + start);
}
