/* multipart_list.c: ListParts and ListMultipartUploads. */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"
#include "walrus.h"
#include "xml.h"

static void owner_block(struct s3_req *r, struct xml_writer *x,
                        const char *name, int64_t owner)
{
    struct identity who = {0};
    struct koala_error *err = NULL;
    if (meta_identity_by_id(r->db, owner, &who, &err) != 0)
        error_free(err);
    xml_start(x, name);
    xml_text_element(x, "ID", who.canonical_id);
    xml_text_element(x, "DisplayName", who.display_name);
    xml_end(x);
}

static int parse_limit(struct s3_req *r, const char *name, long *out,
                       struct koala_error **err)
{
    const char *v = s3_param(r, name);
    int64_t n = 1000;
    if (v && (str_to_i64(v, &n) < 0 || n < 0))
        return error_set(err, EINVAL, "InvalidArgument",
                         "Provided %s not an integer or within integer range",
                         name);
    *out = n > 1000 ? 1000 : (long)n;
    return 0;
}

void s3_list_parts(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct upload_row u;
    long max;
    int64_t marker = 0;
    const char *m = s3_param(r, "part-number-marker");
    if (m && (str_to_i64(m, &marker) < 0 || marker < 0)) {
        error_set(&err, EINVAL, "InvalidArgument",
                  "Provided part-number-marker not an integer or within "
                  "integer range");
        return s3_fail(r, err);
    }
    if (parse_limit(r, "max-parts", &max, &err) < 0 ||
        s3_bucket_access(r, PERM_WRITE, &b, &err) < 0 ||
        load_upload(r, &u, &err) < 0)
        return s3_fail(r, err);
    sqlite3_stmt *st =
        db_stmt(r->db,
                "SELECT part_number, size, etag, mtime_ms FROM parts"
                " WHERE upload_id=? AND part_number>? ORDER BY part_number"
                " LIMIT ?",
                &err);
    if (st == NULL) {
        upload_row_clear(&u);
        return s3_fail(r, err);
    }
    struct xml_writer *x = xml_writer_new("ListPartsResult", S3_XMLNS);
    xml_text_element(x, "Bucket", r->bucket);
    xml_text_element(x, "Key", r->key);
    xml_text_element(x, "UploadId", s3_param(r, "uploadId"));
    owner_block(r, x, "Initiator", u.owner);
    owner_block(r, x, "Owner", u.owner);
    xml_text_element(x, "StorageClass", "STANDARD");
    xml_u64_element(x, "PartNumberMarker", (uint64_t)marker);
    sqlite3_bind_text(st, 1, s3_param(r, "uploadId"), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, marker);
    sqlite3_bind_int64(st, 3, max + 1);
    struct buf parts = {0};
    long count = 0;
    int64_t last = marker;
    bool truncated = false;
    struct xml_writer *px = x;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (count == max) {
            truncated = true;
            break;
        }
        count++;
        last = sqlite3_column_int64(st, 0);
        (void)px;
    }
    xml_u64_element(x, "NextPartNumberMarker", (uint64_t)last);
    xml_u64_element(x, "MaxParts", (uint64_t)max);
    xml_bool_element(x, "IsTruncated", truncated);
    sqlite3_reset(st);
    long emitted = 0;
    while (emitted < count && sqlite3_step(st) == SQLITE_ROW) {
        char date[25], quoted[80];
        snprintf(quoted, sizeof(quoted), "\"%s\"", sqlite3_column_text(st, 2));
        xml_start(x, "Part");
        xml_u64_element(x, "PartNumber", (uint64_t)sqlite3_column_int64(st, 0));
        xml_text_element(x, "LastModified",
                         s3_iso_time(sqlite3_column_int64(st, 3), date));
        xml_text_element(x, "ETag", quoted);
        xml_u64_element(x, "Size", (uint64_t)sqlite3_column_int64(st, 1));
        xml_end(x);
        emitted++;
    }
    db_stmt_done(st);
    buf_free(&parts);
    upload_row_clear(&u);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

void s3_list_uploads(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    long max;
    if (parse_limit(r, "max-uploads", &max, &err) < 0 ||
        s3_bucket_access(r, PERM_WRITE, &b, &err) < 0)
        return s3_fail(r, err);
    const char *prefix = s3_param(r, "prefix");
    const char *key_marker = s3_param(r, "key-marker");
    const char *id_marker = s3_param(r, "upload-id-marker");
    sqlite3_stmt *st =
        db_stmt(r->db,
                "SELECT key, upload_id, initiated_ms, owner FROM uploads"
                " WHERE bucket=?1 AND (key>?2 OR (key=?2 AND upload_id>?3))"
                " AND substr(key, 1, length(?4))=?4"
                " ORDER BY key, upload_id LIMIT ?5",
                &err);
    if (st == NULL)
        return s3_fail(r, err);
    sqlite3_bind_text(st, 1, r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key_marker ? key_marker : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, id_marker && key_marker ? id_marker : "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 4, prefix ? prefix : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, max + 1);
    struct xml_writer *x =
        xml_writer_new("ListMultipartUploadsResult", S3_XMLNS);
    xml_text_element(x, "Bucket", r->bucket);
    xml_text_element(x, "KeyMarker", key_marker ? key_marker : "");
    xml_text_element(x, "UploadIdMarker", id_marker ? id_marker : "");
    xml_text_element(x, "Prefix", prefix ? prefix : "");
    xml_u64_element(x, "MaxUploads", (uint64_t)max);
    long count = 0;
    bool truncated = false;
    struct buf last_key = {0}, last_id = {0};
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == max) {
            truncated = true;
            break;
        }
        count++;
        char date[25];
        const char *key = (const char *)sqlite3_column_text(st, 0);
        const char *id = (const char *)sqlite3_column_text(st, 1);
        buf_reset(&last_key);
        buf_reset(&last_id);
        buf_append_str(&last_key, key);
        buf_append_str(&last_id, id);
        xml_start(x, "Upload");
        xml_text_element(x, "Key", key);
        xml_text_element(x, "UploadId", id);
        owner_block(r, x, "Initiator", sqlite3_column_int64(st, 3));
        owner_block(r, x, "Owner", sqlite3_column_int64(st, 3));
        xml_text_element(x, "StorageClass", "STANDARD");
        xml_text_element(x, "Initiated",
                         s3_iso_time(sqlite3_column_int64(st, 2), date));
        xml_end(x);
    }
    db_stmt_done(st);
    xml_bool_element(x, "IsTruncated", truncated);
    if (truncated) {
        xml_text_element(x, "NextKeyMarker", last_key.data);
        xml_text_element(x, "NextUploadIdMarker", last_id.data);
    }
    buf_free(&last_key);
    buf_free(&last_id);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}
