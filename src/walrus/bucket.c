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
    /* The caller says whose bucket it means to use (a guard against a
     * name that changed hands): someone else's is refused. */
    const char *expected = s3_header(r, "x-amz-expected-bucket-owner");
    if (expected && strcmp(expected, b->owner_number) != 0)
        return deny(err);
    /* The policy with the ACL (authz.c): for an object operation, a Deny
     * is final here; its ACL is asked once the object is loaded. */
    return s3_authorize(r, b, s3_op_action(r), r->key, NULL, &b->acl, perm,
                        err);
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

/* ListBuckets' paging: max-buckets (1..10000), prefix, and a
 * continuation-token that is the last name returned, base64. */
struct bucket_page {
    long max;
    const char *prefix;
    char *after;
};

static int bucket_page_parse(struct s3_req *r, struct bucket_page *p,
                             struct koala_error **err)
{
    memset(p, 0, sizeof(*p));
    p->max = -1;
    p->prefix = s3_param(r, "prefix");
    const char *m = s3_param(r, "max-buckets");
    int64_t n;
    if (m && (str_to_i64(m, &n) < 0 || n < 1 || n > 10000))
        return error_set(err, EINVAL, "InvalidArgument",
                         "Argument max-buckets must be an integer between 1 "
                         "and 10000.");
    if (m)
        p->max = (long)n;
    const char *t = s3_param(r, "continuation-token");
    if (t) {
        p->after = *t ? str_base64_decode_text(t, 63) : NULL;
        if (p->after == NULL)
            return error_set(err, EINVAL, "InvalidArgument",
                             "The continuation token provided is incorrect");
    }
    return 0;
}

void s3_list_buckets(struct s3_req *r)
{
    struct koala_error *err = NULL;
    if (r->who.anonymous)
        return (void)(deny(&err), s3_fail(r, err));
    struct bucket_page page;
    struct db *db = s3_db(r, &err);
    if (bucket_page_parse(r, &page, &err) < 0 || db == NULL) {
        free(page.after);
        return s3_fail(r, err);
    }
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT name, created FROM buckets WHERE owner=?"
                               " AND name>? AND substr(name, 1, length(?3))=?3"
                               " ORDER BY name",
                               &err);
    if (st == NULL) {
        free(page.after);
        return s3_fail(r, err);
    }
    sqlite3_bind_int64(st, 1, r->who.account_id);
    sqlite3_bind_text(st, 2, page.after ? page.after : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, page.prefix ? page.prefix : "", -1,
                      SQLITE_STATIC);
    struct xml_writer *x = xml_writer_new("ListAllMyBucketsResult", S3_XMLNS);
    xml_start(x, "Owner");
    xml_text_element(x, "ID", r->who.canonical_id);
    xml_text_element(x, "DisplayName", r->who.display_name);
    xml_end(x);
    xml_start(x, "Buckets");
    int rc;
    long count = 0;
    char last[64] = "";
    bool more = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (page.max >= 0 && count == page.max) {
            more = true;
            rc = SQLITE_DONE;
            break;
        }
        char date[25];
        const char *name = (const char *)sqlite3_column_text(st, 0);
        snprintf(last, sizeof(last), "%s", name);
        xml_start(x, "Bucket");
        xml_text_element(x, "Name", name);
        xml_text_element(
            x, "CreationDate",
            time_format_iso8601((time_t)sqlite3_column_int64(st, 1), date));
        xml_text_element(x, "BucketRegion", r->w->region);
        xml_end(x);
        count++;
    }
    db_stmt_done(st);
    xml_end(x);
    if (more) {
        char *t = str_base64_encode((const unsigned char *)last, strlen(last));
        xml_text_element(x, "ContinuationToken", t ? t : "");
        free(t);
    }
    if (page.prefix)
        xml_text_element(x, "Prefix", page.prefix);
    free(page.after);
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

static void created_reply(struct s3_req *r)
{
    struct buf loc = {0};
    buf_printf(&loc, "/%s", r->bucket);
    http_reply_header(r->http, "Location", loc.data);
    buf_free(&loc);
    s3_reply_xml(r, 200, strdup(""), 0);
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
    if (rc == 0 && existing.owner == r->who.account_id &&
        strcmp(r->w->region, "us-east-1") == 0) {
        /* S3's legacy in us-east-1: re-creating a bucket you own succeeds
         * and resets its ACL to the one this request asks for. */
        sqlite3_stmt *up =
            db_stmt(db, "UPDATE buckets SET acl=? WHERE name=?", &err);
        if (up == NULL) {
            db_rollback(db);
            return s3_fail(r, err);
        }
        sqlite3_bind_text(up, 1, acl_text ? acl_text : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(up, 2, r->bucket, -1, SQLITE_STATIC);
        rc = sqlite3_step(up);
        db_stmt_done(up);
        if (rc != SQLITE_DONE) {
            db_error(db, "resetting bucket ACL", &err);
            db_rollback(db);
            return s3_fail(r, err);
        }
        if (db_commit(db, &err) < 0)
            return s3_fail(r, err);
        return created_reply(r);
    }
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
                         " created, object_lock, versioning)"
                         " VALUES(?,?,?,?,?,?,?)",
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
    /* Object Lock is chosen at creation, and forces versioning on. */
    const char *lock = s3_header(r, "x-amz-bucket-object-lock-enabled");
    bool locked = lock && strcasecmp(lock, "true") == 0;
    sqlite3_bind_int(st, 6, locked);
    sqlite3_bind_text(st, 7, locked ? "Enabled" : "", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        db_error(db, "creating bucket", &err);
        db_rollback(db);
        return s3_fail(r, err);
    }
    if (db_commit(db, &err) < 0)
        return s3_fail(r, err);
    created_reply(r);
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
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    struct db *db = r->db;
    if (db_begin(db, &err) < 0)
        return s3_fail(r, err);
    int64_t objects = 0;
    if (count_rows(db,
                   "SELECT count(*) FROM (SELECT 1 FROM objects"
                   " WHERE bucket=?1 UNION ALL SELECT 1 FROM versions"
                   " WHERE bucket=?1 LIMIT 1)",
                   r->bucket, &objects, &err) < 0) {
        db_rollback(db);
        return s3_fail(r, err);
    }
    if (objects) {
        db_rollback(db);
        error_set(&err, ENOTEMPTY, "BucketNotEmpty",
                  "The bucket you tried to delete is not empty");
        return s3_fail(r, err);
    }
    /* Incomplete uploads do not keep a bucket: S3 deletes them with it. */
    if (meta_drop_bucket_uploads(db, r->bucket, &err) < 0) {
        db_rollback(db);
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
    access_log_forget(r->w, r->bucket);
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

int s3_bucket_set_text(struct s3_req *r, const char *column, const char *text,
                       struct koala_error **err)
{
    /* Literal statements: db_stmt caches prepared statements by the SQL
     * text's address. */
    static const struct {
        const char *column, *sql;
    } sets[] = {
        {"cors", "UPDATE buckets SET cors=? WHERE name=?"},
        {"lifecycle", "UPDATE buckets SET lifecycle=? WHERE name=?"},
        {"tags", "UPDATE buckets SET tags=? WHERE name=?"},
        {"encryption", "UPDATE buckets SET encryption=? WHERE name=?"},
        {"logging", "UPDATE buckets SET logging=? WHERE name=?"},
    };
    const char *sql = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(sets) && sql == NULL; i++)
        if (strcmp(sets[i].column, column) == 0)
            sql = sets[i].sql;
    if (sql == NULL)
        return error_set(err, EINVAL, NULL, "no bucket column %s", column);
    sqlite3_stmt *st = db_stmt(r->db, sql, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->bucket, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(r->db, column, err);
}

void s3_get_bucket_location(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
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
    if (acl_from_request(r, &acl, &owner, NULL, &err) < 0 ||
        s3_acl_guard(r, &b, &acl, true, &err) < 0)
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
