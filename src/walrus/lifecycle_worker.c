/* lifecycle_worker.c: the thread that applies the buckets' lifecycle rules
 * (lifecycle.c) every w->opt.lifecycle_interval_s seconds.
 *
 * A pass reads each configured bucket in small batches and acts on one
 * object, version or upload at a time, each through the group commit with
 * the requests' own writes, so that no request waits for more than one
 * small transaction: expiring a current object (deleted, or a delete marker
 * in a versioned bucket), removing an expired delete marker (the only
 * version left of its key), deleting noncurrent versions (keeping the
 * NewerNoncurrentVersions newest), aborting old multipart uploads.  Each
 * action re-checks, inside its transaction, that what the scan saw is still
 * so (the same current version, still a lone delete marker), so a write
 * racing the worker is never undone; a version under Object Lock is left.
 * A kill -9 loses at most the actions not yet committed; the next pass
 * (after a restart too) finds them again.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "walrus.h"

#define LC_BATCH 200

struct lc_worker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
};

enum lc_kind {
    LC_EXPIRE_CURRENT,
    LC_REMOVE_MARKER,
    LC_EXPIRE_NONCURRENT,
    LC_ABORT_UPLOAD,
};

struct lc_job {
    enum lc_kind kind;
    const char *bucket;
    const char *key;
    const char *vid;       /* the version (or marker) to remove */
    int64_t seq;           /* LC_EXPIRE_CURRENT: the version seen */
    int64_t owner;         /* who a delete marker belongs to */
    const char *upload_id; /* LC_ABORT_UPLOAD */
};

static int lone_marker(struct db *db, const char *bucket, const char *key,
                       bool *lone, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT 1 FROM versions WHERE bucket=? AND key=? LIMIT 1", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up versions", err);
    db_stmt_done(st);
    *lone = rc == 1;
    return rc < 0 ? -1 : 0;
}

static int lc_job_run(struct db *db, void *ctx, struct koala_error **err)
{
    struct lc_job *j = ctx;
    struct version_deleted res;
    struct version_current cur;
    bool lone;
    switch (j->kind) {
    case LC_EXPIRE_CURRENT:
        if (meta_current_get(db, j->bucket, j->key, &cur, err) < 0)
            return -1;
        if (!cur.exists || cur.delete_marker || cur.seq != j->seq)
            return 0; /* written again since the scan */
        return version_delete(db, j->bucket, j->key, NULL, j->owner, false,
                              &res, err);
    case LC_REMOVE_MARKER:
        if (meta_current_get(db, j->bucket, j->key, &cur, err) < 0 ||
            lone_marker(db, j->bucket, j->key, &lone, err) < 0)
            return -1;
        if (!cur.exists || !cur.delete_marker || !lone ||
            strcmp(cur.version_id, j->vid) != 0)
            return 0;
        return version_delete(db, j->bucket, j->key, j->vid, j->owner, false,
                              &res, err);
    case LC_EXPIRE_NONCURRENT:
        return version_delete(db, j->bucket, j->key, j->vid, j->owner, false,
                              &res, err);
    case LC_ABORT_UPLOAD:
        return meta_drop_upload(db, j->upload_id, err);
    }
    return 0;
}

/* Runs one action; a refusal (Object Lock) is not a failure of the pass. */
static int act(struct walrus *w, struct lc_job *j, unsigned *done)
{
    struct koala_error *err = NULL;
    if (db_group_run(w->group, lc_job_run, j, &err) < 0) {
        bool refused = strcmp(error_code(err), "AccessDenied") == 0;
        if (!refused)
            log_warn("lifecycle %s/%s: %s", j->bucket, j->key ? j->key : "",
                     error_message(err));
        error_free(err);
        return refused ? 0 : -1;
    }
    (*done)++;
    return 0;
}

struct bucket_pass {
    struct walrus *w;
    struct db *db;
    const char *bucket;
    int64_t owner;
    const struct lc_config *c;
    int64_t now;
    unsigned done;
};

/* Expiration of current versions (and lone expired delete markers). */
static int pass_current(struct bucket_pass *p)
{
    char *after = strdup("");
    int rc = 0;
    while (rc == 0 && after) {
        sqlite3_stmt *st = db_stmt(
            p->db,
            "SELECT key, size, tags, mtime_ms, seq, delete_marker, version_id"
            " FROM objects WHERE bucket=? AND key>? ORDER BY key LIMIT 200",
            NULL);
        if (st == NULL) {
            rc = -1;
            break;
        }
        sqlite3_bind_text(st, 1, p->bucket, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, after, -1, SQLITE_TRANSIENT);
        struct {
            char *key;
            char vid[40];
            int64_t seq;
            bool marker;
        } todo[LC_BATCH];
        size_t n = 0, rows = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            rows++;
            const char *key = (const char *)sqlite3_column_text(st, 0);
            free(after);
            after = strdup(key);
            bool marker = sqlite3_column_int(st, 5) != 0;
            bool due = false;
            for (size_t i = 0; i < p->c->n && !due; i++) {
                const struct lc_rule *r = &p->c->rules[i];
                if (marker) {
                    due = r->enabled && r->exp_marker &&
                          str_has_prefix(key, r->prefix);
                    continue;
                }
                if (r->exp_days < 0 && r->exp_date_ms < 0)
                    continue;
                if (!lc_rule_matches(
                        r, key, (uint64_t)sqlite3_column_int64(st, 1),
                        (const char *)sqlite3_column_text(st, 2)))
                    continue;
                int64_t t = r->exp_days >= 0
                                ? lc_after_days(p->w,
                                                sqlite3_column_int64(st, 3),
                                                r->exp_days)
                                : r->exp_date_ms;
                due = t <= p->now;
            }
            if (due && (todo[n].key = strdup(key)) != NULL) {
                todo[n].seq = sqlite3_column_int64(st, 4);
                todo[n].marker = marker;
                snprintf(todo[n].vid, sizeof(todo[n].vid), "%s",
                         sqlite3_column_text(st, 6));
                n++;
            }
        }
        db_stmt_done(st);
        for (size_t i = 0; i < n; i++) {
            struct lc_job j = {
                .kind = todo[i].marker ? LC_REMOVE_MARKER : LC_EXPIRE_CURRENT,
                .bucket = p->bucket,
                .key = todo[i].key,
                .vid = todo[i].vid,
                .seq = todo[i].seq,
                .owner = p->owner,
            };
            if (rc == 0)
                rc = act(p->w, &j, &p->done);
            free(todo[i].key);
        }
        if (rows < LC_BATCH)
            break;
    }
    free(after);
    return rc;
}

/* Noncurrent versions.  A version became noncurrent when the next newer
 * one was written: the newest noncurrent one when the current one was,
 * each older one when the one above it was.  Rows come newest first. */
static int pass_noncurrent(struct bucket_pass *p)
{
    bool any = false;
    for (size_t i = 0; i < p->c->n; i++)
        any |= p->c->rules[i].enabled && p->c->rules[i].nc_days > 0;
    if (!any)
        return 0;
    sqlite3_stmt *st = db_stmt(
        p->db,
        "SELECT v.key, v.version_id, v.size, v.tags, v.mtime_ms,"
        " (SELECT o.mtime_ms FROM objects o WHERE o.bucket=v.bucket AND"
        " o.key=v.key) FROM versions v WHERE v.bucket=?"
        " ORDER BY v.key, v.seq DESC",
        NULL);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, p->bucket, -1, SQLITE_STATIC);
    /* Collected first: the deletions change the table being read. */
    struct item {
        char *key;
        char vid[40];
    } *todo = NULL;
    size_t n = 0, cap = 0;
    char *key_now = NULL;
    int64_t rank = 0, newer_mtime = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (key_now == NULL || strcmp(key_now, key) != 0) {
            free(key_now);
            key_now = strdup(key);
            rank = 0;
            newer_mtime = sqlite3_column_int64(st, 5); /* the current's */
        }
        rank++;
        int64_t since = newer_mtime;
        newer_mtime = sqlite3_column_int64(st, 4);
        bool due = false;
        for (size_t i = 0; i < p->c->n && !due; i++) {
            const struct lc_rule *r = &p->c->rules[i];
            due = r->nc_days > 0 &&
                  lc_rule_matches(r, key,
                                  (uint64_t)sqlite3_column_int64(st, 2),
                                  (const char *)sqlite3_column_text(st, 3)) &&
                  (r->nc_newer < 0 || rank > r->nc_newer) &&
                  lc_after_days(p->w, since, r->nc_days) <= p->now;
        }
        if (!due)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct item *t = realloc(todo, ncap * sizeof(*t));
            if (t == NULL)
                break;
            todo = t;
            cap = ncap;
        }
        if ((todo[n].key = strdup(key)) != NULL) {
            snprintf(todo[n].vid, sizeof(todo[n].vid), "%s",
                     sqlite3_column_text(st, 1));
            n++;
        }
    }
    db_stmt_done(st);
    free(key_now);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        struct lc_job j = {.kind = LC_EXPIRE_NONCURRENT,
                           .bucket = p->bucket,
                           .key = todo[i].key,
                           .vid = todo[i].vid,
                           .owner = p->owner};
        if (rc == 0)
            rc = act(p->w, &j, &p->done);
        free(todo[i].key);
    }
    free(todo);
    return rc;
}

static int pass_uploads(struct bucket_pass *p)
{
    sqlite3_stmt *st = db_stmt(p->db,
                               "SELECT upload_id, key, initiated_ms FROM"
                               " uploads WHERE bucket=?",
                               NULL);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, p->bucket, -1, SQLITE_STATIC);
    struct buf ids = {0};
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 1);
        for (size_t i = 0; i < p->c->n; i++) {
            const struct lc_rule *r = &p->c->rules[i];
            if (r->enabled && r->abort_days > 0 &&
                str_has_prefix(key, r->prefix) &&
                lc_after_days(p->w, sqlite3_column_int64(st, 2),
                              r->abort_days) <= p->now) {
                buf_printf(&ids, "%s\n", sqlite3_column_text(st, 0));
                break;
            }
        }
    }
    db_stmt_done(st);
    int rc = 0;
    char *save = NULL;
    for (char *id = ids.data ? strtok_r(ids.data, "\n", &save) : NULL;
         id && rc == 0; id = strtok_r(NULL, "\n", &save)) {
        struct lc_job j = {.kind = LC_ABORT_UPLOAD,
                           .bucket = p->bucket,
                           .upload_id = id};
        rc = act(p->w, &j, &p->done);
    }
    buf_free(&ids);
    return rc;
}

int lc_run_once(struct walrus *w, struct koala_error **err)
{
    struct db *db = db_pool_get(w->db, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = db_stmt(
        db, "SELECT name, owner FROM buckets WHERE lifecycle <> ''", err);
    struct buf names = {0};
    while (st && sqlite3_step(st) == SQLITE_ROW)
        buf_printf(&names, "%s %lld\n", sqlite3_column_text(st, 0),
                   (long long)sqlite3_column_int64(st, 1));
    if (st)
        db_stmt_done(st);
    int rc = st ? 0 : -1;
    char *save = NULL;
    unsigned total = 0;
    for (char *line = names.data ? strtok_r(names.data, "\n", &save) : NULL;
         line && rc == 0; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        *sp = '\0';
        struct lc_config c;
        struct koala_error *e = NULL;
        if (lc_load(db, line, &c, &e) != 0) {
            error_free(e);
            continue;
        }
        struct bucket_pass p = {.w = w,
                                .db = db,
                                .bucket = line,
                                .owner = strtoll(sp + 1, NULL, 10),
                                .c = &c,
                                .now = time_now_ms()};
        if (pass_current(&p) < 0 || pass_noncurrent(&p) < 0 ||
            pass_uploads(&p) < 0)
            log_warn("lifecycle of %s: a pass stopped early", line);
        total += p.done;
        lc_config_free(&c);
    }
    buf_free(&names);
    db_pool_put(w->db, db);
    if (total)
        log_info("lifecycle: %u actions", total);
    return rc;
}

static void *worker_main(void *arg)
{
    struct walrus *w = arg;
    struct lc_worker *k = w->lifecycle;
    pthread_mutex_lock(&k->lock);
    while (!k->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ms = (int64_t)(w->opt.lifecycle_interval_s * 1000.0);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!k->stop &&
               pthread_cond_timedwait(&k->cond, &k->lock, &until) == 0)
            ;
        if (k->stop)
            break;
        pthread_mutex_unlock(&k->lock);
        struct koala_error *err = NULL;
        if (lc_run_once(w, &err) < 0) {
            log_warn("lifecycle pass: %s", error_message(err));
            error_free(err);
        }
        pthread_mutex_lock(&k->lock);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

int lc_worker_start(struct walrus *w, struct koala_error **err)
{
    struct lc_worker *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    w->lifecycle = k;
    if (pthread_create(&k->thread, NULL, worker_main, w) != 0) {
        w->lifecycle = NULL;
        pthread_mutex_destroy(&k->lock);
        pthread_cond_destroy(&k->cond);
        free(k);
        return error_set(err, EAGAIN, NULL, "cannot start lifecycle worker");
    }
    return 0;
}

void lc_worker_stop(struct walrus *w)
{
    struct lc_worker *k = w->lifecycle;
    if (k == NULL)
        return;
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_mutex_destroy(&k->lock);
    pthread_cond_destroy(&k->cond);
    free(k);
    w->lifecycle = NULL;
}
