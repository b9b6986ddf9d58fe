/* bucket.c: the S3 service and bucket operations: ListBuckets, CreateBucket,
 * DeleteBucket, HeadBucket, GetBucketLocation and the bucket ACL
 * (versioning: version.c). */
#define LOG_MODULE "walrus"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "walrus.h"
#include "xml.h"

static int deny(struct koala_error **err)
{
    return error_set(err, EACCES, "AccessDenied", "Access Denied");
}

int s3_bucket_access(struct s3_req *r, unsigned perm, struct bucket_row *b,
                     struct koala_error **err)
{
    struct db *db = s3_db(r, err);
    if (db == NULL)
        return -1;
    int rc = meta_bucket_get(db, r->bucket, b, err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return error_set(err, ENOENT, "NoSuchBucket",
                         "The specified bucket does not exist");
    if (perm && !acl_allows(&b->acl, &r->who, perm))
        return deny(err);
    return 0;
}

/* S3's rules for new bucket names. */
static bool bucket_name_valid(const char *n)
{
    size_t len = strlen(n);
    if (len < 3 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!(islower((unsigned char)c) || isdigit((unsigned char)c) ||
              c == '.' || c == '-'))
            return false;
        if (c == '.' &&
            (n[i + 1] == '.' || n[i + 1] == '-' || (i > 0 && n[i - 1] == '-')))
            return false;
    }
    if (!isalnum((unsigned char)n[0]) || !isalnum((unsigned char)n[len - 1]))
        return false;
    struct in_addr a;
    if (inet_pton(AF_INET, n, &a) == 1)
        return false;
    if (str_has_prefix(n, "xn--") || str_has_prefix(n, "sthree-"))
        return false;
    if (len > 8 && strcmp(n + len - 8, "-s3alias") == 0)
        return false;
    return true;
}

void s3_list_buckets(struct s3_req *r)
{
    struct koala_error *err = NULL;
    if (r->who.anonymous)
        return (void)(deny(&err), s3_fail(r, err));
    struct db *db = s3_db(r, &err);
    if (db == NULL)
        return s3_fail(r, err);
    sqlite3_stmt *st = db_stmt(
        db, "SELECT name, created FROM buckets WHERE owner=? ORDER BY name",
        &err);
    if (st == NULL)
        return s3_fail(r, err);
    sqlite3_bind_int64(st, 1, r->who.account_id);
    struct xml_writer *x = xml_writer_new("ListAllMyBucketsResult", S3_XMLNS);
    xml_start(x, "Owner");
    xml_text_element(x, "ID", r->who.canonical_id);
    xml_text_element(x, "DisplayName", r->who.display_name);
    xml_end(x);
    xml_start(x, "Buckets");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char date[25];
        xml_start(x, "Bucket");
        xml_text_element(x, "Name", (const char *)sqlite3_column_text(st, 0));
        xml_text_element(
            x, "CreationDate",
            time_format_iso8601((time_t)sqlite3_column_int64(st, 1), date));
        xml_end(x);
    }
    db_stmt_done(st);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    if (rc != SQLITE_DONE) {
        free(doc);
        db_error(db, "listing buckets", &err);
        return s3_fail(r, err);
    }
    s3_reply_xml(r, 200, doc, len);
}

int s3_parse_location(struct s3_req *r, struct koala_error **err)
{
    if (r->body.len == 0)
        return 0;
    _cleanup_xml_doc_ struct xml_doc *doc =
        xml_parse(r->body.data, r->body.len, WALRUS_MAX_XML_BODY, err);
    if (doc == NULL)
        return -1;
    const struct xml_node *root = xml_root(doc);
    if (strcmp(xml_name(root), "CreateBucketConfiguration") != 0)
        return error_set(err, EINVAL, "MalformedXML",
                         "The XML you provided was not well-formed or did "
                         "not validate against our published schema");
    _cleanup_free_ char *loc = xml_child_text(root, "LocationConstraint");
    if (loc == NULL || *loc == '\0')
        return 0;
    if (strcmp(loc, r->w->region) != 0)
        return error_set(err, EINVAL, "IllegalLocationConstraintException",
                         "The %s location constraint is incompatible for the "
                         "region specific endpoint this request was sent to.",
                         loc);
    return 0;
}

void s3_create_bucket(struct s3_req *r)
{
    struct koala_error *err = NULL;
    if (r->who.anonymous)
        return (void)(deny(&err), s3_fail(r, err));
    if (!bucket_name_valid(r->bucket)) {
        error_set(&err, EINVAL, "InvalidBucketName",
                  "The specified bucket is not valid.");
        return s3_fail(r, err);
    }
    struct acl acl;
    bool given;
    if (s3_parse_location(r, &err) < 0 ||
        acl_from_headers(r, &acl, &r->who, NULL, &given, &err) < 0)
        return s3_fail(r, err);
    struct db *db = s3_db(r, &err);
    _cleanup_free_ char *acl_text = acl_encode(&acl);
    if (db == NULL || db_begin(db, &err) < 0)
        return s3_fail(r, err);
    struct bucket_row existing;
    int rc = meta_bucket_get(db, r->bucket, &existing, &err);
    if (rc == 0) {
        db_rollback(db);
        if (existing.owner == r->who.account_id)
            error_set(&err, EEXIST, "BucketAlreadyOwnedByYou",
                      "Your previous request to create the named bucket "
                      "succeeded and you already own it.");
        else
            error_set(&err, EEXIST, "BucketAlreadyExists",
                      "The requested bucket name is not available. The "
                      "bucket namespace is shared by all users of the "
                      "system. Please select a different name and try "
                      "again.");
        return s3_fail(r, err);
    }
    sqlite3_stmt *st =
        rc < 0 ? NULL
               : db_stmt(db,
                         "INSERT INTO buckets(name, owner, region, acl,"
                         " created) VALUES(?,?,?,?,?)",
                         &err);
    if (st == NULL) {
        db_rollback(db);
        return s3_fail(r, err);
    }
    sqlite3_bind_text(st, 1, r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->who.account_id);
    sqlite3_bind_text(st, 3, r->w->region, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, acl_text ? acl_text : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)time(NULL));
    rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        db_error(db, "creating bucket", &err);
        db_rollback(db);
        return s3_fail(r, err);
    }
    if (db_commit(db, &err) < 0)
        return s3_fail(r, err);
    struct buf loc = {0};
    buf_printf(&loc, "/%s", r->bucket);
    http_reply_header(r->http, "Location", loc.data);
    buf_free(&loc);
    s3_reply_xml(r, 200, strdup(""), 0);
}

static int count_rows(struct db *db, const char *sql, const char *bucket,
                      int64_t *n, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db, sql, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    db_stmt_done(st);
    return rc == SQLITE_ROW ? 0 : db_error(db, "counting", err);
}

void s3_delete_bucket(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, 0, &b, &err) < 0)
        return s3_fail(r, err);
    if (r->who.anonymous || b.owner != r->who.account_id)
        return (void)(deny(&err), s3_fail(r, err));
    struct db *db = r->db;
    if (db_begin(db, &err) < 0)
        return s3_fail(r, err);
    int64_t objects = 0, uploads = 0;
    if (count_rows(db,
                   "SELECT count(*) FROM (SELECT 1 FROM objects"
                   " WHERE bucket=?1 UNION ALL SELECT 1 FROM versions"
                   " WHERE bucket=?1 LIMIT 1)",
                   r->bucket, &objects, &err) < 0 ||
        count_rows(db,
                   "SELECT count(*) FROM (SELECT 1 FROM uploads"
                   " WHERE bucket=? LIMIT 1)",
                   r->bucket, &uploads, &err) < 0) {
        db_rollback(db);
        return s3_fail(r, err);
    }
    if (objects || uploads) {
        db_rollback(db);
        error_set(&err, ENOTEMPTY, "BucketNotEmpty",
                  "The bucket you tried to delete is not empty");
        return s3_fail(r, err);
    }
    sqlite3_stmt *st = db_stmt(db, "DELETE FROM buckets WHERE name=?", &err);
    if (st == NULL) {
        db_rollback(db);
        return s3_fail(r, err);
    }
    sqlite3_bind_text(st, 1, r->bucket, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        db_error(db, "deleting bucket", &err);
        db_rollback(db);
        return s3_fail(r, err);
    }
    if (db_commit(db, &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 204);
}

void s3_head_bucket(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_READ, &b, &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-bucket-region", b.region);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}

static bool is_owner(const struct s3_req *r, const struct bucket_row *b)
{
    return !r->who.anonymous && b->owner == r->who.account_id;
}

void s3_get_bucket_location(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, 0, &b, &err) < 0)
        return s3_fail(r, err);
    if (!is_owner(r, &b))
        return (void)(deny(&err), s3_fail(r, err));
    struct xml_writer *x = xml_writer_new("LocationConstraint", S3_XMLNS);
    /* us-east-1 is the empty constraint, for historical reasons. */
    size_t len;
    char *doc;
    if (strcmp(b.region, "us-east-1") != 0) {
        xml_writer_free(x);
        struct buf d = {0};
        buf_printf(&d,
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<LocationConstraint xmlns=\"%s\">%s</LocationConstraint>",
                   S3_XMLNS, b.region);
        len = d.len;
        doc = buf_steal(&d);
    } else {
        doc = xml_writer_finish(x, &len);
    }
    s3_reply_xml(r, 200, doc, len);
}

void s3_get_bucket_acl(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_READ_ACP, &b, &err) < 0)
        return s3_fail(r, err);
    size_t len;
    char *doc = acl_to_xml(&b.acl, &len);
    s3_reply_xml(r, 200, doc, len);
}

void s3_put_bucket_acl(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_WRITE_ACP, &b, &err) < 0)
        return s3_fail(r, err);
    struct identity owner;
    int rc = meta_identity_by_id(r->db, b.owner, &owner, &err);
    if (rc != 0) {
        if (rc == 1)
            error_set(&err, ENOENT, NULL, "bucket owner vanished");
        return s3_fail(r, err);
    }
    struct acl acl;
    if (acl_from_request(r, &acl, &owner, NULL, &err) < 0)
        return s3_fail(r, err);
    _cleanup_free_ char *text = acl_encode(&acl);
    sqlite3_stmt *st =
        db_stmt(r->db, "UPDATE buckets SET acl=? WHERE name=?", &err);
    if (st == NULL)
        return s3_fail(r, err);
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->bucket, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        db_error(r->db, "updating ACL", &err);
        return s3_fail(r, err);
    }
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}
