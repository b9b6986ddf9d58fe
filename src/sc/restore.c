/* restore.c: a volume made from a snapshot (docs/storage.md): its blocks
 * fetched from Walrus, checked against their hashes, and written with
 * pwrite into a sparse raw base at their offsets (zero blocks stay
 * holes); then the volume's qcow2 overlay is made on top of it with a
 * bitmap koala-SNAPID, so that the volume's first snapshot is incremental
 * against the one it came from.  The volume is `creating` with progress
 * until then.  Blocks are fetched by a few threads at once (FETCHERS).  A
 * restarted SC starts the fill again from the beginning.
 *
 * A snapshot of another zone (v->snapshot_zone) is read from that zone's
 * prefix in the same bucket.  Its volume gets no bitmap: an incremental
 * snapshot would name the other zone's blocks in a manifest of this
 * zone, whose reference counts and deletions are this SC's alone; so its
 * first snapshot is full and stores its blocks under this zone. */
#define LOG_MODULE "sc"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checksum.h"
#include "log.h"
#include "manifest.h"
#include "s3.h"
#include "sc.h"

#define FETCHERS 4 /* GETs at once */

struct restore_job {
    struct sc *sc;
    char volume_id[32];
};

/* The blocks of one fill, shared by its fetcher threads. */
struct fill {
    struct sc *sc;
    const struct sc_manifest *m;
    const char *snapshot_id;
    const char *zone; /* where the blocks are: "" this SC's own zone */
    int fd;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t next;    /* the next block to take */
    size_t done;    /* blocks written */
    unsigned running;
    struct koala_error *error; /* the first failure */
};

static int fetch_one(struct fill *f, size_t i, struct koala_error **err)
{
    struct sc *sc = f->sc;
    char key[256], hash[65];
    sc_zone_key(sc, f->zone, "blocks", f->m->hash[i], key, sizeof(key));
    _cleanup_buf_ struct buf b = {0};
    int g = sc_s3_get(sc->s3, SC_BUCKET, key, &b, f->m->block_size, err);
    if (g == 1)
        return error_set(err, ENOENT, NULL, "block %s is missing",
                         f->m->hash[i]);
    if (g != 0)
        return -1;
    checksum_sha256_hex(b.data ? b.data : "", b.len, hash);
    if (strcmp(hash, f->m->hash[i]) != 0)
        return error_set(err, EIO, NULL,
                         "block %zu of %s does not match its hash", i,
                         f->snapshot_id);
    if (pwrite(f->fd, b.data, b.len, (off_t)i * f->m->block_size) !=
        (ssize_t)b.len)
        return error_set_errno(err, "writing a volume's base");
    return 0;
}

static void *fetcher(void *arg)
{
    struct fill *f = arg;
    struct koala_error *err = NULL;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (f->next < f->m->n && !f->m->hash[f->next][0])
            f->next++;
        pthread_mutex_lock(&f->sc->lock);
        bool stop = f->sc->jobs_stop;
        pthread_mutex_unlock(&f->sc->lock);
        if (stop && f->error == NULL)
            error_set(&f->error, ECANCELED, NULL, "the SC is stopping");
        if (f->next >= f->m->n || f->error)
            break;
        size_t i = f->next++;
        pthread_mutex_unlock(&f->lock);
        int rc = fetch_one(f, i, &err);
        pthread_mutex_lock(&f->lock);
        if (rc < 0 && f->error == NULL) {
            f->error = err;
            err = NULL;
        }
        error_clear(&err);
        f->done++;
    }
    f->running--;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

static int fill(struct sc *sc, struct db *db, const struct sc_volume *v,
                struct koala_error **err)
{
    struct sc_manifest m;
    if (sc_manifest_load_zone(sc, v->snapshot_zone, v->snapshot_id, &m, err) <
        0)
        return -1;
    char base[4200];
    int rc = -1, fd = -1;
    if (m.volume_size > v->size) {
        error_set(err, EINVAL, "InvalidParameterValue",
                  "snapshot %s is larger than the volume", v->snapshot_id);
        goto out;
    }
    if (sc->store->ops->base_path(sc->store, v->id, base, sizeof(base), err) <
        0)
        goto out;
    fd = open(base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || ftruncate(fd, (off_t)m.volume_size) < 0) {
        error_set_errno(err, "%s", base);
        goto out;
    }
    size_t nonzero = 0;
    for (size_t i = 0; i < m.n; i++)
        nonzero += m.hash[i][0] != '\0';
    struct fill f = {.sc = sc,
                     .m = &m,
                     .snapshot_id = v->snapshot_id,
                     .zone = v->snapshot_zone,
                     .fd = fd};
    pthread_mutex_init(&f.lock, NULL);
    pthread_cond_init(&f.cond, NULL);
    pthread_t th[FETCHERS];
    unsigned started = 0;
    pthread_mutex_lock(&f.lock);
    for (; started < FETCHERS; started++) {
        if (pthread_create(&th[started], NULL, fetcher, &f) != 0)
            break;
        f.running++;
    }
    if (started == 0)
        error_set(&f.error, EAGAIN, NULL, "cannot start a thread");
    /* progress while the fetchers work */
    while (f.running > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&f.cond, &f.lock, &until);
        int pct = (int)(f.done * 99 / (nonzero ? nonzero : 1));
        pthread_mutex_unlock(&f.lock);
        struct koala_error *e2 = NULL;
        sc_volume_set_status(db, v->id, "creating", pct, NULL, &e2);
        error_free(e2);
        pthread_mutex_lock(&f.lock);
    }
    pthread_mutex_unlock(&f.lock);
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&f.lock);
    pthread_cond_destroy(&f.cond);
    if (f.error) {
        *err = f.error;
        goto out;
    }
    if (fsync(fd) < 0) {
        error_set_errno(err, "fsync %s", base);
        goto out;
    }
    /* another zone's snapshot: no bitmap (see atop) */
    bool foreign = v->snapshot_zone[0] != '\0';
    char bitmap[64];
    snprintf(bitmap, sizeof(bitmap), "koala-%s", v->snapshot_id);
    if (sc->store->ops->create(sc->store, v->id, v->size, base,
                               foreign ? NULL : bitmap, err) < 0 ||
        sc_volume_set_bitmap(db, v->id, foreign ? "" : bitmap,
                             foreign ? "" : v->snapshot_id, err) < 0 ||
        sc_volume_set_status(db, v->id, "available", 100, NULL, err) < 0)
        goto out;
    log_info("%s: filled from %s%s%s (%zu blocks)", v->id, v->snapshot_id,
             foreign ? " of " : "", v->snapshot_zone, nonzero);
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
