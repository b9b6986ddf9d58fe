/* meta.c: Walrus' metadata in SQLite: accounts and their keys, buckets,
 * objects, multipart uploads and parts, and blobs waiting for removal.
 *
 * Keys are TEXT compared with SQLite's BINARY collation, i.e. memcmp of the
 * UTF-8 bytes: the order S3 lists keys in.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "id.h"
#include "walrus.h"

static const char schema_v1[] =
    "CREATE TABLE accounts ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  canonical_id TEXT NOT NULL UNIQUE,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE access_keys ("
    "  access_key TEXT PRIMARY KEY,"
    "  secret TEXT NOT NULL,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE buckets ("
    "  name TEXT PRIMARY KEY,"
    "  owner INTEGER NOT NULL REFERENCES accounts(id),"
    "  region TEXT NOT NULL,"
    "  acl TEXT NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE objects ("
    "  bucket TEXT NOT NULL REFERENCES buckets(name),"
    "  key TEXT NOT NULL,"
    "  blob TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  mtime_ms INTEGER NOT NULL,"
    "  headers TEXT NOT NULL,"
    "  checksum_alg TEXT NOT NULL DEFAULT '',"
    "  checksum TEXT NOT NULL DEFAULT '',"
    "  owner INTEGER NOT NULL,"
    "  acl TEXT NOT NULL,"
    "  parts INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (bucket, key)) WITHOUT ROWID;"
    "CREATE INDEX objects_blob ON objects(blob);"
    "CREATE TABLE uploads ("
    "  upload_id TEXT PRIMARY KEY,"
    "  bucket TEXT NOT NULL REFERENCES buckets(name),"
    "  key TEXT NOT NULL,"
    "  initiated_ms INTEGER NOT NULL,"
    "  owner INTEGER NOT NULL,"
    "  headers TEXT NOT NULL,"
    "  acl TEXT NOT NULL,"
    "  checksum_alg TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX uploads_key ON uploads(bucket, key, upload_id);"
    "CREATE TABLE parts ("
    "  upload_id TEXT NOT NULL REFERENCES uploads(upload_id),"
    "  part_number INTEGER NOT NULL,"
    "  blob TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  mtime_ms INTEGER NOT NULL,"
    "  checksum TEXT NOT NULL DEFAULT '',"
    "  PRIMARY KEY (upload_id, part_number)) WITHOUT ROWID;"
    "CREATE INDEX parts_blob ON parts(blob);"
    "CREATE TABLE dead_blobs ("
    "  blob TEXT PRIMARY KEY,"
    "  died_ms INTEGER NOT NULL);";

/* v2: small objects' data in the database (see blob.c). */
static const char schema_v2[] = "CREATE TABLE inline_blobs ("
                                "  id TEXT PRIMARY KEY,"
                                "  data BLOB NOT NULL);";

/* v3: versioning (docs/walrus.md): objects holds each key's current
 * version (or delete marker), versions the noncurrent ones. */
static const char schema_v3[] =
    "ALTER TABLE buckets ADD COLUMN versioning TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE objects ADD COLUMN version_id TEXT NOT NULL DEFAULT 'null';"
    "ALTER TABLE objects ADD COLUMN seq INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE objects ADD COLUMN delete_marker INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE versions ("
    "  bucket TEXT NOT NULL REFERENCES buckets(name),"
    "  key TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  version_id TEXT NOT NULL,"
    "  delete_marker INTEGER NOT NULL DEFAULT 0,"
    "  blob TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  mtime_ms INTEGER NOT NULL,"
    "  headers TEXT NOT NULL,"
    "  checksum_alg TEXT NOT NULL DEFAULT '',"
    "  checksum TEXT NOT NULL DEFAULT '',"
    "  owner INTEGER NOT NULL,"
    "  acl TEXT NOT NULL,"
    "  parts INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (bucket, key, seq)) WITHOUT ROWID;"
    "CREATE INDEX versions_id ON versions(bucket, key, version_id);"
    "CREATE INDEX versions_blob ON versions(blob);";

/* v4: tags (tagging.c), with each version, upload and bucket. */
static const char schema_v4[] =
    "ALTER TABLE objects ADD COLUMN tags TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE versions ADD COLUMN tags TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE uploads ADD COLUMN tags TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE buckets ADD COLUMN tags TEXT NOT NULL DEFAULT '';";

/* v5: the sizes of a multipart object's parts (parts.c). */
/* And the 12-digit account number of an account (the CLC's, or "" for
 * Walrus' own accounts: their id, zero-padded), which
 * x-amz-expected-bucket-owner names. */
static const char schema_v5[] =
    "ALTER TABLE objects ADD COLUMN part_sizes TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE versions ADD COLUMN part_sizes TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE accounts ADD COLUMN number TEXT NOT NULL DEFAULT '';"
    /* completed.c */
    "CREATE TABLE completed_uploads ("
    "  upload_id TEXT PRIMARY KEY,"
    "  bucket TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  version_id TEXT NOT NULL,"
    "  completed_ms INTEGER NOT NULL);"
    "CREATE INDEX completed_uploads_bucket ON completed_uploads(bucket);";

/* v6: CORS rules of a bucket (cors.c). */
static const char schema_v6[] =
    "ALTER TABLE buckets ADD COLUMN cors TEXT NOT NULL DEFAULT '';";

/* v7: the bucket policy, PublicAccessBlock (NULL: none) and Object
 * Ownership ("" none) of a bucket (bucket_access.c, authz.c). */
static const char schema_v7[] =
    "ALTER TABLE buckets ADD COLUMN policy TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE buckets ADD COLUMN pab INTEGER;"
    "ALTER TABLE buckets ADD COLUMN ownership TEXT NOT NULL DEFAULT '';";

/* v8: Object Lock (objlock.c): the bucket's switch and default retention,
 * each version's retention and legal hold. */
static const char schema_v8[] =
    "ALTER TABLE buckets ADD COLUMN object_lock INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE buckets ADD COLUMN lock_default TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE objects ADD COLUMN lock_mode TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE objects ADD COLUMN lock_until_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE objects ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE versions ADD COLUMN lock_mode TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE versions ADD COLUMN lock_until_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE versions ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE uploads ADD COLUMN lock_mode TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE uploads ADD COLUMN lock_until_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE uploads ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0;";

/* v9: lifecycle configurations (lifecycle.c). */
static const char schema_v9[] =
    "ALTER TABLE buckets ADD COLUMN lifecycle TEXT NOT NULL DEFAULT '';";

/* v10: the parts' checksums of a multipart object (composite
 * checksums, multipart.c). */
static const char schema_v10[] =
    "ALTER TABLE objects ADD COLUMN part_checksums TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE versions ADD COLUMN part_checksums TEXT NOT NULL DEFAULT '';";

/* v11: server access logging: "target\nprefix" (access_log.c). */
static const char schema_v11[] =
    "ALTER TABLE buckets ADD COLUMN logging TEXT NOT NULL DEFAULT '';";

/* v12: encryption at rest: each version's key record (sse.c), each
 * bucket's default encryption (bucket_sse.c), an upload's key record and
 * each part's IV (sse_parts.c). */
static const char schema_v12[] =
    "ALTER TABLE objects ADD COLUMN sse TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE versions ADD COLUMN sse TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE buckets ADD COLUMN encryption TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE uploads ADD COLUMN sse TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE parts ADD COLUMN iv TEXT NOT NULL DEFAULT '';";

const char *const walrus_migrations[] = {
    schema_v1, schema_v2, schema_v3,  schema_v4,  schema_v5,  schema_v6,
    schema_v7, schema_v8, schema_v9, schema_v10, schema_v11, schema_v12};
const size_t walrus_n_migrations = ARRAY_SIZE(walrus_migrations);

void object_row_clear(struct object_row *o)
{
    free(o->key);
    free(o->headers);
    free(o->data);
    free(o->tags);
    free(o->part_sizes);
    free(o->part_checksums);
    free(o->sse);
    memset(o, 0, sizeof(*o));
}

static void copy_col(char *dst, size_t size, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", t ? (const char *)t : "");
}

void meta_account_number(int64_t id, const char *stored, char out[13])
{
    if (stored && strlen(stored) == 12)
        memcpy(out, stored, 13);
    else
        snprintf(out, 13, "%012lld", (long long)(id % 1000000000000LL));
}

/* Columns id, canonical_id, name, number from col on. */
static int fill_identity(sqlite3_stmt *st, int col, struct identity *who)
{
    memset(who, 0, sizeof(*who));
    who->account_id = sqlite3_column_int64(st, col);
    copy_col(who->canonical_id, sizeof(who->canonical_id), st, col + 1);
    copy_col(who->display_name, sizeof(who->display_name), st, col + 2);
    meta_account_number(who->account_id,
                        (const char *)sqlite3_column_text(st, col + 3),
                        who->number);
    return 0;
}

int meta_identity_by_key(struct db *db, const char *access_key, char **secret,
                         struct identity *who, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT k.secret, a.id, a.canonical_id, a.name,"
                               " a.number"
                               " FROM access_keys k JOIN accounts a"
                               " ON a.id = k.account_id WHERE k.access_key=?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, access_key, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up access key", err);
    if (rc == 0) {
        *secret = strdup((const char *)sqlite3_column_text(st, 0));
        fill_identity(st, 1, who);
        if (*secret == NULL)
            rc = error_set(err, ENOMEM, NULL, "out of memory");
    }
    db_stmt_done(st);
    return rc;
}

static int identity_where(struct db *db, const char *sql, int64_t id,
                          const char *text, struct identity *who,
                          struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, id);
    int rc = db_step_row(db, st, "looking up account", err);
    if (rc == 0)
        fill_identity(st, 0, who);
    db_stmt_done(st);
    return rc;
}

int meta_identity_by_id(struct db *db, int64_t account_id, struct identity *who,
                        struct koala_error **err)
{
    return identity_where(
        db, "SELECT id, canonical_id, name, number FROM accounts WHERE id=?",
        account_id, NULL, who, err);
}

int meta_identity_by_canonical(struct db *db, const char *canonical_id,
                               struct identity *who, struct koala_error **err)
{
    return identity_where(
        db,
        "SELECT id, canonical_id, name, number FROM accounts"
        " WHERE canonical_id=?",
        0, canonical_id, who, err);
}

/* Access keys look like AWS's: "AKIA" + 16 characters of [A-Z2-7]. */
static int make_access_key(char out[21])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned char rnd[16];
    if (id_random_bytes(rnd, sizeof(rnd)) < 0)
        return -1;
    memcpy(out, "AKIA", 4);
    for (int i = 0; i < 16; i++)
        out[4 + i] = alphabet[rnd[i] & 31];
    out[20] = '\0';
    return 0;
}

static int make_secret(char out[41])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char rnd[40];
    if (id_random_bytes(rnd, sizeof(rnd)) < 0)
        return -1;
    for (int i = 0; i < 40; i++)
        out[i] = alphabet[rnd[i] & 63];
    out[40] = '\0';
    return 0;
}

int meta_add_user(struct db *db, const char *name, char access_key[21],
                  char secret[41], struct koala_error **err)
{
    char canonical[65];
    if (make_access_key(access_key) < 0 || make_secret(secret) < 0 ||
        id_random_hex(canonical, 32) < 0)
        return error_set_errno(err, "getrandom");
    if (db_begin(db, err) < 0)
        return -1;
    sqlite3_stmt *st = db_stmt(
        db, "INSERT INTO accounts(name, canonical_id, created) VALUES(?,?,?)",
        err);
    if (st == NULL)
        goto fail;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, canonical, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)time(NULL));
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc == SQLITE_CONSTRAINT) {
        error_set(err, EEXIST, "EntityAlreadyExists",
                  "user '%s' already exists", name);
        goto fail;
    }
    if (rc != SQLITE_DONE) {
        db_error(db, "adding account", err);
        goto fail;
    }
    int64_t account = sqlite3_last_insert_rowid(db_handle(db));
    st = db_stmt(db,
                 "INSERT INTO access_keys(access_key, secret, account_id,"
                 " created) VALUES(?,?,?,?)",
                 err);
    if (st == NULL)
        goto fail;
    sqlite3_bind_text(st, 1, access_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, secret, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, account);
    sqlite3_bind_int64(st, 4, (int64_t)time(NULL));
    rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        db_error(db, "adding access key", err);
        goto fail;
    }
    return db_commit(db, err);
fail:
    db_rollback(db);
    return -1;
}

int meta_bucket_get(struct db *db, const char *name, struct bucket_row *b,
                    struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT b.name, b.owner, b.region, b.acl, b.created,"
                " b.versioning, a.number, b.pab, b.ownership, b.object_lock,"
                " b.lock_default, length(b.lifecycle), b.encryption"
                " FROM buckets b"
                " LEFT JOIN accounts a ON a.id = b.owner WHERE b.name=?",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up bucket", err);
    if (rc == 0) {
        copy_col(b->name, sizeof(b->name), st, 0);
        b->owner = sqlite3_column_int64(st, 1);
        copy_col(b->region, sizeof(b->region), st, 2);
        b->created = sqlite3_column_int64(st, 4);
        copy_col(b->versioning, sizeof(b->versioning), st, 5);
        meta_account_number(b->owner,
                            (const char *)sqlite3_column_text(st, 6),
                            b->owner_number);
        b->pab_set = sqlite3_column_type(st, 7) != SQLITE_NULL;
        b->pab = (unsigned)sqlite3_column_int(st, 7);
        copy_col(b->ownership, sizeof(b->ownership), st, 8);
        b->object_lock = sqlite3_column_int(st, 9) != 0;
        copy_col(b->lock_default, sizeof(b->lock_default), st, 10);
        b->has_lifecycle = sqlite3_column_int(st, 11) > 0;
        copy_col(b->encryption, sizeof(b->encryption), st, 12);
        if (acl_decode(&b->acl, (const char *)sqlite3_column_text(st, 3)) < 0)
            rc = error_set(err, EINVAL, NULL, "bad ACL stored for %s", name);
    }
    db_stmt_done(st);
    return rc;
}

/* The columns fill_object reads, in its order (o: objects or versions,
 * i: inline_blobs). */
#define OBJECT_COLS                                                            \
    "o.blob, o.size, o.etag, o.mtime_ms, o.headers, o.checksum_alg,"           \
    " o.checksum, o.owner, o.acl, o.parts, i.data, o.version_id, o.seq,"       \
    " o.delete_marker, o.tags, o.part_sizes, o.lock_mode, o.lock_until_ms,"    \
    " o.legal_hold, o.part_checksums, o.sse"

static int fill_object(sqlite3_stmt *st, const char *key, struct object_row *o,
                       struct koala_error **err)
{
    int rc = 0;
    copy_col(o->blob, sizeof(o->blob), st, 0);
    o->size = (uint64_t)sqlite3_column_int64(st, 1);
    copy_col(o->etag, sizeof(o->etag), st, 2);
    o->mtime_ms = sqlite3_column_int64(st, 3);
    o->headers = strdup((const char *)sqlite3_column_text(st, 4));
    copy_col(o->checksum_alg, sizeof(o->checksum_alg), st, 5);
    copy_col(o->checksum, sizeof(o->checksum), st, 6);
    o->owner = sqlite3_column_int64(st, 7);
    o->parts = sqlite3_column_int(st, 9);
    copy_col(o->version_id, sizeof(o->version_id), st, 11);
    o->seq = sqlite3_column_int64(st, 12);
    o->delete_marker = sqlite3_column_int(st, 13) != 0;
    o->tags = strdup((const char *)sqlite3_column_text(st, 14));
    o->part_sizes = strdup((const char *)sqlite3_column_text(st, 15));
    copy_col(o->lock_mode, sizeof(o->lock_mode), st, 16);
    o->lock_until_ms = sqlite3_column_int64(st, 17);
    o->legal_hold = sqlite3_column_int(st, 18) != 0;
    o->part_checksums = strdup((const char *)sqlite3_column_text(st, 19));
    o->sse = strdup((const char *)sqlite3_column_text(st, 20));
    o->key = strdup(key);
    o->is_inline = sqlite3_column_type(st, 10) != SQLITE_NULL;
    size_t n = (size_t)sqlite3_column_bytes(st, 10);
    if (o->is_inline && (o->data = malloc(n ? n : 1)) != NULL && n)
        memcpy(o->data, sqlite3_column_blob(st, 10), n);
    if (o->headers == NULL || o->key == NULL || o->tags == NULL ||
        o->part_sizes == NULL || o->part_checksums == NULL || o->sse == NULL ||
        (o->is_inline && o->data == NULL))
        rc = error_set(err, ENOMEM, NULL, "out of memory");
    else if (o->is_inline && n != o->size)
        rc = error_set(err, EIO, NULL, "inline data of %s: %zu bytes", key, n);
    else if (acl_decode(&o->acl, (const char *)sqlite3_column_text(st, 8)) < 0)
        rc = error_set(err, EINVAL, NULL, "bad ACL stored for %s", key);
    if (rc != 0)
        object_row_clear(o);
    return rc;
}

static int object_query(struct db *db, const char *sql, const char *bucket,
                        const char *key, const char *vid, struct object_row *o,
                        struct koala_error **err)
{
    memset(o, 0, sizeof(*o));
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    if (vid)
        sqlite3_bind_text(st, 3, vid, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up object", err);
    if (rc == 0)
        rc = fill_object(st, key, o, err);
    db_stmt_done(st);
    return rc;
}

int meta_object_get_version(struct db *db, const char *bucket,
                            const char *key, const char *vid,
                            struct object_row *o, struct koala_error **err)
{
    if (vid == NULL)
        return object_query(db,
                            "SELECT " OBJECT_COLS " FROM objects o"
                            " LEFT JOIN inline_blobs i ON i.id = o.blob"
                            " WHERE o.bucket=? AND o.key=?",
                            bucket, key, NULL, o, err);
    int rc = object_query(db,
                          "SELECT " OBJECT_COLS " FROM objects o"
                          " LEFT JOIN inline_blobs i ON i.id = o.blob"
                          " WHERE o.bucket=? AND o.key=? AND o.version_id=?",
                          bucket, key, vid, o, err);
    if (rc != 1)
        return rc;
    return object_query(db,
                        "SELECT " OBJECT_COLS " FROM versions o"
                        " LEFT JOIN inline_blobs i ON i.id = o.blob"
                        " WHERE o.bucket=? AND o.key=? AND o.version_id=?",
                        bucket, key, vid, o, err);
}

int meta_object_get(struct db *db, const char *bucket, const char *key,
                    struct object_row *o, struct koala_error **err)
{
    int rc = meta_object_get_version(db, bucket, key, NULL, o, err);
    if (rc == 0 && o->delete_marker) {
        object_row_clear(o);
        return 1;
    }
    return rc;
}

int meta_current_get(struct db *db, const char *bucket, const char *key,
                     struct version_current *cur, struct koala_error **err)
{
    memset(cur, 0, sizeof(*cur));
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT blob, version_id, seq, delete_marker"
                               " FROM objects WHERE bucket=? AND key=?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up object", err);
    if (rc == 0) {
        cur->exists = true;
        copy_col(cur->blob, sizeof(cur->blob), st, 0);
        copy_col(cur->version_id, sizeof(cur->version_id), st, 1);
        cur->seq = sqlite3_column_int64(st, 2);
        cur->delete_marker = sqlite3_column_int(st, 3) != 0;
    }
    db_stmt_done(st);
    return rc < 0 ? -1 : 0;
}

int meta_retire_blob(struct db *db, const char *blob, struct koala_error **err)
{
    if (*blob == '\0') /* a delete marker has no data */
        return 0;
    /* Inline data goes at once (readers hold their own snapshot); a file
     * waits for the GC, as a reader may have it open. */
    sqlite3_stmt *st = db_stmt(db, "DELETE FROM inline_blobs WHERE id=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, blob, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "deleting inline blob", err);
    if (sqlite3_changes(db_handle(db)) > 0)
        return 0;
    return blob_mark_dead(db, blob, err);
}

int meta_object_put(struct db *db, const char *bucket, struct object_row *o,
                    struct koala_error **err)
{
    struct version_current cur;
    if (meta_current_get(db, bucket, o->key, &cur, err) < 0)
        return -1;
    o->seq = cur.exists ? cur.seq + 1 : 1;
    if (version_make_room(db, bucket, o->key, &cur, o->seq, o->version_id,
                          err) < 0)
        return -1;
    _cleanup_free_ char *acl = acl_encode(&o->acl);
    if (acl == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (o->is_inline) {
        sqlite3_stmt *st =
            db_stmt(db, "INSERT INTO inline_blobs(id, data) VALUES(?,?)", err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, o->blob, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 2, o->data ? o->data : "", o->size,
                            SQLITE_STATIC);
        int rc = sqlite3_step(st);
        db_stmt_done(st);
        if (rc != SQLITE_DONE)
            return db_error(db, "storing inline blob", err);
    }
    sqlite3_stmt *st = db_stmt(
        db,
        "INSERT OR REPLACE INTO objects(bucket, key, blob, size, etag,"
        " mtime_ms, headers, checksum_alg, checksum, owner, acl, parts,"
        " version_id, seq, delete_marker, tags, part_sizes, lock_mode,"
        " lock_until_ms, legal_hold, part_checksums, sse)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, o->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, o->blob, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (int64_t)o->size);
    sqlite3_bind_text(st, 5, o->etag, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, o->mtime_ms);
    sqlite3_bind_text(st, 7, o->headers ? o->headers : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, o->checksum_alg, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, o->checksum, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, o->owner);
    sqlite3_bind_text(st, 11, acl, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 12, o->parts);
    sqlite3_bind_text(st, 13, o->version_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 14, o->seq);
    sqlite3_bind_int(st, 15, o->delete_marker);
    sqlite3_bind_text(st, 16, o->tags ? o->tags : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 17, o->part_sizes ? o->part_sizes : "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 18, o->lock_mode, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 19, o->lock_until_ms);
    sqlite3_bind_int(st, 20, o->legal_hold);
    sqlite3_bind_text(st, 21, o->part_checksums ? o->part_checksums : "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 22, o->sse ? o->sse : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "storing object", err);
    return 0;
}

int meta_object_delete(struct db *db, const char *bucket, const char *key,
                       struct koala_error **err)
{
    struct version_current cur;
    if (meta_current_get(db, bucket, key, &cur, err) < 0)
        return -1;
    if (!cur.exists)
        return 1;
    if (meta_retire_blob(db, cur.blob, err) < 0)
        return -1;
    sqlite3_stmt *st =
        db_stmt(db, "DELETE FROM objects WHERE bucket=? AND key=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "deleting object", err);
    return 0;
}
