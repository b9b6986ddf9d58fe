/* snapshot.c: CreateSnapshot and the background job that stores a
 * snapshot in Walrus (docs/storage.md, "Snapshots").
 *
 * The point in time is fixed by one QMP transaction in the volume's QSD:
 * a new persistent bitmap koala-SNAPID starts counting writes, and a
 * backup job copies the blocks the volume's previous bitmap marks (all of
 * them without one) into a scratch qcow2.  The job then reads the scratch
 * image's map (`qemu-img map`: which blocks it holds, and where their
 * data sits in the file), hashes each 512 KiB block, uploads the
 * blocks Walrus does not hold yet and the manifest, and makes the new
 * bitmap the volume's.
 *
 * Reference counts: manifest_blocks says which completed snapshot uses
 * which block (catalog.c deletes the blocks none uses).  A pending
 * snapshot's row is written under sc->gc_lock, so that no block it may
 * find stored is collected meanwhile. */
#define LOG_MODULE "sc"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "id.h"
#include "log.h"
#include "manifest.h"
#include "s3.h"
#include "sc.h"
#include "soap.h"
#include "uploader.h"

/* threads hashing and PUTting a snapshot's blocks (uploader.h) */
#define UPLOADERS 4

void sc_manifest_path(struct sc *sc, const char *snap, char *out,
                      size_t size)
{
    snprintf(out, size, "%s/manifests/%s.json", sc->opt.data_dir, snap);
}

void sc_zone_key(struct sc *sc, const char *zone, const char *kind,
                 const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s/%s", zone && *zone ? zone : sc->opt.zone, kind,
             name);
}

void sc_object_key(struct sc *sc, const char *kind, const char *name,
                   char *out, size_t size)
{
    sc_zone_key(sc, NULL, kind, name, out, size);
}

int sc_manifest_load(struct sc *sc, const char *snap, struct sc_manifest *m,
                     struct koala_error **err)
{
    return sc_manifest_load_zone(sc, NULL, snap, m, err);
}

/* The manifest of a completed snapshot: the local copy (of this SC's own
 * snapshots only), or Walrus'. */
int sc_manifest_load_zone(struct sc *sc, const char *zone, const char *snap,
                          struct sc_manifest *m, struct koala_error **err)
{
    char path[4200], key[256];
    bool own = zone == NULL || *zone == '\0' || strcmp(zone, sc->opt.zone) == 0;
    sc_manifest_path(sc, snap, path, sizeof(path));
    _cleanup_buf_ struct buf b = {0};
    FILE *f = own ? fopen(path, "re") : NULL;
    if (f) {
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            buf_append(&b, chunk, n);
        fclose(f);
    } else {
        sc_zone_key(sc, zone, "manifests", snap, key, sizeof(key));
        int rc = sc->s3 ? sc_s3_get(sc->s3, SC_BUCKET, key, &b, 1u << 30, err)
                        : error_set(err, ENOTSUP, NULL, "no Walrus");
        if (rc == 1)
            return error_set(err, ENOENT, "InvalidSnapshot.NotFound",
                             "the manifest of %s is not in Walrus", snap);
        if (rc < 0)
            return -1;
    }
    return sc_manifest_parse(b.data ? b.data : "", b.len, m, err);
}

/* ---- the job ---- */

struct snap_job {
    struct sc *sc;
    int64_t backup_ms; /* the backup job's time: the copy in the QSD */
    struct sc_snapshot snap;
    char old_bitmap[64];
    char base[32]; /* the manifest the old bitmap is relative to */
    bool full;
    char scratch[4200];
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int qmp_do(struct sc *sc, const char *vol, const char *cmd, json_t *args,
                  json_t **out, struct koala_error **err)
{
    pthread_mutex_lock(&sc->lock);
    struct sc_active *a = sc_qsd_find(sc, vol);
    json_t *r = a ? sc_qsd_qmp(a, cmd, args, err)
                  : (json_decref(args),
                     error_set(err, EPIPE, NULL, "%s: no QSD", vol), NULL);
    pthread_mutex_unlock(&sc->lock);
    if (out)
        *out = r;
    else
        json_decref(r);
    return r ? 0 : -1;
}

/* Waits for the backup job to conclude; 0 if it succeeded. */
static int wait_backup(struct snap_job *j, struct db *db,
                       struct koala_error **err)
{
    for (;;) {
        json_t *jobs = NULL;
        if (qmp_do(j->sc, j->snap.volume_id, "query-jobs", NULL, &jobs,
                   err) < 0)
            return -1;
        size_t i;
        json_t *x;
        const char *status = NULL, *error = NULL;
        json_array_foreach(jobs, i, x) {
            if (strcmp(json_string_value(json_object_get(x, "id")) ?: "",
                       j->snap.id) != 0)
                continue;
            status = json_string_value(json_object_get(x, "status"));
            error = json_string_value(json_object_get(x, "error"));
            json_int_t cur = json_integer_value(json_object_get(x, "current-progress"));
            json_int_t tot = json_integer_value(json_object_get(x, "total-progress"));
            if (tot > 0) {
                j->snap.progress = (int)(cur * 40 / tot);
                struct koala_error *e = NULL;
                sc_snapshot_put(db, &j->snap, &e);
                error_free(e);
            }
        }
        int rc = 1;
        if (status == NULL)
            rc = error_set(err, EIO, NULL, "backup job %s vanished",
                           j->snap.id);
        else if (strcmp(status, "concluded") == 0)
            rc = error ? error_set(err, EIO, NULL, "backup: %s", error) : 0;
        json_decref(jobs);
        if (rc <= 0) {
            struct koala_error *e = NULL;
            qmp_do(j->sc, j->snap.volume_id, "job-dismiss",
                   json_pack("{s:s}", "id", j->snap.id), NULL, &e);
            error_free(e);
            return rc;
        }
        sleep_ms(100);
    }
}

/* The scratch image's map (qemu-img map): which guest ranges it holds
 * ("present": the blocks the backup copied, zeroed ones included) and
 * where their data sits in the qcow2 file, read straight from there. */
struct extent {
    uint64_t start, len, offset;
    bool present, data;
};

static int read_map(struct snap_job *j, struct extent **out, size_t *n,
                    struct koala_error **err)
{
    const char *argv[] = {j->sc->opt.qemu_img, "map", "--output=json",
                          "-f", "qcow2", j->scratch, NULL};
    _cleanup_buf_ struct buf text = {0};
    if (sc_run(argv, &text, err) < 0)
        return -1;
    json_error_t je;
    json_t *map = json_loadb(text.data ? text.data : "", text.len, 0, &je);
    if (!json_is_array(map)) {
        json_decref(map);
        return error_set(err, EIO, NULL, "qemu-img map: %s", je.text);
    }
    *n = json_array_size(map);
    *out = calloc(*n ? *n : 1, sizeof(**out));
    if (*out == NULL) {
        json_decref(map);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    size_t i;
    json_t *e;
    json_array_foreach(map, i, e) {
        struct extent *x = &(*out)[i];
        x->start = (uint64_t)json_integer_value(json_object_get(e, "start"));
        x->len = (uint64_t)json_integer_value(json_object_get(e, "length"));
        x->present = json_is_true(json_object_get(e, "present"));
        x->data = json_is_true(json_object_get(e, "data")) &&
                  json_object_get(e, "offset");
        x->offset = (uint64_t)json_integer_value(json_object_get(e, "offset"));
    }
    json_decref(map);
    return 0;
}

/* Block [off, off+len) from the scratch image into buf; *any: some of it
 * is in the image (present).  *cur: the first extent that may overlap. */
static int read_block(int fd, const struct extent *x, size_t n, size_t *cur,
                      uint64_t off, size_t len, char *buf, bool *any,
                      struct koala_error **err)
{
    memset(buf, 0, len);
    *any = false;
    while (*cur < n && x[*cur].start + x[*cur].len <= off)
        (*cur)++;
    for (size_t i = *cur; i < n && x[i].start < off + len; i++) {
        if (!x[i].present)
            continue;
        *any = true;
        if (!x[i].data)
            continue;
        uint64_t a = x[i].start > off ? x[i].start : off;
        uint64_t b = x[i].start + x[i].len < off + len ? x[i].start + x[i].len
                                                       : off + len;
        if (pread(fd, buf + (a - off), b - a,
                  (off_t)(x[i].offset + (a - x[i].start))) != (ssize_t)(b - a))
            return error_set_errno(err, "reading the snapshot's scratch image");
    }
    return 0;
}

/* The snapshot completed: its blocks referenced, the new bitmap the
 * volume's, in one transaction. */
static int commit(struct snap_job *j, struct db *db,
                  const struct sc_manifest *m, struct koala_error **err)
{
    if (db_begin(db, err) < 0)
        return -1;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->hash[i][0])
            continue;
        sqlite3_stmt *st = db_stmt(
            db, "INSERT OR IGNORE INTO manifest_blocks (snapshot_id, hash)"
                " VALUES (?, ?)", err);
        if (st == NULL)
            goto fail;
        sqlite3_bind_text(st, 1, j->snap.id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, m->hash[i], -1, SQLITE_TRANSIENT);
        int ok = sqlite3_step(st) == SQLITE_DONE;
        db_stmt_done(st);
        if (!ok) {
            db_error(db, "recording the manifest", err);
            goto fail;
        }
    }
    char bitmap[64];
    snprintf(bitmap, sizeof(bitmap), "koala-%s", j->snap.id);
    snprintf(j->snap.status, sizeof(j->snap.status), "completed");
    j->snap.progress = 100;
    if (sc_snapshot_put(db, &j->snap, err) < 0 ||
        sc_volume_set_bitmap(db, j->snap.volume_id, bitmap, j->snap.id, err) <
            0 ||
        db_commit(db, err) < 0)
        goto fail;
    return 0;
fail:
    db_rollback(db);
    return -1;
}

static int upload(struct snap_job *j, struct db *db, struct koala_error **err)
{
    struct sc *sc = j->sc;
    size_t n = sc_manifest_count(j->snap.volume_size, SC_BLOCK_SIZE);
    struct sc_manifest m, base = {0};
    if (sc_manifest_init(&m, j->snap.volume_size, SC_BLOCK_SIZE, err) < 0)
        return -1;
    struct extent *map = NULL;
    struct sc_uploader *up = NULL;
    size_t n_map = 0, cur = 0;
    char *block = malloc(SC_BLOCK_SIZE);
    int fd = open(j->scratch, O_RDONLY | O_CLOEXEC);
    int rc = -1;
    char *text = NULL;
    if (block == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    if (fd < 0) {
        error_set_errno(err, "%s", j->scratch);
        goto out;
    }
    up = sc_uploader_new(sc, UPLOADERS, &m, err);
    if (up == NULL || read_map(j, &map, &n_map, err) < 0 ||
        (!j->full && sc_manifest_load(sc, j->base, &base, err) < 0))
        goto out;
    size_t read_blocks = 0, done = 0;
    int64_t t_upload = sc_now_ms();
    j->snap.uploaded = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t off = (uint64_t)i * SC_BLOCK_SIZE;
        size_t len = j->snap.volume_size - off < SC_BLOCK_SIZE
                         ? (size_t)(j->snap.volume_size - off)
                         : SC_BLOCK_SIZE;
        bool present;
        if (read_block(fd, map, n_map, &cur, off, len, block, &present, err) <
            0)
            goto out;
        /* incremental: a block the backup did not copy is unchanged since
         * the base (a volume grown since has no base entry: zeros) */
        if (!j->full && !present) {
            if (i < base.n)
                memcpy(m.hash[i], base.hash[i], 65);
            continue;
        }
        read_blocks++;
        /* hashed, and uploaded if new, by the uploader's threads */
        if (sc_uploader_put(up, i, block, len, err) < 0)
            goto out;
        if (++done % 256 == 0) {
            j->snap.progress = 40 + (int)(i * 55 / n);
            if (sc_snapshot_put(db, &j->snap, err) < 0)
                goto out;
        }
    }
    int fin = sc_uploader_finish(up, &j->snap.uploaded, err);
    up = NULL;
    if (fin < 0)
        goto out;
    j->snap.total = 0;
    for (size_t i = 0; i < n; i++)
        if (m.hash[i][0])
            j->snap.total +=
                j->snap.volume_size - (uint64_t)i * SC_BLOCK_SIZE <
                        SC_BLOCK_SIZE
                    ? j->snap.volume_size - (uint64_t)i * SC_BLOCK_SIZE
                    : SC_BLOCK_SIZE;
    size_t mlen = 0;
    text = sc_manifest_dump(&m, j->snap.id, j->snap.volume_id, &mlen);
    char key[256], path[4200], tmp[4300];
    sc_object_key(sc, "manifests", j->snap.id, key, sizeof(key));
    sc_manifest_path(sc, j->snap.id, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (text == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    if (sc_s3_put(sc->s3, SC_BUCKET, key, text, mlen, err) < 0)
        goto out;
    FILE *f = fopen(tmp, "we");
    if (f) {
        bool ok = fwrite(text, 1, mlen, f) == mlen && fflush(f) == 0 &&
                  fsync(fileno(f)) == 0;
        fclose(f);
        if (!ok || rename(tmp, path) < 0)
            unlink(tmp); /* Walrus' copy is the truth; this is a cache */
    }
    if (commit(j, db, &m, err) < 0)
        goto out;
    log_info("%s: completed (%s of %s: %zu of %zu blocks read, %llu bytes "
             "uploaded, %llu bytes of data; backup %lld ms, hashing and "
             "uploads %lld ms)",
             j->snap.id, j->full ? "full" : "incremental", j->snap.volume_id,
             read_blocks, n, (unsigned long long)j->snap.uploaded,
             (unsigned long long)j->snap.total, (long long)j->backup_ms,
             (long long)(sc_now_ms() - t_upload));
    rc = 0;
out:
    if (up) {
        struct koala_error *e2 = NULL;
        sc_uploader_finish(up, NULL, &e2);
        error_free(e2);
    }
    free(text);
    if (fd >= 0)
        close(fd);
    free(block);
    free(map);
    sc_manifest_clear(&m);
    sc_manifest_clear(&base);
    return rc;
}

/* Under sc->lock: removes a bitmap from the volume's QSD. */
static void drop_bitmap(struct sc_active *a, const char *name)
{
    if (a == NULL || name[0] == '\0')
        return;
    struct koala_error *e = NULL;
    json_t *r = sc_qsd_qmp(a, "block-dirty-bitmap-remove",
                           json_pack("{s:s, s:s}", "node", "vol", "name", name),
                           &e);
    if (r == NULL)
        log_warn("removing bitmap %s: %s", name, error_message(e));
    json_decref(r);
    error_free(e);
}

static void snapshot_job(void *ctx)
{
    struct snap_job *j = ctx;
    struct sc *sc = j->sc;
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(sc->db, &err);
    int64_t t0 = sc_now_ms();
    int rc = db ? wait_backup(j, db, &err) : -1;
    j->backup_ms = sc_now_ms() - t0;
    char node[64];
    snprintf(node, sizeof(node), "%s", j->snap.id);
    struct koala_error *e2 = NULL;
    qmp_do(sc, j->snap.volume_id, "blockdev-del",
           json_pack("{s:s}", "node-name", node), NULL, &e2);
    error_clear(&e2);
    /* the bucket is made on first use (Walrus may start after the SC);
     * it is the koala-storage account's, so no user sees it */
    if (rc == 0)
        rc = sc_s3_make_bucket(sc->s3, SC_BUCKET, &err);
    if (rc == 0)
        rc = upload(j, db, &err);
    char new_bitmap[64];
    snprintf(new_bitmap, sizeof(new_bitmap), "koala-%s", j->snap.id);
    pthread_mutex_lock(&sc->lock);
    struct sc_active *a = sc_qsd_find(sc, j->snap.volume_id);
    /* success: the old bitmap is done with; failure: the new one is
     * dropped and the old one, which kept counting, stays */
    drop_bitmap(a, rc == 0 ? j->old_bitmap : new_bitmap);
    if (a) {
        a->users--;
        sc_qsd_release(sc, a);
    }
    pthread_mutex_unlock(&sc->lock);
    if (rc < 0) {
        log_error("%s: %s", j->snap.id, error_message(err));
        snprintf(j->snap.status, sizeof(j->snap.status), "error");
        snprintf(j->snap.message, sizeof(j->snap.message), "%s",
                 error_message(err));
        if (db)
            sc_snapshot_put(db, &j->snap, &e2);
        error_clear(&e2);
    }
    error_free(err);
    if (db)
        db_pool_put(sc->db, db);
    unlink(j->scratch);
    free(j);
}

/* ---- CreateSnapshot ---- */

static int ids(struct sc_req *r, char snap[32], char vol[32],
               struct koala_error **err)
{
    _cleanup_free_ char *s = sc_req_text(r, "snapshotId", err);
    if (s == NULL)
        return -1;
    if (!id_resource_valid(s, "snap-"))
        return error_set(err, EINVAL, "InvalidSnapshot.Malformed",
                         "Invalid id: \"%s\" (expecting \"snap-...\")", s);
    snprintf(snap, 32, "%s", s);
    _cleanup_free_ char *v = sc_req_text(r, "volumeId", err);
    if (v == NULL)
        return -1;
    if (!id_resource_valid(v, "vol-"))
        return error_set(err, EINVAL, "InvalidVolume.Malformed",
                         "Invalid id: \"%s\" (expecting \"vol-...\")", v);
    snprintf(vol, 32, "%s", v);
    return 0;
}

/* Under sc->lock: the scratch image, the transaction. */
static int start_backup(struct sc *sc, struct sc_active *a,
                        struct snap_job *j, struct koala_error **err)
{
    char size[32];
    snprintf(size, sizeof(size), "%llu",
             (unsigned long long)j->snap.volume_size);
    const char *argv[] = {sc->opt.qemu_img, "create", "-q", "-f", "qcow2",
                          j->scratch, size, NULL};
    if (sc_run(argv, NULL, err) < 0)
        return -1;
    json_t *r = sc_qsd_qmp(
        a, "blockdev-add",
        json_pack("{s:s, s:s, s:{s:s, s:s}}", "driver", "qcow2",
                  "node-name", j->snap.id, "file", "driver", "file",
                  "filename", j->scratch),
        err);
    if (r == NULL)
        return -1;
    json_decref(r);
    char bitmap[64];
    snprintf(bitmap, sizeof(bitmap), "koala-%s", j->snap.id);
    json_t *backup = json_pack(
        "{s:s, s:s, s:s, s:s, s:b, s:b}", "job-id", j->snap.id, "device",
        "vol", "target", j->snap.id, "sync", j->full ? "full" : "bitmap",
        "auto-finalize", 1, "auto-dismiss", 0);
    if (!j->full) {
        json_object_set_new(backup, "bitmap", json_string(j->old_bitmap));
        json_object_set_new(backup, "bitmap-mode", json_string("never"));
    }
    json_t *actions = json_pack(
        "[{s:s, s:{s:s, s:s, s:b, s:i}}, {s:s, s:o}]", "type",
        "block-dirty-bitmap-add", "data", "node", "vol", "name", bitmap,
        "persistent", 1, "granularity", (int)SC_BLOCK_SIZE, "type",
        "blockdev-backup", "data", backup);
    r = sc_qsd_qmp(a, "transaction", json_pack("{s:o}", "actions", actions),
                   err);
    if (r == NULL) {
        struct koala_error *e2 = NULL;
        json_decref(sc_qsd_qmp(a, "blockdev-del",
                               json_pack("{s:s}", "node-name", j->snap.id),
                               &e2));
        error_free(e2);
        return -1;
    }
    json_decref(r);
    return 0;
}

static int create_snapshot(struct sc_req *r, struct sc_snapshot *out,
                           struct koala_error **err)
{
    struct sc *sc = r->sc;
    char snap[32], vol[32];
    struct db *db = sc_req_db(r, err);
    if (db == NULL || ids(r, snap, vol, err) < 0)
        return -1;
    if (sc->s3 == NULL)
        return error_set(err, ENOTSUP, "UnsupportedOperation",
                         "this storage controller has no Walrus "
                         "(sc.walrus_endpoint)");
    int rc = sc_snapshot_get(db, snap, out, err);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return strcmp(out->volume_id, vol) == 0
                   ? 0
                   : error_set(err, EEXIST, "IdempotentParameterMismatch",
                               "Snapshot '%s' is of another volume", snap);
    struct sc_volume v;
    rc = sc_volume_get(db, vol, &v, err);
    if (rc < 0)
        return -1;
    if (rc == 1 || strcmp(v.status, "deleted") == 0)
        return error_set(err, ENOENT, "InvalidVolume.NotFound",
                         "The volume '%s' does not exist.", vol);
    if (strcmp(v.status, "available") != 0)
        return error_set(err, EINVAL, "IncorrectState",
                         "Volume '%s' is %s", vol, v.status);
    rc = sc_snapshot_pending_for(db, vol, err);
    if (rc != 0)
        return rc < 0 ? -1
                      : error_set(err, EBUSY,
                                  "SnapshotCreationPerVolumeRateExceeded",
                                  "Volume '%s' has a snapshot in progress",
                                  vol);
    struct snap_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    j->sc = sc;
    snprintf(j->scratch, sizeof(j->scratch), "%s/scratch/%s.qcow2",
             sc->opt.data_dir, snap);
    pthread_mutex_lock(&sc->lock);
    /* Checked again under the lock: the same CreateSnapshot sent twice at
     * once (the CLC's request and its retry round) makes one snapshot,
     * and both callers get it. */
    rc = sc_snapshot_get(db, snap, out, err);
    if (rc == 0 && strcmp(out->volume_id, vol) != 0)
        rc = error_set(err, EEXIST, "IdempotentParameterMismatch",
                       "Snapshot '%s' is of another volume", snap);
    if (rc <= 0) {
        pthread_mutex_unlock(&sc->lock);
        free(j);
        return rc;
    }
    rc = sc_snapshot_pending_for(db, vol, err);
    if (rc != 0) {
        pthread_mutex_unlock(&sc->lock);
        free(j);
        return rc < 0 ? -1
                      : error_set(err, EBUSY,
                                  "SnapshotCreationPerVolumeRateExceeded",
                                  "Volume '%s' has a snapshot in progress",
                                  vol);
    }
    rc = -1;
    struct sc_export e;
    int x = sc_export_get(db, vol, &e, err);
    struct sc_active *a =
        x < 0 ? NULL : sc_qsd_get(sc, db, &v, x == 0 ? e.port : 0, err);
    if (a == NULL)
        goto out;
    a->users++;
    /* The volume read again (the QSD may have dropped a bitmap left
     * inconsistent), under gc_lock: a DeleteSnapshot of its base clears
     * the base under that lock (its manifest goes), and refuses while the
     * pending row written here names the volume (catalog.c). */
    struct sc_snapshot *s = &j->snap;
    pthread_mutex_lock(&sc->gc_lock);
    int put = sc_volume_get(db, vol, &v, err);
    if (put == 1)
        put = error_set(err, ENOENT, "InvalidVolume.NotFound",
                        "The volume '%s' does not exist.", vol);
    if (put == 0) {
        snprintf(j->old_bitmap, sizeof(j->old_bitmap), "%s", v.bitmap);
        snprintf(j->base, sizeof(j->base), "%s", v.base_snapshot);
        j->full = v.bitmap[0] == '\0' || v.base_snapshot[0] == '\0';
        snprintf(s->id, sizeof(s->id), "%s", snap);
        snprintf(s->volume_id, sizeof(s->volume_id), "%s", vol);
        s->volume_size = v.size;
        snprintf(s->status, sizeof(s->status), "pending");
        s->start_ms = sc_now_ms();
        put = sc_snapshot_put(db, s, err);
    }
    pthread_mutex_unlock(&sc->gc_lock);
    if (put < 0)
        goto release;
    if (start_backup(sc, a, j, err) < 0) {
        snprintf(s->status, sizeof(s->status), "error");
        snprintf(s->message, sizeof(s->message), "%s", error_message(*err));
        struct koala_error *e2 = NULL;
        sc_snapshot_put(db, s, &e2);
        error_free(e2);
        goto release;
    }
    *out = *s;
    if (workpool_submit(sc->jobs, snapshot_job, j) < 0) {
        error_set(err, ENOMEM, NULL, "out of memory");
        goto release; /* the row stays pending: a restart marks it error */
    }
    log_info("%s: pending (%s of %s)", snap, j->full ? "full" : "incremental",
             vol);
    j = NULL;
    rc = 0;
    goto out;
release:
    a->users--;
    sc_qsd_release(sc, a);
out:
    pthread_mutex_unlock(&sc->lock);
    if (j) {
        unlink(j->scratch);
        free(j);
    }
    return rc;
}

void sc_op_create_snapshot(struct sc_req *r)
{
    struct koala_error *err = NULL;
    struct sc_snapshot s;
    if (create_snapshot(r, &s, &err) < 0)
        return sc_fail(r, err);
    struct xml_writer *w = soap_start("CreateSnapshotResponse", SC_NS);
    sc_write_snapshot(w, &s);
    sc_reply(r, w);
}
