/* completed.c: what a CompleteMultipartUpload answered, kept for a day.
 *
 * A client whose connection broke after the completion committed retries
 * it; S3 answers the retry as it answered the first time (same ETag, same
 * version) rather than NoSuchUpload, so the retry neither fails a
 * successful upload nor creates anything.  The row is written in the
 * completion's own transaction (table completed_uploads, schema v5), so it
 * exists exactly when the object does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walrus.h"
#include "xml.h"

#define COMPLETED_KEEP_MS (24LL * 3600 * 1000)

int completed_upload_record(struct db *db, const char *upload_id,
                            const char *bucket, const char *key,
                            const char *etag, const char *vid,
                            struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "DELETE FROM completed_uploads WHERE completed_ms<?", err);
    if (st == NULL)
        return -1;
    int64_t now = time_now_ms();
    sqlite3_bind_int64(st, 1, now - COMPLETED_KEEP_MS);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "pruning completed uploads", err);
    st = db_stmt(db,
                 "INSERT OR REPLACE INTO completed_uploads(upload_id, bucket,"
                 " key, etag, version_id, completed_ms) VALUES(?,?,?,?,?,?)",
                 err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, upload_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, etag, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, vid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now);
    rc = sqlite3_step(st);
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, "recording completion", err);
}

int completed_upload_find(struct db *db, const char *upload_id,
                          const char *bucket, const char *key, char etag[72],
                          char vid[40], struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT etag, version_id FROM completed_uploads"
                               " WHERE upload_id=? AND bucket=? AND key=?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, upload_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up completed upload", err);
    if (rc == 0) {
        snprintf(etag, 72, "%s", sqlite3_column_text(st, 0));
        snprintf(vid, 40, "%s", sqlite3_column_text(st, 1));
    }
    db_stmt_done(st);
    return rc;
}

void s3_complete_reply(struct s3_req *r, const char *etag, const char *vid,
                       const char *alg, const char *sum)
{
    s3_reply_version(r, vid, false);
    char quoted[80];
    snprintf(quoted, sizeof(quoted), "\"%s\"", etag);
    struct buf loc = {0};
    buf_printf(&loc, "/%s/", r->bucket);
    str_uri_encode(&loc, r->key, strlen(r->key), true);
    struct xml_writer *x =
        xml_writer_new("CompleteMultipartUploadResult", S3_XMLNS);
    xml_text_element(x, "Location", loc.data);
    xml_text_element(x, "Bucket", r->bucket);
    xml_text_element(x, "Key", r->key);
    xml_text_element(x, "ETag", quoted);
    if (alg && *alg) {
        char name[32] = "Checksum";
        for (size_t i = 0; alg[i] && i < 20; i++)
            name[8 + i] = (char)(alg[i] >= 'a' && alg[i] <= 'z' ? alg[i] - 32
                                                                : alg[i]);
        xml_text_element(x, name, sum);
    }
    buf_free(&loc);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}
