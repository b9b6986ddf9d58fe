/* multipart.c: multipart uploads: CreateMultipartUpload, UploadPart,
 * UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload, ListParts
 * and ListMultipartUploads.
 *
 * Each part is a blob of its own (see blob.c).  Completing concatenates the
 * chosen parts into a new blob (copy_file_range, so the data does not pass
 * through user space), and one transaction makes it the object, retires the
 * part blobs and forgets the upload.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "id.h"
#include "log.h"
#include "multipart.h"
#include "walrus.h"
#include "xml.h"


void upload_row_clear(struct upload_row *u)
{
    free(u->headers);
    free(u->acl);
    free(u->tags);
    memset(u, 0, sizeof(*u));
}

static int no_such_upload(struct koala_error **err)
{
    return error_set(err, ENOENT, "NoSuchUpload",
                     "The specified upload does not exist. The upload ID may "
                     "be invalid, or the upload may have been aborted or "
                     "completed.");
}

/* Loads the upload named by ?uploadId for this bucket and key. */
static int load_upload_db(struct db *db, struct s3_req *r, struct upload_row *u,
                          struct koala_error **err)
{
    memset(u, 0, sizeof(*u));
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT owner, initiated_ms, headers, acl, tags, lock_mode,"
                " lock_until_ms, legal_hold, checksum_alg, sse FROM uploads"
                " WHERE upload_id=? AND bucket=? AND key=?",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, s3_param(r, "uploadId"), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        u->owner = sqlite3_column_int64(st, 0);
        u->initiated_ms = sqlite3_column_int64(st, 1);
        u->headers = strdup((const char *)sqlite3_column_text(st, 2));
        u->acl = strdup((const char *)sqlite3_column_text(st, 3));
        u->tags = strdup((const char *)sqlite3_column_text(st, 4));
        snprintf(u->lock.mode, sizeof(u->lock.mode), "%s",
                 sqlite3_column_text(st, 5));
        u->lock.until_ms = sqlite3_column_int64(st, 6);
        u->lock.legal_hold = sqlite3_column_int(st, 7) != 0;
        snprintf(u->checksum_alg, sizeof(u->checksum_alg), "%s",
                 sqlite3_column_text(st, 8));
        snprintf(u->sse, sizeof(u->sse), "%s", sqlite3_column_text(st, 9));
    }
    db_stmt_done(st);
    if (rc == SQLITE_DONE)
        return no_such_upload(err);
    if (rc != SQLITE_ROW)
        return db_error(db, "looking up upload", err);
    if (u->headers == NULL || u->acl == NULL || u->tags == NULL) {
        upload_row_clear(u);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    return 0;
}

int load_upload(struct s3_req *r, struct upload_row *u,
                       struct koala_error **err)
{
    struct db *db = s3_db(r, err);
    return db ? load_upload_db(db, r, u, err) : -1;
}

static int part_number(struct s3_req *r, int *out, struct koala_error **err)
{
    int64_t n;
    if (str_to_i64(s3_param(r, "partNumber"), &n) < 0 || n < 1 ||
        n > WALRUS_MAX_PARTS)
        return error_set(err, EINVAL, "InvalidArgument",
                         "Part number must be an integer between 1 and "
                         "10000, inclusive");
    *out = (int)n;
    return 0;
}

void s3_create_upload(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct acl acl;
    bool given;
    _cleanup_free_ char *headers = NULL, *tags = NULL;
    int64_t owner = r->who.account_id;
    struct object_lock lock;
    if (s3_bucket_access(r, PERM_WRITE, &b, &err) < 0 ||
        s3_collect_object_headers(r, &headers, &err) < 0 ||
        acl_from_headers(r, &acl, &r->who, &b.acl, &given, &err) < 0 ||
        s3_acl_guard(r, &b, &acl, given, &err) < 0 ||
        s3_apply_ownership(r, &b, &owner, &acl, &err) < 0 ||
        tags_from_header(r, &tags, &err) < 0 ||
        objlock_from_request(r, &b, &lock, &err) < 0)
        return s3_fail(r, err);
    /* The upload's keys: each part is enciphered under them (with an IV
     * of its own) as it arrives. */
    struct sse_request sq;
    struct sse_key sk = {0};
    int src = sse_for_write(r, &b, &sq, &err);
    if (src == 0)
        src = sse_seal(r->w, &sq, &sk, &err);
    OPENSSL_cleanse(&sq, sizeof(sq));
    if (src < 0)
        return s3_fail(r, err);
    char sse_desc[sizeof(sk.desc)];
    snprintf(sse_desc, sizeof(sse_desc), "%s", sk.desc);
    sse_reply_headers(r, &sk);
    sse_key_clear(&sk);
    /* A checksum algorithm for the parts, and a composite one for the
     * object: the checksum of the parts' checksums, "-N". */
    const char *calg = s3_header(r, "x-amz-checksum-algorithm");
    enum checksum_alg ca;
    if (calg && (checksum_alg_parse(calg, &ca) < 0 || ca == CHECKSUM_MD5)) {
        error_set(&err, EINVAL, "InvalidRequest",
                  "Checksum algorithm provided is unsupported. Please try "
                  "again with any of the valid types: [CRC32, CRC32C, SHA1, "
                  "SHA256]");
        return s3_fail(r, err);
    }
    char upload_id[65];
    if (id_random_hex(upload_id, 32) < 0) {
        error_set_errno(&err, "getrandom");
        return s3_fail(r, err);
    }
    _cleanup_free_ char *acl_text = acl_encode(&acl);
    sqlite3_stmt *st =
        db_stmt(r->db,
                "INSERT INTO uploads(upload_id, bucket, key, initiated_ms,"
                " owner, headers, acl, tags, lock_mode, lock_until_ms,"
                " legal_hold, checksum_alg, sse)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                &err);
    if (st == NULL)
        return s3_fail(r, err);
    sqlite3_bind_text(st, 1, upload_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, time_now_ms());
    sqlite3_bind_int64(st, 5, owner);
    sqlite3_bind_text(st, 6, headers, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, acl_text ? acl_text : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, tags, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, lock.mode, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, lock.until_ms);
    sqlite3_bind_int(st, 11, lock.legal_hold);
    sqlite3_bind_text(st, 12, calg ? checksum_alg_name(ca) : "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(st, 13, sse_desc, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        db_error(r->db, "creating upload", &err);
        return s3_fail(r, err);
    }
    if (calg) {
        char up[16];
        snprintf(up, sizeof(up), "%s", checksum_alg_name(ca));
        for (char *p = up; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        http_reply_header(r->http, "x-amz-checksum-algorithm", up);
    }
    struct xml_writer *x =
        xml_writer_new("InitiateMultipartUploadResult", S3_XMLNS);
    xml_text_element(x, "Bucket", r->bucket);
    xml_text_element(x, "Key", r->key);
    xml_text_element(x, "UploadId", upload_id);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

int s3_upload_part_precheck(struct s3_req *r, struct koala_error **err)
{
    int n;
    struct upload_row u;
    struct bucket_row b;
    if (part_number(r, &n, err) < 0 ||
        s3_bucket_access(r, PERM_WRITE, &b, err) < 0 ||
        load_upload(r, &u, err) < 0)
        return -1;
    int rc = sse_part_open(r, u.sse, err);
    upload_row_clear(&u);
    return rc;
}

struct part_job {
    struct s3_req *r;
    int n;
    const struct blob_writer *bw;
    const char *etag;
    const char *checksum;
    const char *alg; /* of checksum, "" none */
    const char *iv;  /* the part's IV (sse.c), "" none */
};

/* Records a part, checking the upload still exists (group commit job). */
static int part_job_run(struct db *db, void *ctx, struct koala_error **err)
{
    struct part_job *j = ctx;
    const char *upload_id = s3_param(j->r, "uploadId");
    struct upload_row u;
    if (load_upload_db(db, j->r, &u, err) < 0)
        return -1;
    char want[16];
    snprintf(want, sizeof(want), "%s", u.checksum_alg);
    upload_row_clear(&u);
    if (want[0] && j->alg && j->alg[0] && strcmp(want, j->alg) != 0)
        return error_set(err, EINVAL, "InvalidRequest",
                         "Checksum Type mismatch occurred, expected checksum "
                         "Type: %s, actual checksum Type: %s",
                         want, j->alg);
    sqlite3_stmt *st = db_stmt(
        db, "SELECT blob FROM parts WHERE upload_id=? AND part_number=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, upload_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, j->n);
    char old[40] = "";
    if (sqlite3_step(st) == SQLITE_ROW)
        snprintf(old, sizeof(old), "%s", sqlite3_column_text(st, 0));
    db_stmt_done(st);
    if (*old && blob_mark_dead(db, old, err) < 0)
        return -1;
    st = db_stmt(db,
                 "INSERT OR REPLACE INTO parts(upload_id, part_number, blob,"
                 " size, etag, mtime_ms, checksum, iv)"
                 " VALUES(?,?,?,?,?,?,?,?)",
                 err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, upload_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, j->n);
    sqlite3_bind_text(st, 3, j->bw->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (int64_t)j->bw->size);
    sqlite3_bind_text(st, 5, j->etag, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, time_now_ms());
    sqlite3_bind_text(st, 7, j->checksum ? j->checksum : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, j->iv, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, "storing part", err);
}

/* Records part n of the current upload (in a group commit that also checks
 * the upload still exists); then publishes the blob. */
static int commit_part(struct s3_req *r, int n, struct blob_writer *bw,
                       const char *etag, const char *checksum,
                       const char *alg, struct koala_error **err)
{
    char iv[33] = "";
    if (r->sse_part)
        sse_iv_hex(r->sse_part, iv);
    struct part_job j = {r, n, bw, etag, checksum, alg, iv};
    if (db_group_run(r->w->group, part_job_run, &j, err) < 0)
        return -1;
    return blob_writer_publish(r->w, bw, err);
}

void s3_upload_part(struct s3_req *r)
{
    struct koala_error *err = NULL;
    int n;
    const char *alg, *sum;
    part_number(r, &n, &err);
    upload_checksum(r, &alg, &sum);
    char etag[33];
    snprintf(etag, sizeof(etag), "%s", upload_etag(r));
    sse_etag(upload_sse(r), upload_etag(r), etag);
    if (commit_part(r, n, upload_blob(r), etag, sum, alg, &err) < 0)
        return s3_fail(r, err);
    upload_published(r);
    char quoted[80];
    snprintf(quoted, sizeof(quoted), "\"%s\"", etag);
    http_reply_header(r->http, "ETag", quoted);
    sse_reply_headers(r, upload_sse(r));
    if (*alg) {
        char name[40];
        snprintf(name, sizeof(name), "x-amz-checksum-%s", alg);
        http_reply_header(r->http, name, sum);
    }
    s3_reply_xml(r, 200, strdup(""), 0);
}

/* "bytes=first-last" of x-amz-copy-source-range. */
static int copy_range(struct s3_req *r, uint64_t size, uint64_t *first,
                      uint64_t *len, struct koala_error **err)
{
    const char *h = s3_header(r, "x-amz-copy-source-range");
    *first = 0;
    *len = size;
    if (h == NULL)
        return 0;
    unsigned long long a, b;
    char extra;
    if (sscanf(h, "bytes=%llu-%llu%c", &a, &b, &extra) != 2 || b < a)
        return error_set(err, EINVAL, "InvalidArgument",
                         "The x-amz-copy-source-range value must be of the "
                         "form bytes=first-last where first and last are the "
                         "zero-based offsets of the first and last bytes to "
                         "copy");
    if (b >= size)
        return error_set(err, EINVAL, "InvalidRange",
                         "The requested range is not satisfiable");
    *first = a;
    *len = b - a + 1;
    return 0;
}

void s3_upload_part_copy(struct s3_req *r)
{
    struct koala_error *err = NULL;
    _cleanup_free_ char *sbucket = NULL, *skey = NULL, *svid = NULL;
    struct object_row src = {0};
    struct blob_writer bw = {.fd = -1};
    struct checksum *md5 = NULL, *sum = NULL;
    struct upload_row u = {0};
    _cleanup_free_ char *b64 = NULL; /* the part's checksum, if any */
    int n;
    uint64_t first, len;
    struct sse_key sk = {0};
    struct sse_ctr *enc = NULL;
    if (s3_upload_part_precheck(r, &err) < 0 || load_upload(r, &u, &err) < 0 ||
        s3_copy_source(r, &sbucket, &skey, &svid, &err) < 0 ||
        s3_copy_source_load(r, sbucket, skey, svid, &src, &sk, &err) < 0 ||
        copy_range(r, src.size, &first, &len, &err) < 0)
        goto out;
    part_number(r, &n, &err);
    if (len > WALRUS_MAX_PUT) {
        error_set(&err, EINVAL, "InvalidRequest",
                  "The specified copy range is larger than 5 GiB.");
        goto out;
    }
    md5 = checksum_new(CHECKSUM_MD5);
    /* The part's checksum of the upload's algorithm, made here. */
    enum checksum_alg alg;
    if (u.checksum_alg[0] && checksum_alg_parse(u.checksum_alg, &alg) == 0)
        sum = checksum_new(alg);
    if (r->sse_part && (enc = sse_ctr_new(r->sse_part, 0)) == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    if (md5 == NULL || blob_writer_open(r->w, &bw, false, &err) < 0 ||
        blob_copy_range(r->w, &src, &sk, first, len, &bw, enc, md5, sum,
                        &err) < 0 ||
        blob_writer_sync(&bw, &err) < 0)
        goto out;
    unsigned char d[CHECKSUM_MAX_LEN];
    char etag[33], quoted[40], date[25];
    checksum_final(md5, d);
    str_hex(d, 16, etag);
    if (r->sse_part) {
        sse_etag(r->sse_part, etag, etag);
        sse_reply_headers(r, r->sse_part);
    }
    if (sum) {
        size_t dl = checksum_final(sum, d);
        b64 = str_base64_encode(d, dl);
    }
    if (commit_part(r, n, &bw, etag, b64, b64 ? u.checksum_alg : NULL,
                    &err) < 0)
        goto out;
    snprintf(quoted, sizeof(quoted), "\"%s\"", etag);
    struct xml_writer *x = xml_writer_new("CopyPartResult", S3_XMLNS);
    xml_text_element(x, "LastModified", s3_iso_time(time_now_ms(), date));
    xml_text_element(x, "ETag", quoted);
    size_t dlen;
    char *doc = xml_writer_finish(x, &dlen);
    s3_reply_xml(r, 200, doc, dlen);
out:
    blob_writer_abort(&bw);
    checksum_free(md5);
    checksum_free(sum);
    sse_ctr_free(enc);
    sse_key_clear(&sk);
    upload_row_clear(&u);
    object_row_clear(&src);
    if (err)
        s3_fail(r, err);
}

struct chosen_part {
    int number;
    char blob[40];
    uint64_t size;
    unsigned char md5[16];
    char checksum[72]; /* stored, base64 ("" none) */
    char iv[33];       /* its IV, encrypted uploads (sse.c) */
};

static int hex16(const char *s, unsigned char out[16])
{
    for (int i = 0; i < 16; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* Reads the client's part list and matches it with the stored parts. */
static int choose_parts(struct s3_req *r, struct chosen_part **out,
                        size_t *n_out, struct koala_error **err)
{
    _cleanup_free_ struct s3_complete_part *want = NULL;
    size_t n = 0;
    if (s3_parse_complete_body(r->body.data ? r->body.data : "", r->body.len,
                               &want, &n, err) < 0)
        return -1;
    struct chosen_part *parts = calloc(n, sizeof(*parts));
    if (parts == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    size_t i = 0;
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT blob, size, etag, checksum, iv FROM parts"
                               " WHERE upload_id=? AND part_number=?",
                               err);
    if (st == NULL)
        goto fail;
    for (i = 0; i < n; i++) {
        int64_t pn = want[i].number;
        const char *e = want[i].etag;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, s3_param(r, "uploadId"), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, pn);
        bool found = sqlite3_step(st) == SQLITE_ROW &&
                     strcmp((const char *)sqlite3_column_text(st, 2), e) == 0;
        if (found) {
            parts[i].number = (int)pn;
            snprintf(parts[i].blob, sizeof(parts[i].blob), "%s",
                     sqlite3_column_text(st, 0));
            parts[i].size = (uint64_t)sqlite3_column_int64(st, 1);
            snprintf(parts[i].checksum, sizeof(parts[i].checksum), "%s",
                     sqlite3_column_text(st, 3));
            snprintf(parts[i].iv, sizeof(parts[i].iv), "%s",
                     sqlite3_column_text(st, 4));
            /* a checksum the client names must be the part's */
            found = want[i].checksum[0] == '\0' ||
                    strcmp(want[i].checksum, parts[i].checksum) == 0;
            found = found && hex16((const char *)sqlite3_column_text(st, 2),
                                   parts[i].md5) == 0;
        }
        if (!found) {
            db_stmt_done(st);
            error_set(err, EINVAL, "InvalidPart",
                      "One or more of the specified parts could not be "
                      "found.  The part may not have been uploaded, or the "
                      "specified entity tag may not match the part's entity "
                      "tag.");
            goto fail;
        }
    }
    db_stmt_done(st);
    for (i = 0; i + 1 < n; i++)
        if (parts[i].size < WALRUS_MIN_PART) {
            error_set(err, EINVAL, "EntityTooSmall",
                      "Your proposed upload is smaller than the minimum "
                      "allowed object size.");
            goto fail;
        }
    *out = parts;
    *n_out = n;
    return 0;
fail:
    free(parts);
    return -1;
}

/* Retires every part blob of the upload and forgets it, in the caller's
 * transaction. */
static int drop_upload(struct db *db, const char *upload_id,
                       struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT blob FROM parts WHERE upload_id=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, upload_id, -1, SQLITE_STATIC);
    struct buf blobs = {0};
    while (sqlite3_step(st) == SQLITE_ROW)
        buf_printf(&blobs, "%s\n", sqlite3_column_text(st, 0));
    db_stmt_done(st);
    int rc = 0;
    char *save = NULL;
    for (char *b = blobs.data ? strtok_r(blobs.data, "\n", &save) : NULL;
         b && rc == 0; b = strtok_r(NULL, "\n", &save))
        rc = blob_mark_dead(db, b, err);
    buf_free(&blobs);
    if (rc < 0)
        return -1;
    static const char *const deletes[] = {
        "DELETE FROM parts WHERE upload_id=?",
        "DELETE FROM uploads WHERE upload_id=?",
    };
    for (size_t i = 0; i < ARRAY_SIZE(deletes); i++) {
        st = db_stmt(db, deletes[i], err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, upload_id, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        db_stmt_done(st);
        if (s != SQLITE_DONE)
            return db_error(db, "dropping upload", err);
    }
    return 0;
}

int meta_drop_upload(struct db *db, const char *upload_id,
                     struct koala_error **err)
{
    return drop_upload(db, upload_id, err);
}

int meta_drop_bucket_uploads(struct db *db, const char *bucket,
                             struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT upload_id FROM uploads WHERE bucket=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    struct buf ids = {0};
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW)
        buf_printf(&ids, "%s\n", sqlite3_column_text(st, 0));
    db_stmt_done(st);
    int rc = s == SQLITE_DONE ? 0 : db_error(db, "listing uploads", err);
    char *save = NULL;
    for (char *id = ids.data ? strtok_r(ids.data, "\n", &save) : NULL;
         id && rc == 0; id = strtok_r(NULL, "\n", &save))
        rc = drop_upload(db, id, err);
    buf_free(&ids);
    if (rc < 0)
        return -1;
    st = db_stmt(db, "DELETE FROM completed_uploads WHERE bucket=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    s = sqlite3_step(st);
    db_stmt_done(st);
    return s == SQLITE_DONE ? 0 : db_error(db, "dropping completions", err);
}

/* The object's checksum of an upload created with an algorithm: that
 * algorithm over the parts' raw checksums, base64, "-N" (S3's composite
 * checksum); every part must have one. */
static int composite_checksum(const struct upload_row *u,
                              const struct chosen_part *parts, size_t n,
                              struct object_row *o, struct buf *part_sums,
                              struct koala_error **err)
{
    enum checksum_alg alg;
    if (checksum_alg_parse(u->checksum_alg, &alg) < 0)
        return error_set(err, EINVAL, NULL, "stored checksum algorithm %s",
                         u->checksum_alg);
    struct checksum *c = checksum_new(alg);
    if (c == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t len = 0;
        unsigned char *raw = parts[i].checksum[0]
                                 ? str_base64_decode(parts[i].checksum, &len)
                                 : NULL;
        if (raw == NULL || len != checksum_alg_len(alg))
            rc = error_set(err, EINVAL, "InvalidRequest",
                           "The upload was created using a %s checksum. The "
                           "complete request referenced parts without a "
                           "checksum of that type (part %d).",
                           u->checksum_alg, parts[i].number);
        else
            checksum_update(c, raw, len);
        free(raw);
        buf_printf(part_sums, "%s%s", i ? "," : "", parts[i].checksum);
    }
    unsigned char d[CHECKSUM_MAX_LEN];
    size_t dlen = checksum_final(c, d);
    checksum_free(c);
    if (rc < 0)
        return -1;
    _cleanup_free_ char *b64 = str_base64_encode(d, dlen);
    snprintf(o->checksum_alg, sizeof(o->checksum_alg), "%s", u->checksum_alg);
    snprintf(o->checksum, sizeof(o->checksum), "%s-%zu", b64 ? b64 : "", n);
    o->part_checksums = part_sums->data;
    return 0;
}

void s3_complete_upload(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct upload_row u = {0};
    struct chosen_part *parts = NULL;
    size_t n = 0;
    struct blob_writer bw = {.fd = -1};
    struct buf sizes = {0}; /* the parts' sizes, kept with the object */
    struct buf part_sums = {0};
    struct buf sse = {0}; /* "record|iv1,iv2,..." of an encrypted upload */
    struct write_conditions cond;
    if (s3_bucket_access(r, PERM_WRITE, &b, &err) < 0 ||
        s3_write_conditions(r, &cond, &err) < 0)
        goto out;
    if (load_upload(r, &u, &err) < 0) {
        char etag[72], vid[40];
        if (strcmp(error_code(err), "NoSuchUpload") == 0 &&
            completed_upload_find(r->db, s3_param(r, "uploadId"), r->bucket,
                                  r->key, etag, vid, NULL) == 0) {
            /* a retry of a completion that succeeded: the same answer */
            error_free(err);
            err = NULL;
            s3_complete_reply(r, etag, vid, NULL, NULL);
        }
        goto out;
    }
    /* SSE-C headers on the completion (newer SDKs send them) must be the
     * upload's key; none is fine, as in S3. */
    if (s3_header(r, "x-amz-server-side-encryption-customer-algorithm") &&
        sse_part_open(r, u.sse, &err) < 0)
        goto out;
    if (choose_parts(r, &parts, &n, &err) < 0)
        goto out;
    struct checksum *md5 = checksum_new(CHECKSUM_MD5);
    if (md5 == NULL || blob_writer_open(r->w, &bw, false, &err) < 0) {
        checksum_free(md5);
        goto out;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        checksum_update(md5, parts[i].md5, 16);
        rc = blob_writer_append_blob(r->w, &bw, parts[i].blob, parts[i].size,
                                     &err);
    }
    unsigned char d[CHECKSUM_MAX_LEN];
    checksum_final(md5, d);
    checksum_free(md5);
    if (rc < 0 || blob_writer_sync(&bw, &err) < 0)
        goto out;
    struct object_row o = {0};
    str_hex(d, 16, o.etag);
    snprintf(o.etag + 32, sizeof(o.etag) - 32, "-%zu", n);
    o.key = r->key;
    snprintf(o.blob, sizeof(o.blob), "%s", bw.id);
    o.size = bw.size;
    o.mtime_ms = time_now_ms();
    o.headers = u.headers;
    o.tags = u.tags;
    objlock_apply(&o, &u.lock);
    if (u.checksum_alg[0] &&
        composite_checksum(&u, parts, n, &o, &part_sums, &err) < 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        buf_printf(&sizes, "%s%llu", i ? "," : "",
                   (unsigned long long)parts[i].size);
    o.part_sizes = sizes.data;
    if (u.sse[0]) {
        buf_printf(&sse, "%s|", u.sse);
        for (size_t i = 0; i < n; i++) {
            if (strlen(parts[i].iv) != 32) {
                error_set(&err, EIO, NULL, "part %d has no IV",
                          parts[i].number);
                goto out;
            }
            buf_printf(&sse, "%s%s", i ? "," : "", parts[i].iv);
        }
        o.sse = sse.data;
    }
    o.owner = u.owner;
    o.parts = (int)n;
    if (acl_decode(&o.acl, u.acl) < 0) {
        error_set(&err, EINVAL, NULL, "bad stored ACL");
        goto out;
    }
    struct upload_row again = {0};
    if (db_begin(r->db, &err) < 0)
        goto out;
    if (load_upload(r, &again, &err) < 0 ||
        s3_write_conditions_check(r->db, r->bucket, r->key, &cond, false, NULL,
                                  &err) < 0 ||
        meta_object_put(r->db, r->bucket, &o, &err) < 0 ||
        completed_upload_record(r->db, s3_param(r, "uploadId"), r->bucket,
                                r->key, o.etag, o.version_id, &err) < 0 ||
        drop_upload(r->db, s3_param(r, "uploadId"), &err) < 0) {
        upload_row_clear(&again);
        db_rollback(r->db);
        goto out;
    }
    upload_row_clear(&again);
    if (db_commit(r->db, &err) < 0 || blob_writer_publish(r->w, &bw, &err) < 0)
        goto out;
    sse_reply_record(r, u.sse);
    s3_complete_reply(r, o.etag, o.version_id, o.checksum_alg, o.checksum);
out:
    blob_writer_abort(&bw);
    upload_row_clear(&u);
    buf_free(&sizes);
    buf_free(&sse);
    buf_free(&part_sums);
    free(parts);
    if (err)
        s3_fail(r, err);
}

void s3_abort_upload(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct upload_row u;
    if (s3_bucket_access(r, PERM_WRITE, &b, &err) < 0 ||
        db_begin(r->db, &err) < 0)
        return s3_fail(r, err);
    if (load_upload(r, &u, &err) < 0 ||
        drop_upload(r->db, s3_param(r, "uploadId"), &err) < 0) {
        db_rollback(r->db);
        return s3_fail(r, err);
    }
    upload_row_clear(&u);
    if (db_commit(r->db, &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 204);
}
