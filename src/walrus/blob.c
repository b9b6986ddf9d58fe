/* blob.c: object data on the local file system.
 *
 * DESIGN: every object version and every multipart part is an immutable
 * "blob" named by a random id.  A blob of an object of at most
 * WALRUS_INLINE_MAX bytes lives in the database (table inline_blobs), written
 * in the same transaction as the object's row: a small PUT costs one WAL
 * fsync, a small GET no file at all.  Larger ones (and every part) are files,
 * DATA/blobs/<2 hex>/<id>.  The writer buffers the first MiB in memory and
 * creates the file only when it must.  Writing a file blob:
 *   1. the body streams into DATA/tmp/<id> (never held in memory);
 *   2. fsync of the file;                          (data durable)
 *   3. the metadata transaction that makes it the object's current version
 *      commits, marking the replaced blob dead;     (visible, durable)
 *   4. rename into DATA/blobs/<xx>/<id>, fsync of that directory;
 *   5. only then is the request acknowledged.
 * A crash before 3 leaves a temporary file nobody references: removed at
 * start.  A crash between 3 and 4 leaves a referenced temporary file: moved
 * into place at start (readers meanwhile fall back to the tmp path).  Dead
 * blobs are removed by a GC thread some seconds after they died (a writer
 * that raced its own replacement may still be renaming), and at start.
 * Files are never modified after step 2, so readers need no locks.
 */
#define LOG_MODULE "walrus"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "id.h"
#include "log.h"
#include "walrus.h"

#define BLOB_WRITE_BUFFER (1024 * 1024)
#define BLOB_WRITEBACK_STEP (8u * 1024 * 1024)
#define BLOB_GC_DELAY_MS 30000
#define BLOB_GC_PERIOD_S 2

struct blob_gc {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
};

static int mkdir_p(const char *path, struct koala_error **err)
{
    if (mkdir(path, 0750) < 0 && errno != EEXIST)
        return error_set_errno(err, "mkdir %s", path);
    return 0;
}

static int fsync_dir(const char *path, struct koala_error **err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return error_set_errno(err, "open %s", path);
    int rc = fsync(fd);
    close(fd);
    if (rc < 0)
        return error_set_errno(err, "fsync %s", path);
    return 0;
}

int blob_dirs_init(struct walrus *w, struct koala_error **err)
{
    if (mkdir_p(w->data_dir, err) < 0 || mkdir_p(w->tmp_dir, err) < 0 ||
        mkdir_p(w->blob_dir, err) < 0)
        return -1;
    char path[4096];
    for (int i = 0; i < 256; i++) {
        snprintf(path, sizeof(path), "%s/%02x", w->blob_dir, i);
        if (mkdir_p(path, err) < 0)
            return -1;
    }
    return fsync_dir(w->blob_dir, err) < 0 ? -1 : fsync_dir(w->data_dir, err);
}

static void blob_path(const struct walrus *w, const char *id, char *out,
                      size_t size)
{
    snprintf(out, size, "%s/%.2s/%s", w->blob_dir, id, id);
}

int blob_writer_open(struct walrus *w, struct blob_writer *bw,
                     bool allow_inline, struct koala_error **err)
{
    memset(bw, 0, sizeof(*bw));
    bw->fd = -1;
    bw->allow_inline = allow_inline;
    if (id_random_hex(bw->id, 16) < 0)
        return error_set_errno(err, "getrandom");
    if (asprintf(&bw->tmp_path, "%s/%s", w->tmp_dir, bw->id) < 0) {
        bw->tmp_path = NULL;
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    return 0;
}

/* The file is created when the first bytes must go to disk: an object
 * small enough to live in the database never gets one. */
static int ensure_file(struct blob_writer *bw, struct koala_error **err)
{
    if (bw->fd >= 0)
        return 0;
    bw->fd = open(bw->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (bw->fd < 0)
        return error_set_errno(err, "creating %s", bw->tmp_path);
    return 0;
}

static int write_all(int fd, const char *p, size_t len,
                     struct koala_error **err)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return error_set_errno(err, "write");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes to the file, and starts the disk writing what has accumulated
 * (without waiting for it): the fsync at the end of a large upload then
 * finds most of the data already on disk, instead of all of it to write. */
static int write_out(struct blob_writer *bw, const char *p, size_t len,
                     struct koala_error **err)
{
    if (ensure_file(bw, err) < 0 || write_all(bw->fd, p, len, err) < 0)
        return -1;
    bw->written += len;
    if (bw->written - bw->writeback >= BLOB_WRITEBACK_STEP) {
        /* Advisory: a failure here only loses the overlap. */
        sync_file_range(bw->fd, (off_t)bw->writeback,
                        (off_t)(bw->written - bw->writeback),
                        SYNC_FILE_RANGE_WRITE);
        bw->writeback = bw->written;
    }
    return 0;
}

static int flush(struct blob_writer *bw, struct koala_error **err)
{
    if (bw->pending.len == 0)
        return 0;
    int rc = write_out(bw, bw->pending.data, bw->pending.len, err);
    buf_reset(&bw->pending);
    return rc;
}

int blob_writer_write(struct blob_writer *bw, const void *data, size_t len,
                      struct koala_error **err)
{
    bw->size += len;
    if (len >= BLOB_WRITE_BUFFER) {
        if (flush(bw, err) < 0)
            return -1;
        return write_out(bw, data, len, err);
    }
    if (bw->pending.len + len > BLOB_WRITE_BUFFER && flush(bw, err) < 0)
        return -1;
    if (bw->pending.cap == 0 &&
        buf_reserve(&bw->pending, BLOB_WRITE_BUFFER) < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return buf_append(&bw->pending, data, len) < 0
               ? error_set(err, ENOMEM, NULL, "out of memory")
               : 0;
}

int blob_writer_append_blob(struct walrus *w, struct blob_writer *bw,
                            const char *src_id, uint64_t len,
                            struct koala_error **err)
{
    if (flush(bw, err) < 0 || ensure_file(bw, err) < 0)
        return -1;
    int fd = blob_open(w, src_id, err);
    if (fd < 0)
        return -1;
    loff_t off = 0;
    uint64_t left = len;
    while (left > 0) {
        ssize_t n = copy_file_range(fd, &off, bw->fd, NULL, left, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int rc =
                n < 0 ? error_set_errno(err, "copying blob %s", src_id)
                      : error_set(err, EIO, NULL, "blob %s is short", src_id);
            close(fd);
            return rc;
        }
        left -= (uint64_t)n;
    }
    close(fd);
    bw->size += len;
    bw->written += len;
    return 0;
}

int blob_writer_sync(struct blob_writer *bw, struct koala_error **err)
{
    if (bw->fd < 0 && bw->allow_inline && bw->size <= WALRUS_INLINE_MAX) {
        /* Kept in bw->pending: the metadata commit makes it durable. */
        bw->is_inline = true;
        return 0;
    }
    if (flush(bw, err) < 0 || ensure_file(bw, err) < 0)
        return -1;
    buf_free(&bw->pending);
    if (fdatasync(bw->fd) < 0)
        return error_set_errno(err, "fsync %s", bw->tmp_path);
    return 0;
}

int blob_writer_publish(struct walrus *w, struct blob_writer *bw,
                        struct koala_error **err)
{
    if (bw->is_inline) {
        free(bw->tmp_path); /* there is no file */
        bw->tmp_path = NULL;
        return 0;
    }
    char dst[4096], dir[4096];
    blob_path(w, bw->id, dst, sizeof(dst));
    snprintf(dir, sizeof(dir), "%s/%.2s", w->blob_dir, bw->id);
    if (rename(bw->tmp_path, dst) < 0)
        return error_set_errno(err, "rename %s", bw->tmp_path);
    free(bw->tmp_path);
    bw->tmp_path = NULL; /* published: abort must not remove it */
    if (bw->fd >= 0)
        close(bw->fd);
    bw->fd = -1;
    return fsync_dir(dir, err);
}

void blob_writer_abort(struct blob_writer *bw)
{
    if (bw->fd >= 0)
        close(bw->fd);
    bw->fd = -1;
    if (bw->tmp_path) {
        unlink(bw->tmp_path);
        free(bw->tmp_path);
        bw->tmp_path = NULL;
    }
    buf_free(&bw->pending);
}

int blob_open(struct walrus *w, const char *id, struct koala_error **err)
{
    char path[4096];
    blob_path(w, id, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        /* Committed but not yet renamed (see DESIGN). */
        snprintf(path, sizeof(path), "%s/%s", w->tmp_dir, id);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return error_set_errno(err, "opening blob %s", id);
    return fd;
}

int blob_mark_dead(struct db *db, const char *id, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "INSERT OR IGNORE INTO dead_blobs(blob, died_ms) VALUES(?,?)", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, time_now_ms());
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, "marking blob dead", err);
}

static bool blob_referenced(struct db *db, const char *id,
                            struct koala_error **err, int *rc_out)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT 1 FROM objects WHERE blob=?1"
                " UNION ALL SELECT 1 FROM versions WHERE blob=?1"
                " UNION ALL SELECT 1 FROM parts WHERE blob=?1 LIMIT 1",
                err);
    if (st == NULL) {
        *rc_out = -1;
        return false;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    *rc_out = (rc == SQLITE_ROW || rc == SQLITE_DONE)
                  ? 0
                  : db_error(db, "checking blob", err);
    return rc == SQLITE_ROW;
}

static void remove_blob_files(struct walrus *w, const char *id)
{
    char path[4096];
    blob_path(w, id, path, sizeof(path));
    unlink(path);
    snprintf(path, sizeof(path), "%s/%s", w->tmp_dir, id);
    unlink(path);
}

/* Removes dead blobs that died before `before_ms`; returns how many. */
static int collect(struct walrus *w, struct db *db, int64_t before_ms,
                   struct koala_error **err)
{
    char ids[256][40];
    int n = 0;
    sqlite3_stmt *st = db_stmt(
        db, "SELECT blob FROM dead_blobs WHERE died_ms < ? LIMIT 256", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, before_ms);
    while (n < 256 && sqlite3_step(st) == SQLITE_ROW)
        snprintf(ids[n++], 40, "%s", sqlite3_column_text(st, 0));
    db_stmt_done(st);
    if (n == 0)
        return 0;
    for (int i = 0; i < n; i++)
        remove_blob_files(w, ids[i]);
    if (db_begin(db, err) < 0)
        return -1;
    st = db_stmt(db, "DELETE FROM dead_blobs WHERE blob=?", err);
    if (st == NULL) {
        db_rollback(db);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    db_stmt_done(st);
    return db_commit(db, err) < 0 ? -1 : n;
}

int blob_recover(struct walrus *w, struct koala_error **err)
{
    struct db *db = db_pool_get(w->db, err);
    if (db == NULL)
        return -1;
    int rc = 0, moved = 0, removed = 0;
    DIR *d = opendir(w->tmp_dir);
    if (d == NULL) {
        db_pool_put(w->db, db);
        return error_set_errno(err, "opendir %s", w->tmp_dir);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && rc == 0) {
        if (e->d_name[0] == '.')
            continue;
        char src[4096], dst[4096];
        snprintf(src, sizeof(src), "%s/%s", w->tmp_dir, e->d_name);
        if (blob_referenced(db, e->d_name, err, &rc)) {
            blob_path(w, e->d_name, dst, sizeof(dst));
            if (rename(src, dst) < 0)
                rc = error_set_errno(err, "rename %s", src);
            moved++;
        } else if (rc == 0) {
            unlink(src);
            removed++;
        }
    }
    closedir(d);
    if (rc == 0 && moved)
        for (int i = 0; i < 256 && rc == 0; i++) {
            char dir[4096];
            snprintf(dir, sizeof(dir), "%s/%02x", w->blob_dir, i);
            rc = fsync_dir(dir, err);
        }
    if (rc == 0)
        rc = fsync_dir(w->tmp_dir, err);
    int n;
    while (rc == 0 && (n = collect(w, db, INT64_MAX, err)) > 0)
        ;
    if (rc == 0 && n < 0)
        rc = -1;
    db_pool_put(w->db, db);
    if (rc == 0 && (moved || removed))
        log_info("recovery: %d committed blobs moved into place, %d unfinished "
                 "uploads removed",
                 moved, removed);
    return rc;
}

static void *gc_main(void *arg)
{
    struct walrus *w = arg;
    struct blob_gc *gc = w->gc;
    pthread_mutex_lock(&gc->lock);
    while (!gc->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += BLOB_GC_PERIOD_S;
        pthread_cond_timedwait(&gc->cond, &gc->lock, &until);
        if (gc->stop)
            break;
        pthread_mutex_unlock(&gc->lock);
        struct koala_error *err = NULL;
        struct db *db = db_pool_get(w->db, &err);
        if (db) {
            while (collect(w, db, time_now_ms() - BLOB_GC_DELAY_MS, &err) ==
                   256)
                ;
            db_pool_put(w->db, db);
        }
        if (err) {
            log_warn("blob gc: %s", error_message(err));
            error_free(err);
        }
        pthread_mutex_lock(&gc->lock);
    }
    pthread_mutex_unlock(&gc->lock);
    return NULL;
}

int blob_gc_start(struct walrus *w, struct koala_error **err)
{
    struct blob_gc *gc = calloc(1, sizeof(*gc));
    if (gc == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    pthread_mutex_init(&gc->lock, NULL);
    pthread_cond_init(&gc->cond, NULL);
    w->gc = gc;
    if (pthread_create(&gc->thread, NULL, gc_main, w) != 0) {
        w->gc = NULL;
        free(gc);
        return error_set(err, EAGAIN, NULL, "cannot start blob gc thread");
    }
    return 0;
}

void blob_gc_stop(struct walrus *w)
{
    struct blob_gc *gc = w->gc;
    if (gc == NULL)
        return;
    pthread_mutex_lock(&gc->lock);
    gc->stop = true;
    pthread_cond_signal(&gc->cond);
    pthread_mutex_unlock(&gc->lock);
    pthread_join(gc->thread, NULL);
    pthread_mutex_destroy(&gc->lock);
    pthread_cond_destroy(&gc->cond);
    free(gc);
    w->gc = NULL;
}
