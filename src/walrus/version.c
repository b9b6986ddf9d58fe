/* version.c: S3 bucket versioning (the design: docs/walrus.md).
 *
 * `objects` holds each key's current version (or delete marker), `versions`
 * its noncurrent ones.  This file decides, by the bucket's state ("",
 * Enabled, Suspended), what a write does to the version it replaces and
 * what a DELETE does; it also answers Put/GetBucketVersioning and checks
 * versionId parameters.  Everything here runs inside the caller's
 * transaction, so a crash leaves the old history or the new one.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"
#include "walrus.h"
#include "xml.h"

#define VERSION_COLS                                                           \
    "bucket, key, seq, version_id, delete_marker, blob, size, etag,"           \
    " mtime_ms, headers, checksum_alg, checksum, owner, acl, parts, tags,"   \
    " part_sizes, lock_mode, lock_until_ms, legal_hold, part_checksums, sse"

bool version_id_valid(const char *vid)
{
    if (strcmp(vid, "null") == 0)
        return true;
    if (strlen(vid) != 32)
        return false;
    for (const char *p = vid; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

int s3_version_param(struct s3_req *r, const char **vid,
                     struct koala_error **err)
{
    *vid = s3_param(r, "versionId");
    if (*vid == NULL)
        return 0;
    if (**vid == '\0')
        return error_set(err, EINVAL, "InvalidArgument",
                         "Version id cannot be the empty string");
    if (!version_id_valid(*vid))
        return error_set(err, EINVAL, "InvalidArgument",
                         "Invalid version id specified");
    return 0;
}

static int bucket_state(struct db *db, const char *bucket, char out[16],
                        struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT versioning FROM buckets WHERE name=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up bucket", err);
    if (rc == 0) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, 16, "%s", t ? (const char *)t : "");
    }
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, "NoSuchBucket",
                         "The specified bucket does not exist");
    return rc;
}

/* Runs sql with (bucket, key) bound as ?1, ?2. */
static int exec_bk(struct db *db, const char *sql, const char *bucket,
                   const char *key, const char *what, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, what, err);
}

/* The current version becomes noncurrent (its row is copied; the caller
 * replaces or deletes the one in objects). */
static int archive_current(struct db *db, const char *bucket, const char *key,
                           struct koala_error **err)
{
    return exec_bk(db,
                   "INSERT INTO versions(" VERSION_COLS ") SELECT " VERSION_COLS
                   " FROM objects WHERE bucket=?1 AND key=?2",
                   bucket, key, "archiving version", err);
}

/* Removes the noncurrent "null" version, if any (Suspended writes). */
static int drop_noncurrent_null(struct db *db, const char *bucket,
                                const char *key, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT blob FROM versions WHERE bucket=?"
                               " AND key=? AND version_id='null'",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    char blob[40] = "";
    int rc = db_step_row(db, st, "looking up null version", err);
    if (rc == 0)
        snprintf(blob, sizeof(blob), "%s", sqlite3_column_text(st, 0));
    db_stmt_done(st);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (meta_retire_blob(db, blob, err) < 0)
        return -1;
    return exec_bk(db,
                   "DELETE FROM versions WHERE bucket=?1 AND key=?2"
                   " AND version_id='null'",
                   bucket, key, "dropping null version", err);
}

int version_id_seq(const char *vid, int64_t *seq)
{
    if (strcmp(vid, "null") == 0)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++)
        v = v * 16 + (uint64_t)(vid[i] <= '9' ? vid[i] - '0'
                                                : vid[i] - 'a' + 10);
    *seq = (int64_t)(v & INT64_MAX);
    return 0;
}

int version_make_room(struct db *db, const char *bucket, const char *key,
                      const struct version_current *cur, int64_t seq,
                      char vid[40], struct koala_error **err)
{
    char state[16];
    if (bucket_state(db, bucket, state, err) < 0)
        return -1;
    if (strcmp(state, "Enabled") == 0) {
        /* The position first, so that a listing can resume after a
         * version even once it is gone; then randomness. */
        snprintf(vid, 40, "%016llx", (unsigned long long)seq);
        if (id_random_hex(vid + 16, 8) < 0)
            return error_set_errno(err, "getrandom");
        return cur->exists ? archive_current(db, bucket, key, err) : 0;
    }
    snprintf(vid, 40, "null");
    if (state[0] == '\0')
        return cur->exists ? meta_retire_blob(db, cur->blob, err) : 0;
    /* Suspended: the one "null" version is replaced wherever it is. */
    if (drop_noncurrent_null(db, bucket, key, err) < 0)
        return -1;
    if (!cur->exists)
        return 0;
    if (strcmp(cur->version_id, "null") == 0)
        return meta_retire_blob(db, cur->blob, err);
    return archive_current(db, bucket, key, err);
}

/* After the current version was removed: the newest noncurrent one, if
 * any, becomes current. */
static int promote_newest(struct db *db, const char *bucket, const char *key,
                          struct koala_error **err)
{
    if (exec_bk(db,
                "INSERT INTO objects(" VERSION_COLS ") SELECT " VERSION_COLS
                " FROM versions WHERE bucket=?1 AND key=?2"
                " ORDER BY seq DESC LIMIT 1",
                bucket, key, "promoting version", err) < 0)
        return -1;
    return exec_bk(db,
                   "DELETE FROM versions WHERE bucket=?1 AND key=?2 AND"
                   " seq=(SELECT seq FROM objects WHERE bucket=?1 AND key=?2)",
                   bucket, key, "promoting version", err);
}

/* Removes one version by id. */
static int delete_version(struct db *db, const char *bucket, const char *key,
                          const char *vid, bool bypass,
                          struct version_deleted *res,
                          struct koala_error **err)
{
    struct object_row o;
    int rc = meta_object_get_version(db, bucket, key, vid, &o, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0; /* no such version: nothing to do */
    if (objlock_may_delete(&o, bypass, err) < 0) {
        object_row_clear(&o);
        return -1;
    }
    res->found = true;
    res->delete_marker = o.delete_marker;
    snprintf(res->version_id, sizeof(res->version_id), "%s", vid);
    struct version_current cur;
    rc = meta_current_get(db, bucket, key, &cur, err);
    bool is_current = rc == 0 && cur.exists && cur.seq == o.seq;
    if (rc == 0)
        rc = meta_retire_blob(db, o.blob, err);
    int64_t seq = o.seq;
    object_row_clear(&o);
    if (rc < 0)
        return -1;
    if (is_current)
        return exec_bk(db, "DELETE FROM objects WHERE bucket=?1 AND key=?2",
                       bucket, key, "deleting version", err) < 0
                   ? -1
                   : promote_newest(db, bucket, key, err);
    sqlite3_stmt *st = db_stmt(
        db, "DELETE FROM versions WHERE bucket=? AND key=? AND seq=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, seq);
    rc = sqlite3_step(st);
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, "deleting version", err);
}

int version_delete(struct db *db, const char *bucket, const char *key,
                   const char *vid, int64_t owner, bool bypass,
                   struct version_deleted *res, struct koala_error **err)
{
    memset(res, 0, sizeof(*res));
    if (vid)
        return delete_version(db, bucket, key, vid, bypass, res, err);
    char state[16];
    if (bucket_state(db, bucket, state, err) < 0)
        return -1;
    if (state[0] == '\0') {
        int rc = meta_object_delete(db, bucket, key, err);
        res->found = rc == 0;
        return rc < 0 ? -1 : 0;
    }
    /* Versioned: a delete marker becomes the current version. */
    struct object_row m = {0};
    m.key = (char *)key;
    m.mtime_ms = time_now_ms();
    m.owner = owner;
    m.delete_marker = true;
    m.headers = (char *)"";
    if (meta_object_put(db, bucket, &m, err) < 0)
        return -1;
    res->found = true;
    res->delete_marker = true;
    snprintf(res->version_id, sizeof(res->version_id), "%s", m.version_id);
    return 0;
}

int meta_object_set_field(struct db *db, const char *bucket, const char *key,
                          const char *vid, const char *field,
                          const char *value, struct koala_error **err)
{
    static const char *const acl_sql[] = {
        "UPDATE objects SET acl=?1 WHERE bucket=?2 AND key=?3"
        " AND delete_marker=0 AND (?4 IS NULL OR version_id=?4)",
        "UPDATE versions SET acl=?1 WHERE bucket=?2 AND key=?3"
        " AND delete_marker=0 AND version_id=?4",
    };
    static const char *const tags_sql[] = {
        "UPDATE objects SET tags=?1 WHERE bucket=?2 AND key=?3"
        " AND delete_marker=0 AND (?4 IS NULL OR version_id=?4)",
        "UPDATE versions SET tags=?1 WHERE bucket=?2 AND key=?3"
        " AND delete_marker=0 AND version_id=?4",
    };
    const char *const *sql = strcmp(field, "acl") == 0 ? acl_sql : tags_sql;
    const char *acl = value;
    for (size_t i = 0; i < (vid ? 2u : 1u); i++) {
        sqlite3_stmt *st = db_stmt(db, sql[i], err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, acl, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, bucket, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
        if (vid)
            sqlite3_bind_text(st, 4, vid, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 4);
        int rc = sqlite3_step(st);
        db_stmt_done(st);
        if (rc != SQLITE_DONE)
            return db_error(db, "updating object", err);
        if (sqlite3_changes(db_handle(db)) > 0)
            return 0;
    }
    return 1;
}

/* ---- Put/GetBucketVersioning ---- */

/* The bucket owner's, or whom the bucket policy lets (authz.c). */
static int owner_only(struct s3_req *r, struct bucket_row *b,
                      struct koala_error **err)
{
    return s3_bucket_access(r, PERM_OWNER, b, err);
}

void s3_get_bucket_versioning(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (owner_only(r, &b, &err) < 0)
        return s3_fail(r, err);
    struct xml_writer *x = xml_writer_new("VersioningConfiguration", S3_XMLNS);
    if (b.versioning[0])
        xml_text_element(x, "Status", b.versioning);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

static int malformed(struct koala_error **err)
{
    return error_set(err, EINVAL, "MalformedXML",
                     "The XML you provided was not well-formed or did not "
                     "validate against our published schema");
}

/* The VersioningConfiguration body: Status Enabled or Suspended. */
static int parse_versioning(struct s3_req *r, char status[16],
                            struct koala_error **err)
{
    if (r->body.len == 0)
        return malformed(err);
    _cleanup_xml_doc_ struct xml_doc *doc =
        xml_parse(r->body.data, r->body.len, WALRUS_MAX_XML_BODY, err);
    if (doc == NULL)
        return -1;
    const struct xml_node *root = xml_root(doc);
    if (strcmp(xml_name(root), "VersioningConfiguration") != 0)
        return malformed(err);
    _cleanup_free_ char *s = xml_child_text(root, "Status");
    _cleanup_free_ char *mfa = xml_child_text(root, "MfaDelete");
    if (mfa && strcmp(mfa, "Disabled") != 0) {
        if (strcmp(mfa, "Enabled") != 0)
            return malformed(err);
        return error_set(err, ENOTSUP, "NotImplemented",
                         "MFA delete is not supported.");
    }
    if (s == NULL ||
        (strcmp(s, "Enabled") != 0 && strcmp(s, "Suspended") != 0))
        return malformed(err);
    snprintf(status, 16, "%s", s);
    return 0;
}

void s3_put_bucket_versioning(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    char status[16];
    if (owner_only(r, &b, &err) < 0 || parse_versioning(r, status, &err) < 0)
        return s3_fail(r, err);
    if (b.object_lock && strcmp(status, "Enabled") != 0) {
        error_set(&err, EBUSY, "InvalidBucketState",
                  "An Object Lock configuration is present on this bucket, "
                  "so the versioning state cannot be changed.");
        return s3_fail(r, err);
    }
    sqlite3_stmt *st =
        db_stmt(r->db, "UPDATE buckets SET versioning=? WHERE name=?", &err);
    if (st == NULL)
        return s3_fail(r, err);
    sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->bucket, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        db_error(r->db, "setting versioning", &err);
        return s3_fail(r, err);
    }
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}
