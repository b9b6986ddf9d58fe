/* catalog.c: the snapshots as the CLC sees them: DescribeSnapshots, their
 * records, and DeleteSnapshot, which removes a manifest and then the
 * blocks no other snapshot uses (the reference counts of snapshot.c),
 * only while no snapshot is pending and under sc->gc_lock: a pending one
 * may be about to use a block it found stored. */
#define LOG_MODULE "sc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "id.h"
#include "log.h"
#include "s3.h"
#include "sc.h"
#include "soap.h"

void sc_write_snapshot(struct xml_writer *w, const struct sc_snapshot *s)
{
    xml_start(w, "snapshot");
    xml_text_element(w, "snapshotId", s->id);
    xml_text_element(w, "volumeId", s->volume_id);
    xml_u64_element(w, "volumeSizeBytes", s->volume_size);
    xml_text_element(w, "status", s->status);
    xml_text_elementf(w, "progress", "%d", s->progress);
    sc_write_time(w, "startTime", s->start_ms);
    xml_u64_element(w, "uploadedBytes", s->uploaded);
    xml_u64_element(w, "totalBytes", s->total);
    if (s->message[0])
        xml_text_element(w, "statusMessage", s->message);
    xml_end(w);
}


static int snapshot_id_arg(struct sc_req *r, char snap[32],
                           struct koala_error **err)
{
    _cleanup_free_ char *s = sc_req_text(r, "snapshotId", err);
    if (s == NULL)
        return -1;
    if (!id_resource_valid(s, "snap-"))
        return error_set(err, EINVAL, "InvalidSnapshot.Malformed",
                         "Invalid id: \"%s\" (expecting \"snap-...\")", s);
    snprintf(snap, 32, "%s", s);
    return 0;
}

/* ---- DeleteSnapshot ---- */

/* Deletes from Walrus every block no manifest uses, unless a snapshot is
 * pending (see atop).  Under sc->gc_lock. */
static int collect_blocks(struct sc *sc, struct db *db,
                          struct koala_error **err)
{
    int64_t pending;
    if (sc_count(db, "SELECT count(*) FROM snapshots WHERE status = 'pending'",
                 &pending, err) < 0)
        return -1;
    if (pending)
        return 0;
    for (;;) {
        sqlite3_stmt *st = db_stmt(
            db, "SELECT hash FROM blocks WHERE hash NOT IN"
                " (SELECT hash FROM manifest_blocks) LIMIT 1", err);
        if (st == NULL)
            return -1;
        int rc = db_step_row(db, st, "finding unused blocks", err);
        char hash[65] = "";
        if (rc == 0)
            snprintf(hash, sizeof(hash), "%s",
                     (const char *)sqlite3_column_text(st, 0));
        db_stmt_done(st);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        char key[256];
        sc_object_key(sc, "blocks", hash, key, sizeof(key));
        if (sc_s3_delete(sc->s3, SC_BUCKET, key, err) < 0)
            return -1;
        st = db_stmt(db, "DELETE FROM blocks WHERE hash = ?", err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, hash, -1, SQLITE_TRANSIENT);
        int ok = sqlite3_step(st) == SQLITE_DONE;
        db_stmt_done(st);
        if (!ok)
            return db_error(db, "forgetting a block", err);
    }
}

static int delete_snapshot(struct sc_req *r, struct koala_error **err)
{
    struct sc *sc = r->sc;
    char snap[32];
    struct db *db = sc_req_db(r, err);
    if (db == NULL || snapshot_id_arg(r, snap, err) < 0)
        return -1;
    struct sc_snapshot s;
    int rc = sc_snapshot_get(db, snap, &s, err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidSnapshot.NotFound",
                         "The snapshot '%s' does not exist.", snap);
    if (strcmp(s.status, "pending") == 0)
        return error_set(err, EBUSY, "IncorrectState",
                         "Snapshot '%s' is still pending", snap);
    int64_t users;
    sqlite3_stmt *st = db_stmt(
        db, "SELECT count(*) FROM volumes WHERE snapshot_id = ? AND"
            " status = 'creating'", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, snap, -1, SQLITE_TRANSIENT);
    rc = db_step_row(db, st, "reading volumes", err);
    users = rc == 0 ? sqlite3_column_int64(st, 0) : 0;
    db_stmt_done(st);
    if (rc < 0)
        return -1;
    if (users)
        return error_set(err, EBUSY, "InvalidSnapshot.InUse",
                         "Snapshot '%s' is being restored into a volume",
                         snap);
    pthread_mutex_lock(&sc->gc_lock);
    rc = -1;
    /* A volume's bitmap counts writes since its base snapshot, whose
     * manifest gives an incremental snapshot the hashes of the blocks
     * left unchanged.  The manifest goes now, so such a volume's next
     * snapshot is full (the base is cleared below); one being taken
     * from it now is waited for (the CLC asks again). */
    st = db_stmt(db,
                 "SELECT count(*) FROM snapshots s JOIN volumes v ON"
                 " v.id = s.volume_id WHERE s.status = 'pending' AND"
                 " v.base_snapshot = ?",
                 err);
    if (st == NULL)
        goto out;
    sqlite3_bind_text(st, 1, snap, -1, SQLITE_TRANSIENT);
    int x = db_step_row(db, st, "reading snapshots", err);
    int64_t based = x == 0 ? sqlite3_column_int64(st, 0) : 0;
    db_stmt_done(st);
    if (x < 0)
        goto out;
    if (based) {
        error_set(err, EBUSY, "IncorrectState",
                  "Snapshot '%s' is the base of a snapshot in progress", snap);
        goto out;
    }
    char key[256], path[4200];
    sc_object_key(sc, "manifests", snap, key, sizeof(key));
    sc_manifest_path(sc, snap, path, sizeof(path));
    if (strcmp(s.status, "deleted") != 0) {
        /* the references go first: a kill -9 after this leaves blocks
         * that the next collection removes, never a manifest whose blocks
         * are gone */
        if (db_begin(db, err) < 0)
            goto out;
        st = db_stmt(db, "DELETE FROM manifest_blocks WHERE snapshot_id = ?",
                     err);
        if (st == NULL) {
            db_rollback(db);
            goto out;
        }
        sqlite3_bind_text(st, 1, snap, -1, SQLITE_TRANSIENT);
        int ok = sqlite3_step(st) == SQLITE_DONE;
        db_stmt_done(st);
        st = ok ? db_stmt(db,
                          "UPDATE volumes SET base_snapshot = '' WHERE"
                          " base_snapshot = ?",
                          err)
                : NULL;
        if (st) {
            sqlite3_bind_text(st, 1, snap, -1, SQLITE_TRANSIENT);
            ok = sqlite3_step(st) == SQLITE_DONE;
            db_stmt_done(st);
        } else if (ok) {
            db_rollback(db);
            goto out;
        }
        snprintf(s.status, sizeof(s.status), "deleted");
        if (!ok || sc_snapshot_put(db, &s, err) < 0 || db_commit(db, err) < 0) {
            if (!ok)
                db_error(db, "deleting a manifest", err);
            db_rollback(db);
            goto out;
        }
        unlink(path);
    }
    if (sc->s3 && (sc_s3_delete(sc->s3, SC_BUCKET, key, err) < 0 ||
                   collect_blocks(sc, db, err) < 0))
        goto out;
    log_info("%s: deleted", snap);
    rc = 0;
out:
    pthread_mutex_unlock(&sc->gc_lock);
    return rc;
}

void sc_op_delete_snapshot(struct sc_req *r)
{
    struct koala_error *err = NULL;
    if (delete_snapshot(r, &err) < 0)
        return sc_fail(r, err);
    sc_reply(r, soap_start("DeleteSnapshotResponse", SC_NS));
}

/* ---- DescribeSnapshots ---- */

static int describe_one(void *ctx, const struct sc_snapshot *s)
{
    if (strcmp(s->status, "deleted") != 0)
        sc_write_snapshot(ctx, s);
    return 0;
}

void sc_op_describe_snapshots(struct sc_req *r)
{
    struct koala_error *err = NULL;
    struct db *db = sc_req_db(r, &err);
    if (db == NULL)
        return sc_fail(r, err);
    struct xml_writer *w = soap_start("DescribeSnapshotsResponse", SC_NS);
    bool any = false;
    for (const struct xml_node *n = xml_next_child(r->op, NULL, "snapshotId");
         n; n = xml_next_child(r->op, n, "snapshotId")) {
        any = true;
        _cleanup_free_ char *t = xml_text(n);
        const char *id = t ? str_trim(t) : "";
        if (!id_resource_valid(id, "snap-")) {
            xml_writer_free(w);
            error_set(&err, EINVAL, "InvalidSnapshot.Malformed",
                      "Invalid id: \"%s\"", id);
            return sc_fail(r, err);
        }
        struct sc_snapshot s;
        int rc = sc_snapshot_get(db, id, &s, &err);
        if (rc < 0) {
            xml_writer_free(w);
            return sc_fail(r, err);
        }
        if (rc == 0)
            sc_write_snapshot(w, &s);
    }
    if (!any && sc_snapshots_each(db, describe_one, w, &err) < 0) {
        xml_writer_free(w);
        return sc_fail(r, err);
    }
    sc_reply(r, w);
}
