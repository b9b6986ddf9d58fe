/* store.h: where volumes live.  One interface, so that the local-file
 * backend (store_file.c: sparse qcow2 files under the SC's data directory)
 * and a Ceph RBD pool can be two implementations of it.
 *
 * A volume is addressed by its id; the store says how qemu-storage-daemon
 * opens it (a blockdev definition), and the SC does the rest (exports,
 * bitmaps, snapshots) through that QSD.  Every operation is idempotent, so
 * that a restarted SC can repeat the one a kill -9 interrupted.
 */
#ifndef KOALA_SC_STORE_H
#define KOALA_SC_STORE_H

#include <jansson.h>
#include <stdint.h>

#include "error.h"

struct sc_store;

struct sc_store_ops {
    /* An empty volume of size bytes (a volume with that id that exists
     * already is replaced: it can only be a half-made one).  base: NULL,
     * or a raw image (store_base_path) the volume starts from; bitmap:
     * NULL, or a persistent dirty bitmap to create in it at once. */
    int (*create)(struct sc_store *s, const char *id, uint64_t size,
                  const char *base, const char *bitmap,
                  struct koala_error **err);
    /* Removes the volume and its base; a missing volume is no error. */
    int (*remove)(struct sc_store *s, const char *id, struct koala_error **err);
    /* Grows a volume that no QSD has open (an open one grows through QMP
     * block_resize on the node sc_store_blockdev names). */
    int (*resize)(struct sc_store *s, const char *id, uint64_t size,
                  struct koala_error **err);
    /* The blockdev-add argument that opens the volume as node `node`
     * (new reference). */
    json_t *(*blockdev)(struct sc_store *s, const char *id, const char *node);
    /* Where the base of a volume made from a snapshot is written (a sparse
     * raw file the restorer fills with pwrite). */
    int (*base_path)(struct sc_store *s, const char *id, char *out,
                     size_t size, struct koala_error **err);
    /* Bytes the volume takes on disk (allocated). */
    int64_t (*allocated)(struct sc_store *s, const char *id);
    void (*free)(struct sc_store *s);
};

struct sc_store {
    const struct sc_store_ops *ops;
};

/* The local-file backend: DIR/vol-ID.qcow2 (+ DIR/vol-ID.base), made with
 * the qemu-img program. */
struct sc_store *sc_store_file_new(const char *dir, const char *qemu_img,
                                   struct koala_error **err);

static inline void sc_store_free(struct sc_store *s)
{
    if (s)
        s->ops->free(s);
}

#endif
