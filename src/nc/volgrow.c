/* volgrow.c: growing an attached volume under a running guest (the QMP
 * side of ncResizeVolume; the request and its record are in volops.c).
 *
 * Why the dance (docs/storage.md): QEMU 7.2's NBD client cannot grow a
 * node ("Cannot grow NBD nodes") and a reconnect does not learn the new
 * size, but a new connection does.  So a second NBD client (grow-ID) is
 * opened on the export, the raw node the disk uses is reopened onto it
 * (blockdev-reopen swaps its file child under the device), the raw node
 * is resized to the export's size (block_resize: the device's resize
 * callback tells the guest: a virtio-blk config change, or the scsi-hd's
 * CAPACITY DATA HAS CHANGED, which virtio-scsi passes on as a parameter
 * change event) and the old client is closed.  Then the same again back
 * onto nbd-ID, so that every other step (detach, forced detach, restart)
 * keeps knowing the volume's NBD node by its one name.
 *
 * Resumable: QEMU does not say which child a raw node has (7.2's
 * query-named-block-nodes gives the child's file name, the same for both
 * clients), so every pass starts from what can be seen: with both
 * clients present, raw is reopened onto one that has the size asked for
 * (nbd-ID first) and the other closed, so there is one client under raw
 * whatever step a killed koala-nc stopped at.  A client is only ever
 * deleted once raw is off it (blockdev-del of a node in use fails).
 */
#define LOG_MODULE "nc"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "nc.h"

/* raw-ID onto the NBD client `file`. */
static int reopen_onto(struct qmp *q, const char *raw, const char *file,
                       struct koala_error **err)
{
    json_t *opts =
        json_pack("[{s:s, s:s, s:s, s:s}]", "driver", "raw", "node-name", raw,
                  "file", file, "discard", "unmap");
    if (nc_vol_qmp(q, "blockdev-reopen", json_pack("{s:o}", "options", opts),
                   10000, err) < 0) {
        error_prefix(*err, "moving %s onto %s", raw, file);
        return -1;
    }
    return 0;
}

/* A new NBD client `node` on v's export (a new connection: the export's
 * size now); its size into *size. */
static int connect_client(struct qmp *q, const struct nc_volume *v,
                          const char *node, int64_t *size,
                          struct koala_error **err)
{
    json_t *args = nc_volume_blockdev(v);
    json_object_set_new(args, "node-name", json_string(node));
    if (nc_vol_qmp(q, "blockdev-add", args, 60000, err) < 0) {
        error_prefix(*err, "connecting to the export of %s again", v->id);
        return -1;
    }
    return nc_vol_node_info(q, node, size, err) < 0 ? -1 : 0;
}

int nc_volume_grow(struct qmp *q, const struct nc_volume *v, int64_t min_bytes,
                   struct koala_error **err)
{
    char raw[40], nbd[40], grow[40];
    nc_volume_node(v, "raw", raw);
    nc_volume_node(v, "nbd", nbd);
    nc_volume_node(v, "grow", grow);
    int64_t nbd_size = 0, grow_size = 0;
    int has_raw = nc_vol_has_node(q, raw, err);
    if (has_raw < 0)
        return -1;
    if (has_raw == 0)
        return error_set(err, EIO, "IncorrectState",
                         "%s is not plugged into the guest", v->id);
    int has_nbd = nc_vol_node_info(q, nbd, &nbd_size, err);
    int has_grow =
        has_nbd < 0 ? -1 : nc_vol_node_info(q, grow, &grow_size, err);
    if (has_grow < 0)
        return -1;
    if (!has_nbd && !has_grow)
        return error_set(err, EIO, "IncorrectState",
                         "%s has no NBD client (a forced detach?)", v->id);

    /* One client under raw, known: `cur`. */
    const char *cur = has_nbd ? nbd : grow;
    int64_t cur_size = has_nbd ? nbd_size : grow_size;
    if (has_nbd && has_grow) {
        /* The bigger one when neither is big enough (a grow-ID left by
         * an earlier growth): raw never shrinks under the guest. */
        bool on_grow = nbd_size < min_bytes && grow_size > nbd_size;
        cur = on_grow ? grow : nbd;
        cur_size = on_grow ? grow_size : nbd_size;
        if (reopen_onto(q, raw, cur, err) < 0 ||
            nc_vol_drop_node(q, on_grow ? nbd : grow, err) < 0)
            return -1;
    }

    /* A client that sees the export's new size. */
    if (cur_size < min_bytes) {
        const char *next = cur == nbd ? grow : nbd;
        int64_t next_size = 0;
        if (connect_client(q, v, next, &next_size, err) < 0)
            return -1;
        if (next_size < min_bytes) {
            struct koala_error *e = NULL;
            if (nc_vol_drop_node(q, next, &e) < 0)
                log_error("volume %s: %s", v->id, error_message(e));
            error_free(e);
            return error_set(err, EINVAL, "IncorrectState",
                             "the export of %s is %lld bytes, not yet %lld",
                             v->id, (long long)next_size, (long long)min_bytes);
        }
        if (reopen_onto(q, raw, next, err) < 0 ||
            nc_vol_drop_node(q, cur, err) < 0)
            return -1;
        cur = next;
        cur_size = next_size;
    }

    /* The guest learns it: block_resize of the raw node to exactly the
     * client's size (the NBD client accepts a "truncate" to its own size
     * and refuses any other).  Done on every pass, even one that found
     * the work done: raw's size follows its child at once, so QEMU cannot
     * say whether the guest was told, and a second notice is harmless. */
    if (nc_vol_qmp(q, "block_resize",
                   json_pack("{s:s, s:I}", "node-name", raw, "size",
                             (json_int_t)cur_size),
                   10000, err) < 0) {
        error_prefix(*err, "resizing %s to %lld bytes", raw,
                     (long long)cur_size);
        return -1;
    }

    /* Back under its usual name. */
    if (cur == grow) {
        int64_t size = 0;
        if (connect_client(q, v, nbd, &size, err) < 0 ||
            reopen_onto(q, raw, nbd, err) < 0 ||
            nc_vol_drop_node(q, grow, err) < 0)
            return -1;
    }
    return 0;
}
