/* util.h: small file system helpers of the node controller: atomic file
 * replacement (the crash-safe way every state file is written), directory
 * syncs, recursive removal, reading a file's tail. */
#ifndef KOALA_NC_UTIL_H
#define KOALA_NC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

/* Writes data to path.tmp, fsyncs it, renames it over path and fsyncs the
 * directory: after a crash path holds either the old or the new content. */
/* Text being written (nft scripts); one failed append spoils all of it (a
 * script with a line missing could still load). */
struct nc_text {
    struct buf b;
    bool oom;
};
/* Appends to t; on failure marks it spoiled. */
void nc_emit(struct nc_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

int nc_write_atomic(const char *path, const void *data, size_t len,
                    struct koala_error **err);
/* fsync of the directory holding path (or of path when it is one). */
int nc_fsync_dir(const char *dir, struct koala_error **err);
/* mkdir -p (mode 0755 for what it creates). */
int nc_mkdir_p(const char *path, struct koala_error **err);
/* rm -rf: removes path and everything below it; a missing path is fine. */
int nc_rmtree(const char *path, struct koala_error **err);
/* Reads a whole (small) file; NULL with *err (ENOENT when it is missing). */
char *nc_read_file(const char *path, size_t max, size_t *len,
                   struct koala_error **err);
/* The last max bytes of a file (malloc'd; *len set), empty when the file
 * is missing. */
char *nc_read_tail(const char *path, size_t max, size_t *len);

#endif
