/* state.c: koala-sc's database (SQLite, WAL): volumes, exports,
 * snapshots, and the snapshot blocks stored in Walrus with the manifests
 * that use them (their reference counts).  Rows are written before the
 * work they describe starts, so a restarted SC knows what was under way
 * (sc_recover). */
#define LOG_MODULE "sc"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sc.h"

const char *const sc_migrations[] = {
    "CREATE TABLE volumes ("
    " id TEXT PRIMARY KEY, size INTEGER NOT NULL, status TEXT NOT NULL,"
    " snapshot_id TEXT NOT NULL DEFAULT '', progress INTEGER NOT NULL"
    " DEFAULT 0, create_ms INTEGER NOT NULL, message TEXT NOT NULL"
    " DEFAULT '', bitmap TEXT NOT NULL DEFAULT '', base_snapshot TEXT NOT"
    " NULL DEFAULT '');"
    "CREATE TABLE exports ("
    " volume_id TEXT PRIMARY KEY REFERENCES volumes(id), node TEXT NOT NULL,"
    " port INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE snapshots ("
    " id TEXT PRIMARY KEY, volume_id TEXT NOT NULL, volume_size INTEGER NOT"
    " NULL, status TEXT NOT NULL, progress INTEGER NOT NULL DEFAULT 0,"
    " start_ms INTEGER NOT NULL, uploaded INTEGER NOT NULL DEFAULT 0,"
    " total INTEGER NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '');"
    /* blocks in Walrus (ZONE/blocks/HASH), whether or not a manifest
     * uses them yet: a block uploaded by a snapshot that then failed is
     * not uploaded again. */
    "CREATE TABLE blocks (hash TEXT PRIMARY KEY, size INTEGER NOT NULL);"
    /* which completed snapshot uses which block: the reference counts. */
    "CREATE TABLE manifest_blocks (snapshot_id TEXT NOT NULL, hash TEXT NOT"
    " NULL, PRIMARY KEY (snapshot_id, hash)) WITHOUT ROWID;"
    "CREATE INDEX manifest_blocks_hash ON manifest_blocks(hash);",
    /* a volume filled from another zone's snapshot reads that zone's
     * manifest and blocks (restore.c) */
    "ALTER TABLE volumes ADD COLUMN snapshot_zone TEXT NOT NULL DEFAULT '';",
};
const size_t sc_n_migrations = ARRAY_SIZE(sc_migrations);

static void col(char *dst, size_t size, sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, size, "%s", t ? (const char *)t : "");
}

#define VOLUME_COLS                                                            \
    "id, size, status, snapshot_id, progress, create_ms, message, bitmap,"     \
    " base_snapshot, snapshot_zone"

static void volume_row(sqlite3_stmt *st, struct sc_volume *v)
{
    memset(v, 0, sizeof(*v));
    col(v->id, sizeof(v->id), st, 0);
    v->size = (uint64_t)sqlite3_column_int64(st, 1);
    col(v->status, sizeof(v->status), st, 2);
    col(v->snapshot_id, sizeof(v->snapshot_id), st, 3);
    v->progress = sqlite3_column_int(st, 4);
    v->create_ms = sqlite3_column_int64(st, 5);
    col(v->message, sizeof(v->message), st, 6);
    col(v->bitmap, sizeof(v->bitmap), st, 7);
    col(v->base_snapshot, sizeof(v->base_snapshot), st, 8);
    col(v->snapshot_zone, sizeof(v->snapshot_zone), st, 9);
}

int sc_volume_get(struct db *db, const char *id, struct sc_volume *v,
                  struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT " VOLUME_COLS " FROM volumes WHERE id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = db_step_row(db, st, "reading a volume", err);
    if (rc == 0)
        volume_row(st, v);
    db_stmt_done(st);
    return rc;
}

int sc_volume_put(struct db *db, const struct sc_volume *v,
                  struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "INSERT OR REPLACE INTO volumes (" VOLUME_COLS ")"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, v->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)v->size);
    sqlite3_bind_text(st, 3, v->status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, v->snapshot_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, v->progress);
    sqlite3_bind_int64(st, 6, v->create_ms);
    sqlite3_bind_text(st, 7, v->message, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 8, v->bitmap, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 9, v->base_snapshot, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 10, v->snapshot_zone, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE
                 ? 0
                 : db_error(db, "writing a volume", err);
    db_stmt_done(st);
    return rc;
}

int sc_volume_set_status(struct db *db, const char *id, const char *status,
                         int progress, const char *message,
                         struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "UPDATE volumes SET status = ?, progress = ?, message = ?"
            " WHERE id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, progress);
    sqlite3_bind_text(st, 3, message ? message : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE
                 ? 0
                 : db_error(db, "updating a volume", err);
    db_stmt_done(st);
    return rc;
}

int sc_volume_set_bitmap(struct db *db, const char *id, const char *bitmap,
                         const char *base, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "UPDATE volumes SET bitmap = ?, base_snapshot = ? WHERE id = ?",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bitmap ? bitmap : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, base ? base : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE
                 ? 0
                 : db_error(db, "updating a volume", err);
    db_stmt_done(st);
    return rc;
}

int sc_volume_usage(struct db *db, uint64_t *bytes, int64_t *count,
                    struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT coalesce(sum(size), 0), count(*) FROM volumes"
            " WHERE status != 'deleted'", err);
    if (st == NULL)
        return -1;
    int rc = db_step_row(db, st, "summing volumes", err);
    if (rc == 0) {
        *bytes = (uint64_t)sqlite3_column_int64(st, 0);
        *count = sqlite3_column_int64(st, 1);
    }
    db_stmt_done(st);
    return rc < 0 ? -1 : 0;
}

int sc_volumes_each(struct db *db,
                    int (*fn)(void *ctx, const struct sc_volume *v), void *ctx,
                    struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT " VOLUME_COLS " FROM volumes ORDER BY id", err);
    if (st == NULL)
        return -1;
    int rc = 0, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct sc_volume v;
        volume_row(st, &v);
        if ((rc = fn(ctx, &v)) != 0)
            break;
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = db_error(db, "listing volumes", err);
    db_stmt_done(st);
    return rc;
}

int sc_export_get(struct db *db, const char *volume_id, struct sc_export *e,
                  struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT volume_id, node, port FROM exports WHERE volume_id = ?",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, volume_id, -1, SQLITE_TRANSIENT);
    int rc = db_step_row(db, st, "reading an export", err);
    if (rc == 0) {
        col(e->volume_id, sizeof(e->volume_id), st, 0);
        col(e->node, sizeof(e->node), st, 1);
        e->port = sqlite3_column_int(st, 2);
    }
    db_stmt_done(st);
    return rc;
}

int sc_export_put(struct db *db, const struct sc_export *e,
                  struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "INSERT OR REPLACE INTO exports (volume_id, node, port)"
            " VALUES (?, ?, ?)", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, e->volume_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, e->node, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, e->port);
    int rc = sqlite3_step(st) == SQLITE_DONE
                 ? 0
                 : db_error(db, "writing an export", err);
    db_stmt_done(st);
    return rc;
}

int sc_export_delete(struct db *db, const char *volume_id,
                     struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "DELETE FROM exports WHERE volume_id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, volume_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE
                 ? 0
                 : db_error(db, "removing an export", err);
    db_stmt_done(st);
    return rc;
}

int sc_exports_each(struct db *db,
                    int (*fn)(void *ctx, const struct sc_export *e), void *ctx,
                    struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT volume_id, node, port FROM exports ORDER BY volume_id",
        err);
    if (st == NULL)
        return -1;
    int rc = 0, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct sc_export e;
        col(e.volume_id, sizeof(e.volume_id), st, 0);
        col(e.node, sizeof(e.node), st, 1);
        e.port = sqlite3_column_int(st, 2);
        if ((rc = fn(ctx, &e)) != 0)
            break;
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = db_error(db, "listing exports", err);
    db_stmt_done(st);
    return rc;
}

#define SNAPSHOT_COLS                                                          \
    "id, volume_id, volume_size, status, progress, start_ms, uploaded,"        \
    " total, message"

static void snapshot_row(sqlite3_stmt *st, struct sc_snapshot *s)
{
    memset(s, 0, sizeof(*s));
    col(s->id, sizeof(s->id), st, 0);
    col(s->volume_id, sizeof(s->volume_id), st, 1);
    s->volume_size = (uint64_t)sqlite3_column_int64(st, 2);
    col(s->status, sizeof(s->status), st, 3);
    s->progress = sqlite3_column_int(st, 4);
    s->start_ms = sqlite3_column_int64(st, 5);
    s->uploaded = (uint64_t)sqlite3_column_int64(st, 6);
    s->total = (uint64_t)sqlite3_column_int64(st, 7);
    col(s->message, sizeof(s->message), st, 8);
}

int sc_snapshot_get(struct db *db, const char *id, struct sc_snapshot *s,
                    struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT " SNAPSHOT_COLS " FROM snapshots WHERE id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = db_step_row(db, st, "reading a snapshot", err);
    if (rc == 0)
        snapshot_row(st, s);
    db_stmt_done(st);
    return rc;
}

int sc_snapshot_put(struct db *db, const struct sc_snapshot *s,
                    struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "INSERT OR REPLACE INTO snapshots (" SNAPSHOT_COLS ")"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, s->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, s->volume_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)s->volume_size);
    sqlite3_bind_text(st, 4, s->status, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, s->progress);
    sqlite3_bind_int64(st, 6, s->start_ms);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)s->uploaded);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)s->total);
    sqlite3_bind_text(st, 9, s->message, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st) == SQLITE_DONE
                 ? 0
                 : db_error(db, "writing a snapshot", err);
    db_stmt_done(st);
    return rc;
}

int sc_snapshots_each(struct db *db,
                      int (*fn)(void *ctx, const struct sc_snapshot *s),
                      void *ctx, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT " SNAPSHOT_COLS " FROM snapshots ORDER BY id", err);
    if (st == NULL)
        return -1;
    int rc = 0, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        struct sc_snapshot snap;
        snapshot_row(st, &snap);
        if ((rc = fn(ctx, &snap)) != 0)
            break;
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = db_error(db, "listing snapshots", err);
    db_stmt_done(st);
    return rc;
}

int sc_snapshot_pending_for(struct db *db, const char *volume_id,
                            struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "SELECT 1 FROM snapshots WHERE volume_id = ? AND"
            " status = 'pending'", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, volume_id, -1, SQLITE_TRANSIENT);
    int rc = db_step_row(db, st, "reading snapshots", err);
    db_stmt_done(st);
    return rc < 0 ? -1 : rc == 0 ? 1 : 0;
}

int sc_count(struct db *db, const char *sql, int64_t *n,
             struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    int rc = db_step_row(db, st, "counting", err);
    *n = rc == 0 ? sqlite3_column_int64(st, 0) : 0;
    db_stmt_done(st);
    return rc < 0 ? -1 : 0;
}

int sc_block_known(struct db *db, const char *hash, bool *known,
                       struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT 1 FROM blocks WHERE hash = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_TRANSIENT);
    int rc = db_step_row(db, st, "reading blocks", err);
    db_stmt_done(st);
    *known = rc == 0;
    return rc < 0 ? -1 : 0;
}

int sc_block_stored(struct db *db, const char *hash, size_t len,
                        struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db, "INSERT OR IGNORE INTO blocks (hash, size) VALUES (?, ?)", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)len);
    int rc = sqlite3_step(st) == SQLITE_DONE
                 ? 0
                 : db_error(db, "recording a block", err);
    db_stmt_done(st);
    return rc;
}
