/* util.c: file system helpers (see util.h). */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

int nc_fsync_dir(const char *dir, struct koala_error **err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "open %s", dir);
    int rc = fsync(fd);
    close(fd);
    if (rc < 0)
        return error_set_errno(err, "fsync %s", dir);
    return 0;
}

int nc_write_atomic(const char *path, const void *data, size_t len,
                    struct koala_error **err)
{
    _cleanup_free_ char *tmp = NULL, *dcopy = strdup(path);
    if (dcopy == NULL || asprintf(&tmp, "%s.tmp", path) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return error_set_errno(err, "create %s", tmp);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error_set_errno(err, "write %s", tmp);
            goto fail;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) < 0) {
        error_set_errno(err, "fsync %s", tmp);
        goto fail;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) < 0) {
        error_set_errno(err, "rename %s", tmp);
        goto fail;
    }
    return nc_fsync_dir(dirname(dcopy), err);
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}

int nc_mkdir_p(const char *path, struct koala_error **err)
{
    _cleanup_free_ char *p = strdup(path);
    if (p == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) < 0 && errno != EEXIST)
                return error_set_errno(err, "mkdir %s", p);
            *s = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

static int rm_at(int parent, const char *name, struct koala_error **err)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return error_set_errno(err, "unlink %s", name);
    int fd =
        openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "open %s", name);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return error_set_errno(err, "opendir %s", name);
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = rm_at(dirfd(d), de->d_name, err);
    }
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = error_set_errno(err, "rmdir %s", name);
    return rc;
}

int nc_rmtree(const char *path, struct koala_error **err)
{
    return rm_at(AT_FDCWD, path, err);
}

char *nc_read_file(const char *path, size_t max, size_t *len,
                   struct koala_error **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_set_errno(err, "open %s", path);
        return NULL;
    }
    struct buf b = {0};
    char tmp[8192];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error_set_errno(err, "read %s", path);
            goto fail;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > max) {
            error_set(err, EFBIG, NULL, "%s: larger than %zu bytes", path, max);
            goto fail;
        }
        if (buf_append(&b, tmp, (size_t)n) < 0) {
            error_set(err, ENOMEM, NULL, "out of memory");
            goto fail;
        }
    }
    close(fd);
    if (buf_append_str(&b, "") < 0) {
        error_set(err, ENOMEM, NULL, "out of memory");
        buf_free(&b);
        return NULL;
    }
    if (len)
        *len = b.len;
    return buf_steal(&b);
fail:
    close(fd);
    buf_free(&b);
    return NULL;
}

char *nc_read_tail(const char *path, size_t max, size_t *len)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    off_t from = 0;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > (off_t)max)
        from = st.st_size - (off_t)max;
    char *out = malloc(max + 1);
    if (out == NULL) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    size_t got = 0;
    while (fd >= 0 && got < max) {
        ssize_t n = pread(fd, out + got, max - got, from + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    out[got] = '\0';
    *len = got;
    return out;
}

void nc_emit(struct nc_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (buf_vprintf(&t->b, fmt, ap) < 0)
        t->oom = true;
    va_end(ap);
}
