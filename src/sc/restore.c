/* restore.c: a volume made from a snapshot (docs/storage.md): its blocks
 * fetched from Walrus, checked against their hashes, and written with
 * pwrite into a sparse raw base at their offsets (zero blocks stay
 * holes); then the volume's qcow2 overlay is made on top of it with a
 * bitmap koala-SNAPID, so that the volume's first snapshot is incremental
 * against the one it came from.  The volume is `creating` with progress
 * until then.  A restarted SC starts the fill again from the beginning. */
#define LOG_MODULE "sc"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checksum.h"
#include "log.h"
#include "manifest.h"
#include "s3.h"
#include "sc.h"

struct restore_job {
    struct sc *sc;
    char volume_id[32];
};

static int fill(struct sc *sc, struct db *db, const struct sc_volume *v,
                struct koala_error **err)
{
    struct sc_manifest m;
    if (sc_manifest_load(sc, v->snapshot_id, &m, err) < 0)
        return -1;
    char base[4200];
    int rc = -1, fd = -1;
    if (sc->store->ops->base_path(sc->store, v->id, base, sizeof(base), err) <
        0)
        goto out;
    fd = open(base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || ftruncate(fd, (off_t)m.volume_size) < 0) {
        error_set_errno(err, "%s", base);
        goto out;
    }
    size_t nonzero = 0, done = 0;
    for (size_t i = 0; i < m.n; i++)
        nonzero += m.hash[i][0] != '\0';
    for (size_t i = 0; i < m.n; i++) {
        if (!m.hash[i][0])
            continue;
        pthread_mutex_lock(&sc->lock);
        bool stop = sc->jobs_stop;
        pthread_mutex_unlock(&sc->lock);
        if (stop) {
            error_set(err, ECANCELED, NULL, "the SC is stopping");
            goto out;
        }
        char key[256], hash[65];
        snprintf(key, sizeof(key), "%s/blocks/%s", sc->opt.zone, m.hash[i]);
        _cleanup_buf_ struct buf b = {0};
        int g = sc_s3_get(sc->s3, SC_BUCKET, key, &b, m.block_size, err);
        if (g == 1)
            error_set(err, ENOENT, NULL, "block %s is missing", m.hash[i]);
        if (g != 0)
            goto out;
        checksum_sha256_hex(b.data ? b.data : "", b.len, hash);
        if (strcmp(hash, m.hash[i]) != 0) {
            error_set(err, EIO, NULL, "block %zu of %s does not match its hash",
                      i, v->snapshot_id);
            goto out;
        }
        if (pwrite(fd, b.data, b.len, (off_t)i * m.block_size) !=
            (ssize_t)b.len) {
            error_set_errno(err, "writing %s", base);
            goto out;
        }
        if (++done % 32 == 0 &&
            sc_volume_set_status(db, v->id, "creating",
                                 (int)(done * 99 / nonzero), NULL, err) < 0)
            goto out;
    }
    if (fsync(fd) < 0) {
        error_set_errno(err, "fsync %s", base);
        goto out;
    }
    char bitmap[64];
    snprintf(bitmap, sizeof(bitmap), "koala-%s", v->snapshot_id);
    if (sc->store->ops->create(sc->store, v->id, v->size, base, bitmap, err) <
            0 ||
        sc_volume_set_bitmap(db, v->id, bitmap, v->snapshot_id, err) < 0 ||
        sc_volume_set_status(db, v->id, "available", 100, NULL, err) < 0)
        goto out;
    log_info("%s: filled from %s (%zu blocks)", v->id, v->snapshot_id, done);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    sc_manifest_clear(&m);
    return rc;
}

static void restore_job(void *ctx)
{
    struct restore_job *j = ctx;
    struct sc *sc = j->sc;
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(sc->db, &err);
    struct sc_volume v;
    int rc = db ? sc_volume_get(db, j->volume_id, &v, &err) : -1;
    if (rc == 0 && strcmp(v.status, "creating") == 0 &&
        fill(sc, db, &v, &err) < 0) {
        log_error("%s: from %s: %s", v.id, v.snapshot_id, error_message(err));
        /* stopping: stays creating, and the next start fills it again */
        if (err->errnum != ECANCELED) {
            struct koala_error *e2 = NULL;
            sc_volume_set_status(db, v.id, "error", 0, error_message(err),
                                 &e2);
            error_free(e2);
        }
    }
    error_free(err);
    if (db)
        db_pool_put(sc->db, db);
    free(j);
}

int sc_restore_start(struct sc *sc, const char *volume_id,
                     struct koala_error **err)
{
    if (sc->s3 == NULL)
        return error_set(err, ENOTSUP, "UnsupportedOperation",
                         "this storage controller has no Walrus");
    struct restore_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    j->sc = sc;
    snprintf(j->volume_id, sizeof(j->volume_id), "%s", volume_id);
    if (workpool_submit(sc->jobs, restore_job, j) < 0) {
        free(j);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    return 0;
}
