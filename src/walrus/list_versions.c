/* list_versions.c: ListObjectVersions (docs/walrus.md).
 *
 * Keys in UTF-8 byte order and, within a key, its versions newest first:
 * the current one from `objects`, then the noncurrent ones from `versions`
 * (whose primary key (bucket, key, seq) gives them in that order).  Every
 * key with noncurrent versions has a row in `objects`, so the walk goes
 * over `objects` as list.c's does (folding common prefixes, jumping past
 * them) and reads each key's history as it reaches it.  key-marker with
 * version-id-marker resumes inside a key's history, after that version.
 * The walk runs in one read transaction: a page is a consistent snapshot.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walrus.h"
#include "xml.h"

#define VLIST_BATCH 1000

struct ventry {
    char *key;
    bool is_prefix;
    bool latest;
    bool delete_marker;
    char version_id[40];
    uint64_t size;
    char etag[72];
    int64_t mtime_ms;
    int64_t owner;
};

struct vlisting {
    const char *prefix;
    const char *delimiter;
    long max_keys;
    struct ventry *entries;
    size_t n, cap;
    bool truncated;
};

static void vlisting_free(struct vlisting *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->entries[i].key);
    free(l->entries);
}

/* Adds an entry (key copied); 1 when the page is full (truncated). */
static int add(struct vlisting *l, const struct ventry *e, const char *key,
               size_t keylen, struct koala_error **err)
{
    if ((long)l->n >= l->max_keys) {
        l->truncated = l->max_keys > 0; /* as list.c: max-keys=0 */
        return 1;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct ventry *p = realloc(l->entries, cap * sizeof(*p));
        if (p == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
        l->entries = p;
        l->cap = cap;
    }
    struct ventry *d = &l->entries[l->n];
    *d = *e;
    d->key = strndup(key, keylen);
    if (d->key == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    l->n++;
    return 0;
}

/* Columns: version_id, delete_marker, size, etag, mtime_ms, owner. */
static void fill(struct ventry *e, sqlite3_stmt *st, int col)
{
    snprintf(e->version_id, sizeof(e->version_id), "%s",
             sqlite3_column_text(st, col));
    e->delete_marker = sqlite3_column_int(st, col + 1) != 0;
    e->size = (uint64_t)sqlite3_column_int64(st, col + 2);
    snprintf(e->etag, sizeof(e->etag), "%s", sqlite3_column_text(st, col + 3));
    e->mtime_ms = sqlite3_column_int64(st, col + 4);
    e->owner = sqlite3_column_int64(st, col + 5);
}

/* The noncurrent versions of key older than before_seq, newest first.
 * 0, 1 page full, -1. */
static int add_noncurrent(struct db *db, const char *bucket, const char *key,
                          int64_t before_seq, struct vlisting *l,
                          struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT version_id, delete_marker, size, etag, mtime_ms, owner"
                " FROM versions WHERE bucket=? AND key=? AND seq<?"
                " ORDER BY seq DESC",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, before_seq);
    int rc = 0, s;
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        struct ventry e = {0};
        fill(&e, st, 0);
        rc = add(l, &e, key, strlen(key), err);
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = db_error(db, "listing versions", err);
    db_stmt_done(st);
    return rc;
}

/* Where the history of key resumes after version vid: its id tells its
 * position even once it is gone; "null" is looked up, and if gone the
 * whole history is listed again (repeating rather than skipping). */
static int seq_of(struct db *db, const char *bucket, const char *key,
                  const char *vid, int64_t *seq, struct koala_error **err)
{
    if (version_id_seq(vid, seq) == 0)
        return 0;
    struct object_row o;
    int rc = meta_object_get_version(db, bucket, key, vid, &o, err);
    *seq = rc == 0 ? o.seq : INT64_MAX;
    object_row_clear(&o);
    return rc < 0 ? -1 : 0;
}

/* The current version of key if it is older than before_seq: when the
 * versions a page ended with were deleted since, an older one became
 * current.  0, 1 page full, -1. */
static int add_current_before(struct db *db, const char *bucket,
                              const char *key, int64_t before_seq,
                              struct vlisting *l, struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT version_id, delete_marker, size, etag, mtime_ms, owner"
                " FROM objects WHERE bucket=? AND key=? AND seq<?",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, before_seq);
    int rc = db_step_row(db, st, "listing versions", err);
    if (rc == 0) {
        struct ventry e = {.latest = true};
        fill(&e, st, 0);
        rc = add(l, &e, key, strlen(key), err);
    } else if (rc == 1) {
        rc = 0;
    }
    db_stmt_done(st);
    return rc;
}

static int walk(struct db *db, const char *bucket, const char *key_marker,
                const char *vid_marker, struct vlisting *l,
                struct koala_error **err)
{
    size_t plen = strlen(l->prefix);
    const char *after = key_marker ? key_marker : "";
    char *bound = strdup(strcmp(after, l->prefix) > 0 ? after : l->prefix);
    bool inclusive = strcmp(after, l->prefix) < 0;
    if (bound == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    int rc = 0;
    if (!inclusive && str_has_prefix(bound, l->prefix)) {
        size_t cpl = list_common_prefix_len(l->prefix, l->delimiter, bound);
        if (cpl) { /* the marker sits inside a prefix already returned */
            char *next = list_prefix_successor(bound, cpl);
            free(bound);
            bound = next;
            inclusive = true;
        } else if (vid_marker) { /* resume inside the marker key's history */
            int64_t seq;
            rc = seq_of(db, bucket, bound, vid_marker, &seq, err);
            if (rc == 0)
                rc = add_current_before(db, bucket, bound, seq, l, err);
            if (rc == 0)
                rc = add_noncurrent(db, bucket, bound, seq, l, err);
        }
    }
    bool done = rc != 0;
    while (!done && rc == 0 && bound) {
        sqlite3_stmt *st = db_stmt(
            db,
            inclusive
                ? "SELECT key, seq, version_id, delete_marker, size, etag,"
                  " mtime_ms, owner FROM objects WHERE bucket=? AND key>=?"
                  " ORDER BY key LIMIT 1000"
                : "SELECT key, seq, version_id, delete_marker, size, etag,"
                  " mtime_ms, owner FROM objects WHERE bucket=? AND key>?"
                  " ORDER BY key LIMIT 1000",
            err);
        if (st == NULL) {
            rc = -1;
            break;
        }
        sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, bound, -1, SQLITE_TRANSIENT);
        int rows = 0, s;
        bool jumped = false;
        while (!jumped && rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
            rows++;
            const char *key = (const char *)sqlite3_column_text(st, 0);
            if (strncmp(key, l->prefix, plen) != 0) {
                done = true;
                break;
            }
            size_t cpl = list_common_prefix_len(l->prefix, l->delimiter, key);
            struct ventry e = {0};
            char *next;
            if (cpl) {
                e.is_prefix = true;
                rc = add(l, &e, key, cpl, err);
                next = list_prefix_successor(key, cpl);
                inclusive = true;
                jumped = true;
            } else {
                e.latest = true;
                fill(&e, st, 2);
                rc = add(l, &e, key, strlen(key), err);
                if (rc == 0)
                    rc = add_noncurrent(db, bucket, key,
                                        sqlite3_column_int64(st, 1), l, err);
                next = strdup(key);
                inclusive = false;
            }
            free(bound);
            bound = next;
            if (bound == NULL && rc == 0)
                rc = error_set(err, ENOMEM, NULL, "out of memory");
        }
        if (rc != 0)
            done = true;
        else if (!jumped && !done) {
            if (s != SQLITE_ROW && s != SQLITE_DONE)
                rc = db_error(db, "listing versions", err);
            else if (rows < VLIST_BATCH)
                done = true;
        }
        db_stmt_done(st);
    }
    free(bound);
    return rc < 0 ? -1 : 0;
}

static void write_entries(struct s3_req *r, struct xml_writer *x,
                          const struct vlisting *l, bool url)
{
    struct identity cache = {.account_id = -1};
    for (size_t i = 0; i < l->n; i++) {
        const struct ventry *e = &l->entries[i];
        if (e->is_prefix)
            continue;
        char date[25], quoted[80];
        xml_start(x, e->delete_marker ? "DeleteMarker" : "Version");
        list_text_el(x, "Key", e->key, url);
        xml_text_element(x, "VersionId", e->version_id);
        xml_bool_element(x, "IsLatest", e->latest);
        xml_text_element(x, "LastModified", s3_iso_time(e->mtime_ms, date));
        if (!e->delete_marker) {
            snprintf(quoted, sizeof(quoted), "\"%s\"", e->etag);
            xml_text_element(x, "ETag", quoted);
            xml_u64_element(x, "Size", e->size);
            xml_text_element(x, "StorageClass", "STANDARD");
        }
        list_owner_el(r, x, e->owner, &cache);
        xml_end(x);
    }
    for (size_t i = 0; i < l->n; i++) {
        if (!l->entries[i].is_prefix)
            continue;
        xml_start(x, "CommonPrefixes");
        list_text_el(x, "Prefix", l->entries[i].key, url);
        xml_end(x);
    }
}

void s3_list_object_versions(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct vlisting l = {0};
    bool reading = false;
    if (s3_bucket_access(r, PERM_READ, &b, &err) < 0)
        goto out;
    const char *enc = s3_param(r, "encoding-type");
    if (enc && strcmp(enc, "url") != 0) {
        error_set(&err, EINVAL, "InvalidArgument",
                  "Invalid Encoding Method specified in Request");
        goto out;
    }
    bool url = enc != NULL;
    const char *prefix = s3_param(r, "prefix");
    const char *key_marker = s3_param(r, "key-marker");
    const char *vid_marker = s3_param(r, "version-id-marker");
    l.prefix = prefix ? prefix : "";
    l.delimiter = s3_param(r, "delimiter");
    if (list_parse_max(s3_param(r, "max-keys"), &l.max_keys, &err) < 0)
        goto out;
    if (vid_marker && *vid_marker && (key_marker == NULL || !*key_marker)) {
        error_set(&err, EINVAL, "InvalidArgument",
                  "A version-id marker cannot be specified without a key "
                  "marker.");
        goto out;
    }
    if (vid_marker && *vid_marker == '\0')
        vid_marker = NULL;
    if (vid_marker && !version_id_valid(vid_marker)) {
        error_set(&err, EINVAL, "InvalidArgument",
                  "Invalid version id specified");
        goto out;
    }
    if (db_begin_read(r->db, &err) < 0)
        goto out;
    reading = true;
    if (walk(r->db, r->bucket, key_marker, vid_marker, &l, &err) < 0)
        goto out;

    struct xml_writer *x = xml_writer_new("ListVersionsResult", S3_XMLNS);
    xml_text_element(x, "Name", r->bucket);
    list_text_el(x, "Prefix", l.prefix, url);
    list_text_el(x, "KeyMarker", key_marker ? key_marker : "", url);
    xml_text_element(x, "VersionIdMarker", vid_marker ? vid_marker : "");
    const struct ventry *last = l.n ? &l.entries[l.n - 1] : NULL;
    if (l.truncated && last) {
        list_text_el(x, "NextKeyMarker", last->key, url);
        if (!last->is_prefix)
            xml_text_element(x, "NextVersionIdMarker", last->version_id);
    }
    xml_u64_element(x, "MaxKeys", (uint64_t)l.max_keys);
    if (l.delimiter)
        list_text_el(x, "Delimiter", l.delimiter, url);
    xml_bool_element(x, "IsTruncated", l.truncated);
    write_entries(r, x, &l, url);
    if (url)
        xml_text_element(x, "EncodingType", "url");
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
out:
    if (reading)
        db_rollback(r->db);
    vlisting_free(&l);
    if (err)
        s3_fail(r, err);
}
