/* store_file.c: the local-file volume store (store.h): a volume is a
 * sparse qcow2 file, DIR/vol-ID.qcow2, made by qemu-img in milliseconds
 * whatever its size; a volume made from a snapshot also has a raw base,
 * DIR/vol-ID.base, that the qcow2 file is an overlay of.
 *
 * A new qcow2 is written under a temporary name and renamed into place,
 * so after a kill -9 a volume's file is whole or absent.  The file is
 * opened by qemu-storage-daemon with O_DIRECT and without a host cache
 * between it and the disk (cache.direct), so what the guest flushed is
 * on the disk when the flush returns. */
#define LOG_MODULE "sc"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "sc.h"
#include "store.h"

struct file_store {
    struct sc_store base;
    char dir[4096];
    char qemu_img[1024];
};

static void path_of(struct file_store *f, const char *id, const char *ext,
                    char *out, size_t size)
{
    snprintf(out, size, "%s/%s%s", f->dir, id, ext);
}

static int file_create(struct sc_store *s, const char *id, uint64_t size,
                       const char *base, const char *bitmap,
                       struct koala_error **err)
{
    struct file_store *f = (struct file_store *)s;
    char path[4200], tmp[4200], sz[32];
    path_of(f, id, ".qcow2", path, sizeof(path));
    path_of(f, id, ".qcow2.tmp", tmp, sizeof(tmp));
    snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
    unlink(tmp);
    /* lazy_refcounts off: after a crash the image needs no repair before
     * it is opened again. */
    const char *argv_plain[] = {f->qemu_img, "create", "-q", "-f", "qcow2",
                                "-o", "lazy_refcounts=off", tmp, sz, NULL};
    const char *argv_base[] = {f->qemu_img, "create", "-q", "-f", "qcow2",
                               "-o", "lazy_refcounts=off", "-b", base,
                               "-F", "raw", tmp, sz, NULL};
    if (sc_run(base ? argv_base : argv_plain, NULL, err) < 0) {
        error_prefix(*err, "creating %s", id);
        unlink(tmp);
        return -1;
    }
    if (bitmap) {
        const char *argv_bm[] = {f->qemu_img, "bitmap", "--add", "-g",
                                 "524288", tmp, bitmap, NULL};
        if (sc_run(argv_bm, NULL, err) < 0) {
            unlink(tmp);
            return -1;
        }
    }
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    bool ok = fd >= 0 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, path) < 0) {
        error_set_errno(err, "creating %s", path);
        unlink(tmp);
        return -1;
    }
    int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

static int file_remove(struct sc_store *s, const char *id,
                       struct koala_error **err)
{
    struct file_store *f = (struct file_store *)s;
    const char *exts[] = {".qcow2", ".base", ".qcow2.tmp"};
    for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
        char path[4200];
        path_of(f, id, exts[i], path, sizeof(path));
        if (unlink(path) < 0 && errno != ENOENT)
            return error_set_errno(err, "removing %s", path);
    }
    return 0;
}

static int file_resize(struct sc_store *s, const char *id, uint64_t size,
                       struct koala_error **err)
{
    struct file_store *f = (struct file_store *)s;
    char path[4200], sz[32];
    path_of(f, id, ".qcow2", path, sizeof(path));
    snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
    const char *argv[] = {f->qemu_img, "resize", "-q", "-f", "qcow2",
                          path, sz, NULL};
    return sc_run(argv, NULL, err);
}

static json_t *file_blockdev(struct sc_store *s, const char *id,
                             const char *node)
{
    struct file_store *f = (struct file_store *)s;
    char path[4200];
    path_of(f, id, ".qcow2", path, sizeof(path));
    /* cache.direct: O_DIRECT, so a flush the guest waits for reaches the
     * disk and no page cache sits between two QSDs of one volume over a
     * restart; no-flush stays off. */
    return json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:{s:b, s:b}}",
                     "driver", "qcow2", "node-name", node, "discard", "unmap",
                     "file", "driver", "file", "filename", path, "aio",
                     "threads", "cache", "direct", 1, "no-flush", 0);
}

static int file_base_path(struct sc_store *s, const char *id, char *out,
                          size_t size, struct koala_error **err)
{
    path_of((struct file_store *)s, id, ".base", out, size);
    return 0;
}

static int64_t file_allocated(struct sc_store *s, const char *id)
{
    struct file_store *f = (struct file_store *)s;
    int64_t total = 0;
    const char *exts[] = {".qcow2", ".base"};
    for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
        char path[4200];
        struct stat st;
        path_of(f, id, exts[i], path, sizeof(path));
        if (stat(path, &st) == 0)
            total += (int64_t)st.st_blocks * 512;
    }
    return total;
}

static void file_free(struct sc_store *s)
{
    free(s);
}

static const struct sc_store_ops file_ops = {
    .create = file_create,
    .remove = file_remove,
    .resize = file_resize,
    .blockdev = file_blockdev,
    .base_path = file_base_path,
    .allocated = file_allocated,
    .free = file_free,
};

struct sc_store *sc_store_file_new(const char *dir, const char *qemu_img,
                                   struct koala_error **err)
{
    if (mkdir(dir, 0750) < 0 && errno != EEXIST)
        return error_set_errno(err, "mkdir %s", dir), NULL;
    struct file_store *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory"), NULL;
    f->base.ops = &file_ops;
    snprintf(f->dir, sizeof(f->dir), "%s", dir);
    snprintf(f->qemu_img, sizeof(f->qemu_img), "%s", qemu_img);
    return &f->base;
}
