/* object.c: object operations: PutObject, GetObject/HeadObject (ranges,
 * parts, conditions, response-* overrides), DeleteObject and DeleteObjects
 * (CopyObject: copy.c; the object ACL: object_acl.c). */
#define LOG_MODULE "walrus"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "walrus.h"
#include "xml.h"

char *s3_iso_time(int64_t ms, char out[25])
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    gmtime_r(&t, &tm);
    snprintf(out, 25, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (int)(ms % 1000));
    return out;
}

/* ---- stored headers ---- */

static const char *const stored_headers[] = {
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-amz-website-redirect-location",
};

struct collect_ctx {
    struct buf out;
    size_t meta_bytes;
    bool bad;
};

static int collect_iter(void *ctx, const char *name, const char *value)
{
    struct collect_ctx *c = ctx;
    char lname[256];
    size_t n = strlen(name);
    if (n >= sizeof(lname))
        return 0;
    for (size_t i = 0; i <= n; i++)
        lname[i] = (char)tolower((unsigned char)name[i]);
    bool keep = str_has_prefix(lname, "x-amz-meta-");
    if (keep)
        c->meta_bytes += n - 11 + strlen(value);
    for (size_t i = 0; !keep && i < ARRAY_SIZE(stored_headers); i++)
        keep = strcmp(lname, stored_headers[i]) == 0;
    if (!keep)
        return 0;
    if (strcmp(lname, "content-encoding") == 0) {
        /* aws-chunked is transport framing, not a property of the object. */
        struct buf v = {0};
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
             t = strtok_r(NULL, ",", &save)) {
            t = str_trim(t);
            if (*t && strcasecmp(t, "aws-chunked") != 0)
                buf_printf(&v, "%s%s", v.len ? "," : "", t);
        }
        if (v.len)
            buf_printf(&c->out, "%s: %s\n", lname, v.data);
        buf_free(&v);
        return 0;
    }
    buf_printf(&c->out, "%s: %s\n", lname, value);
    return 0;
}

int s3_collect_object_headers(struct s3_req *r, char **out,
                              struct koala_error **err)
{
    struct collect_ctx c = {0};
    http_request_headers_foreach(r->http, collect_iter, &c);
    if (c.meta_bytes > WALRUS_MAX_META) {
        buf_free(&c.out);
        return error_set(err, EINVAL, "MetadataTooLarge",
                         "Your metadata headers exceed the maximum allowed "
                         "metadata size.");
    }
    *out = buf_steal(&c.out);
    return *out ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
}

static const char *override_for(struct s3_req *r, const char *lname)
{
    static const char *const map[][2] = {
        {"content-type", "response-content-type"},
        {"content-language", "response-content-language"},
        {"expires", "response-expires"},
        {"cache-control", "response-cache-control"},
        {"content-disposition", "response-content-disposition"},
        {"content-encoding", "response-content-encoding"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(map); i++)
        if (strcmp(lname, map[i][0]) == 0)
            return s3_param(r, map[i][1]);
    return NULL;
}

/* A stored header as S3 answers it: user metadata that is not US-ASCII
 * RFC 2047-encoded ("=?UTF-8?B?...?="), so that it survives HTTP; an empty
 * value as one space, which HTTP reads as empty (libmicrohttpd refuses
 * empty values, and S3 keeps them). */
static void emit_stored_header(struct s3_req *r, const char *name,
                               const char *value)
{
    bool ascii = true;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        ascii &= *p < 0x80;
    if (!ascii && str_has_prefix(name, "x-amz-meta-")) {
        char *b64 =
            str_base64_encode((const unsigned char *)value, strlen(value));
        struct buf v = {0};
        buf_printf(&v, "=?UTF-8?B?%s?=", b64 ? b64 : "");
        if (v.data)
            http_reply_header(r->http, name, v.data);
        buf_free(&v);
        free(b64);
        return;
    }
    http_reply_header(r->http, name, *value ? value : " ");
}

void s3_emit_object_headers(struct s3_req *r, const char *headers)
{
    bool have_type = false;
    for (const char *p = headers; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        if (colon && colon + 2 <= p + len) {
            char *name = strndup(p, (size_t)(colon - p));
            char *value = strndup(colon + 2, len - (size_t)(colon - p) - 2);
            if (name && value && override_for(r, name) == NULL) {
                emit_stored_header(r, name, value);
                have_type |= strcmp(name, "content-type") == 0;
            }
            free(name);
            free(value);
        }
        p = nl ? nl + 1 : NULL;
    }
    static const char *const names[] = {
        "content-type",  "content-language",    "expires",
        "cache-control", "content-disposition", "content-encoding"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        const char *v = override_for(r, names[i]);
        if (v) {
            http_reply_header(r->http, names[i], v);
            have_type |= i == 0;
        }
    }
    if (!have_type)
        http_reply_header(r->http, "Content-Type", "binary/octet-stream");
}

/* ---- PutObject ---- */

int s3_upload_precheck(struct s3_req *r, struct koala_error **err);
int s3_upload_precheck(struct s3_req *r, struct koala_error **err)
{
    if (r->op == OP_UPLOAD_PART)
        return s3_upload_part_precheck(r, err);
    r->put = calloc(1, sizeof(*r->put));
    if (r->put == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    r->put->owner = r->who.account_id;
    if (s3_bucket_access(r, PERM_WRITE, &r->put->bucket, err) < 0)
        return -1;
    bool given;
    if (s3_collect_object_headers(r, &r->obj_headers, err) < 0 ||
        acl_from_headers(r, &r->put->acl, &r->who, &r->put->bucket.acl, &given,
                         err) < 0 ||
        s3_acl_guard(r, &r->put->bucket, &r->put->acl, given, err) < 0 ||
        s3_apply_ownership(r, &r->put->bucket, &r->put->owner, &r->put->acl,
                           err) < 0 ||
        tags_from_header(r, &r->put->tags, err) < 0 ||
        objlock_from_request(r, &r->put->bucket, &r->put->lock, err) < 0 ||
        sse_for_write(r, &r->put->bucket, &r->put->sse, err) < 0 ||
        s3_write_conditions(r, &r->put->cond, err) < 0 ||
        s3_write_conditions_check(r->db, r->bucket, r->key, &r->put->cond,
                                  false, &r->put->cond_existed, err) < 0)
        return -1;
    return 0;
}

static void reply_etag(struct s3_req *r, const char *etag)
{
    char quoted[80];
    snprintf(quoted, sizeof(quoted), "\"%s\"", etag);
    http_reply_header(r->http, "ETag", quoted);
}

void s3_reply_version(struct s3_req *r, const char *vid, bool versioned)
{
    if (vid[0] && (versioned || strcmp(vid, "null") != 0))
        http_reply_header(r->http, "x-amz-version-id", vid);
}

struct object_job {
    const char *bucket;
    struct object_row *o; /* put */
    const struct write_conditions *cond; /* put: NULL for none */
    bool cond_existed;
    /* delete: */
    const char *key;
    const char *vid;
    int64_t owner;
    bool bypass; /* of a GOVERNANCE retention */
    struct version_deleted res;
};

static int object_job_run(struct db *db, void *ctx, struct koala_error **err)
{
    struct object_job *j = ctx;
    if (j->o && j->cond &&
        s3_write_conditions_check(db, j->bucket, j->o->key, j->cond,
                                  j->cond_existed, NULL, err) < 0)
        return -1;
    if (j->o)
        return meta_object_put(db, j->bucket, j->o, err);
    return version_delete(db, j->bucket, j->key, j->vid, j->owner, j->bypass,
                          &j->res, err);
}

/* Commits an object whose data is in bw (with the concurrent requests'
 * changes: group commit) and publishes the blob. */
int s3_commit_object(struct s3_req *r, struct object_row *o,
                     struct blob_writer *bw, struct koala_error **err)
{
    struct object_job j = {.bucket = r->bucket, .o = o};
    if (r->op == OP_PUT_OBJECT && r->put) {
        j.cond = &r->put->cond;
        j.cond_existed = r->put->cond_existed;
    }
    if (db_group_run(r->w->group, object_job_run, &j, err) < 0)
        return -1;
    return blob_writer_publish(r->w, bw, err);
}

void s3_put_object(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct blob_writer *bw = upload_blob(r);
    struct object_row o = {0};
    const char *alg, *sum;
    upload_checksum(r, &alg, &sum);
    o.key = r->key;
    snprintf(o.blob, sizeof(o.blob), "%s", bw->id);
    o.size = bw->size;
    snprintf(o.etag, sizeof(o.etag), "%s", upload_etag(r));
    const struct sse_key *sk = upload_sse(r);
    sse_etag(sk, upload_etag(r), o.etag);
    o.sse = (char *)sk->desc;
    o.mtime_ms = time_now_ms();
    o.headers = r->obj_headers;
    snprintf(o.checksum_alg, sizeof(o.checksum_alg), "%s", alg);
    snprintf(o.checksum, sizeof(o.checksum), "%s", sum);
    o.owner = r->put->owner;
    o.acl = r->put->acl;
    o.tags = r->put->tags;
    objlock_apply(&o, &r->put->lock);
    o.is_inline = bw->is_inline;
    o.data = bw->pending.data;
    if (s3_commit_object(r, &o, bw, &err) < 0)
        return s3_fail(r, err);
    upload_published(r);
    reply_etag(r, o.etag);
    sse_reply_headers(r, sk);
    s3_reply_expiration(r, &r->put->bucket, &o);
    s3_reply_version(r, o.version_id, false);
    if (*alg) {
        char name[40];
        snprintf(name, sizeof(name), "x-amz-checksum-%s", alg);
        http_reply_header(r->http, name, sum);
    }
    s3_reply_xml(r, 200, strdup(""), 0);
}

/* ---- GetObject / HeadObject ---- */

static int pread_all(int fd, char *p, uint64_t len, uint64_t off);
static void reply_encrypted(struct s3_req *r, unsigned status,
                            const struct sse_key *k,
                            const struct object_row *o, int fd,
                            uint64_t first, uint64_t len);

/* RFC 7232 evaluation as S3 does it.  Returns 0 (go on), or -1 with
 * PreconditionFailed (412) / NotModified (304) in *err.  `copy` selects the
 * x-amz-copy-source-if-* headers, which fail with 412 only. */
int s3_check_read_conditions(struct s3_req *r, const struct object_row *o,
                             bool copy, struct koala_error **err)
{
    const char *im =
        s3_header(r, copy ? "x-amz-copy-source-if-match" : "If-Match");
    const char *inm = s3_header(r, copy ? "x-amz-copy-source-if-none-match"
                                        : "If-None-Match");
    const char *ims = s3_header(r, copy ? "x-amz-copy-source-if-modified-since"
                                        : "If-Modified-Since");
    const char *ius =
        s3_header(r, copy ? "x-amz-copy-source-if-unmodified-since"
                          : "If-Unmodified-Since");
    time_t mtime = (time_t)(o->mtime_ms / 1000), t;
    bool pre_ok = true, not_modified = false;
    if (im)
        pre_ok = s3_etag_matches(im, o->etag);
    else if (ius && time_parse(ius, &t) == 0 && mtime > t)
        pre_ok = false;
    if (!pre_ok)
        return error_set(err, EINVAL, "PreconditionFailed",
                         "At least one of the pre-conditions you specified "
                         "did not hold");
    if (inm)
        not_modified = s3_etag_matches(inm, o->etag);
    else if (ims && time_parse(ims, &t) == 0 && t <= time(NULL) && mtime <= t)
        not_modified = true;
    if (not_modified) {
        if (copy)
            return error_set(err, EINVAL, "PreconditionFailed",
                             "At least one of the pre-conditions you "
                             "specified did not hold");
        return error_set(err, 0, "NotModified", "Not Modified");
    }
    return 0;
}

/* Parses a single "bytes=" range.  Returns 1 with [*first, *last] set, 0 to
 * serve the whole object (no or unusable header), -1 if unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *first,
                       uint64_t *last)
{
    if (h == NULL || !str_has_prefix(h, "bytes=") || strchr(h, ','))
        return 0;
    const char *spec = h + 6;
    const char *dash = strchr(spec, '-');
    if (dash == NULL)
        return 0;
    char a[32] = "", b[32] = "";
    size_t alen = (size_t)(dash - spec);
    if (alen >= sizeof(a) || strlen(dash + 1) >= sizeof(b))
        return 0;
    memcpy(a, spec, alen);
    strcpy(b, dash + 1);
    uint64_t x, y;
    if (*a == '\0') { /* suffix: last y bytes */
        if (str_to_u64(b, &y) < 0)
            return 0;
        if (y == 0 || size == 0)
            return -1;
        *first = y >= size ? 0 : size - y;
        *last = size - 1;
        return 1;
    }
    if (str_to_u64(a, &x) < 0)
        return 0;
    if (*b == '\0')
        y = UINT64_MAX;
    else if (str_to_u64(b, &y) < 0 || y < x)
        return 0;
    if (x >= size)
        return -1;
    *first = x;
    *last = y >= size ? size - 1 : y;
    return 1;
}

static void object_reply_headers(struct s3_req *r, const struct object_row *o)
{
    char date[30];
    reply_etag(r, o->etag);
    http_reply_header(r->http, "Last-Modified",
                      time_format_http((time_t)(o->mtime_ms / 1000), date));
    http_reply_header(r->http, "Accept-Ranges", "bytes");
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_header(r->http, "x-amz-id-2", r->request_id);
    s3_emit_object_headers(r, o->headers);
}

/* GET/HEAD of a delete marker: 404 when it is the current version, 405
 * when asked for by its id (S3's answers), both saying what it is. */
static void delete_marker_reply(struct s3_req *r, struct object_row *o,
                                bool by_id)
{
    struct koala_error *err = NULL;
    http_reply_header(r->http, "x-amz-delete-marker", "true");
    http_reply_header(r->http, "x-amz-version-id", o->version_id);
    if (by_id) {
        char date[30];
        http_reply_header(r->http, "Last-Modified",
                          time_format_http((time_t)(o->mtime_ms / 1000), date));
        error_set(&err, EINVAL, "MethodNotAllowed",
                  "The specified method is not allowed against this "
                  "resource.");
    } else {
        error_set(&err, ENOENT, "NoSuchKey",
                  "The specified key does not exist.");
    }
    object_row_clear(o);
    s3_fail(r, err);
}

void s3_get_object(struct s3_req *r, bool head)
{
    struct koala_error *err = NULL;
    struct object_row o = {0};
    struct bucket_row b;
    for (size_t i = 0; i < r->n_params; i++)
        if (str_has_prefix(r->params[i].name, "response-") &&
            !r->signed_request) {
            error_set(&err, EINVAL, "InvalidRequest",
                      "Request specific response headers cannot be used for "
                      "anonymous GET requests.");
            return s3_fail(r, err);
        }
    /* The bucket and the object in one snapshot (and one round of SQLite
     * locking: this is the hot path). */
    const char *vid;
    struct db *db = s3_db(r, &err);
    int part;
    if (s3_version_param(r, &vid, &err) < 0 ||
        s3_part_number_param(r, &part, &err) < 0 || db == NULL ||
        db_begin_read(db, &err) < 0)
        return s3_fail(r, err);
    int rc = s3_bucket_access(r, 0, &b, &err);
    if (rc == 0)
        rc = meta_object_get_version(db, r->bucket, r->key, vid, &o, &err);
    db_rollback(db); /* read only: nothing to commit */
    if (rc == 1 && vid)
        error_set(&err, ENOENT, "NoSuchVersion",
                  "The specified version does not exist.");
    else if (rc == 1)
        error_set(&err, ENOENT, "NoSuchKey",
                  "The specified key does not exist.");
    if (rc != 0)
        return s3_fail(r, err);
    if (o.delete_marker)
        return delete_marker_reply(r, &o, vid != NULL);
    if (s3_authorize(r, &b, s3_op_action(r), r->key, &o, &o.acl, PERM_READ,
                     &err) < 0) {
        object_row_clear(&o);
        return s3_fail(r, err);
    }
    struct sse_request sq;
    struct sse_key sk;
    if (sse_from_request(r, SSE_USE_READ, &sq, &err) < 0 ||
        sse_open(r->w, o.sse, o.part_sizes, &sq, &sk, &err) < 0) {
        OPENSSL_cleanse(&sq, sizeof(sq));
        object_row_clear(&o);
        return s3_fail(r, err);
    }
    OPENSSL_cleanse(&sq, sizeof(sq));
    if (s3_check_read_conditions(r, &o, false, &err) < 0) {
        if (strcmp(error_code(err), "NotModified") == 0) {
            char date[30];
            reply_etag(r, o.etag);
            http_reply_header(
                r->http, "Last-Modified",
                time_format_http((time_t)(o.mtime_ms / 1000), date));
        }
        sse_key_clear(&sk);
        object_row_clear(&o);
        return s3_fail(r, err);
    }
    uint64_t first = 0, last = o.size ? o.size - 1 : 0, len = o.size;
    if (part) { /* one part's bytes, as a range of the object */
        if (object_part_range(&o, part, &first, &len, &err) < 0) {
            sse_key_clear(&sk);
            object_row_clear(&o);
            return s3_fail(r, err);
        }
        last = len ? first + len - 1 : first;
        rc = len ? 1 : 0;
    } else {
        rc = parse_range(s3_header(r, "Range"), o.size, &first, &last);
        len = rc == 1 ? last - first + 1 : o.size;
    }
    if (rc < 0) {
        char cr[64];
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)o.size);
        http_reply_header(r->http, "Content-Range", cr);
        sse_key_clear(&sk);
        object_row_clear(&o);
        error_set(&err, EINVAL, "InvalidRange",
                  "The requested range is not satisfiable");
        return s3_fail(r, err);
    }
    int fd = o.is_inline ? -1 : blob_open(r->w, o.blob, &err);
    if (fd < 0 && !o.is_inline) {
        sse_key_clear(&sk);
        object_row_clear(&o);
        return s3_fail(r, err);
    }
    object_reply_headers(r, &o);
    objlock_reply_headers(r, &o);
    sse_reply_headers(r, &sk);
    s3_reply_expiration(r, &b, &o);
    s3_reply_version(r, o.version_id, b.versioning[0] != '\0');
    size_t ntags = head ? 0 : tags_count(o.tags);
    if (ntags) {
        char n[16];
        snprintf(n, sizeof(n), "%zu", ntags);
        http_reply_header(r->http, "x-amz-tagging-count", n);
    }
    if (rc == 1) {
        char cr[96];
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu",
                 (unsigned long long)first, (unsigned long long)last,
                 (unsigned long long)o.size);
        http_reply_header(r->http, "Content-Range", cr);
    } else if (o.checksum_alg[0]) {
        const char *mode = s3_header(r, "x-amz-checksum-mode");
        if (mode && strcasecmp(mode, "ENABLED") == 0) {
            char name[40];
            snprintf(name, sizeof(name), "x-amz-checksum-%s", o.checksum_alg);
            http_reply_header(r->http, name, o.checksum);
        }
    }
    if (part && o.parts > 0) {
        char n[16];
        snprintf(n, sizeof(n), "%d", object_part_count(&o));
        http_reply_header(r->http, "x-amz-mp-parts-count", n);
    }
    unsigned status = rc == 1 ? 206 : 200;
    /* Small bodies go out with the headers in one send; larger ones with
     * sendfile.  (MHD sends no body for HEAD, but the right length.) */
    char *small = NULL;
    if (sk.mode != SSE_NONE && !head) {
        /* Deciphered on the way out: from memory when small, else as
         * MHD asks for it (no sendfile: the file holds ciphertext). */
        reply_encrypted(r, status, &sk, &o, fd, first, len);
    } else if (o.is_inline) {
        http_reply_buffer(r->http, status, NULL, o.data + first, len);
    } else if (!head && len <= WALRUS_SMALL_REPLY &&
               (small = malloc(len ? len : 1)) != NULL &&
               pread_all(fd, small, len, first) == 0) {
        close(fd);
        http_reply_take(r->http, status, NULL, small, len);
    } else {
        free(small);
        http_reply_fd(r->http, status, NULL, fd, first, len);
    }
    sse_key_clear(&sk);
    object_row_clear(&o);
}

static void reply_encrypted(struct s3_req *r, unsigned status,
                            const struct sse_key *k,
                            const struct object_row *o, int fd,
                            uint64_t first, uint64_t len)
{
    if (!o->is_inline && len > WALRUS_SMALL_REPLY) {
        sse_reply_fd(r, status, k, fd, first, len);
        return;
    }
    char *small = malloc(len ? len : 1);
    struct sse_ctr *ctr = sse_ctr_new(k, first);
    bool ok = small && ctr &&
              (o->is_inline ? (memcpy(small, o->data + first, len), true)
                            : pread_all(fd, small, len, first) == 0) &&
              sse_ctr_apply(ctr, small, small, len) == 0;
    sse_ctr_free(ctr);
    if (fd >= 0)
        close(fd);
    if (!ok) {
        free(small);
        struct koala_error *err = NULL;
        error_set(&err, EIO, NULL, "reading an encrypted object failed");
        s3_fail(r, err);
        return;
    }
    http_reply_take(r->http, status, NULL, small, len);
}

/* 0 when all len bytes at off were read. */
static int pread_all(int fd, char *p, uint64_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* ---- DeleteObject(s) ---- */

static int delete_one(struct s3_req *r, const struct bucket_row *b,
                      const char *key, const char *vid,
                      struct version_deleted *res, struct koala_error **err)
{
    struct object_job j = {.bucket = r->bucket,
                           .key = key,
                           .vid = vid,
                           .owner = r->who.account_id,
                           .bypass = vid && objlock_bypass(r, b, key)};
    int rc = db_group_run(r->w->group, object_job_run, &j, err);
    *res = j.res;
    return rc;
}

void s3_delete_object(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct version_deleted res;
    const char *vid;
    if (s3_version_param(r, &vid, &err) < 0 ||
        s3_bucket_access(r, PERM_WRITE, &b, &err) < 0 ||
        delete_one(r, &b, r->key, vid, &res, &err) < 0)
        return s3_fail(r, err);
    if (res.delete_marker)
        http_reply_header(r->http, "x-amz-delete-marker", "true");
    if (res.version_id[0])
        http_reply_header(r->http, "x-amz-version-id", res.version_id);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 204);
}

void s3_delete_objects(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    /* Each key is authorized on its own (a policy names objects). */
    if (s3_bucket_access(r, 0, &b, &err) < 0)
        return s3_fail(r, err);
    struct s3_delete_body d;
    if (s3_parse_delete_body(r->body.data ? r->body.data : "", r->body.len, &d,
                             &err) < 0) {
        s3_delete_body_free(&d);
        return s3_fail(r, err);
    }
    struct xml_writer *x = xml_writer_new("DeleteResult", S3_XMLNS);
    for (size_t i = 0; i < d.n; i++) {
        const char *key = d.keys[i], *vid = d.versions[i];
        struct koala_error *e = NULL;
        struct version_deleted res = {0};
        if (key == NULL || *key == '\0')
            error_set(&e, EINVAL, "UserKeyMustBeSpecified",
                      "The key must be specified.");
        else if (strlen(key) > WALRUS_MAX_KEY)
            error_set(&e, EINVAL, "KeyTooLongError", "Your key is too long");
        else if (vid && !version_id_valid(vid))
            error_set(&e, EINVAL, "InvalidArgument",
                      "Invalid version id specified");
        else if (s3_authorize(r, &b,
                              vid ? "s3:DeleteObjectVersion"
                                  : "s3:DeleteObject",
                              key, NULL, &b.acl, PERM_WRITE, &e) == 0)
            delete_one(r, &b, key, vid, &res, &e);
        if (e) {
            xml_start(x, "Error");
            xml_text_element(x, "Key", key ? key : "");
            if (vid)
                xml_text_element(x, "VersionId", vid);
            xml_text_element(x, "Code", error_code(e));
            xml_text_element(x, "Message", error_message(e));
            xml_end(x);
            error_free(e);
        } else if (!d.quiet) {
            xml_start(x, "Deleted");
            xml_text_element(x, "Key", key);
            if (vid)
                xml_text_element(x, "VersionId", vid);
            if (res.delete_marker) {
                xml_bool_element(x, "DeleteMarker", true);
                xml_text_element(x, "DeleteMarkerVersionId", res.version_id);
            }
            xml_end(x);
        }
    }
    s3_delete_body_free(&d);
    size_t len;
    char *out = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, out, len);
}
