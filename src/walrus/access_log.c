/* access_log.c: server access logging: Put/GetBucketLogging, and records in
 * S3's server access log format delivered as objects into the target
 * bucket under the target prefix.
 *
 * Which buckets log where is kept in memory (loaded from buckets.logging,
 * schema v11, at start; changed with the setting), so a request costs no
 * query to know.  At its end each request to such a bucket appends one
 * line to its target's buffer; a thread delivers the buffers every
 * --log-flush-interval seconds (and at a clean stop) as objects named
 * <prefix>YYYY-MM-DD-HH-MM-SS-<16 hex>, owned by the target bucket's owner,
 * each written as any PUT is (fsync, then the metadata commit).  Like S3's,
 * delivery is best effort: records still in memory at a kill -9 are lost;
 * a delivered log object is never half written.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "id.h"
#include "log.h"
#include "walrus.h"
#include "xml.h"

#define LOG_MAX_BUCKETS 256

struct log_target {
    char bucket[64]; /* the logged bucket */
    char target[64];
    char prefix[256];
    struct buf pending; /* lines not yet delivered */
};

struct access_log {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool stop, started;
    struct log_target t[LOG_MAX_BUCKETS];
    size_t n;
};

static struct log_target *find(struct access_log *l, const char *bucket)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->t[i].bucket, bucket) == 0)
            return &l->t[i];
    return NULL;
}

/* Sets (target NULL: removes) what bucket logs to; lock held. */
static void set_target(struct access_log *l, const char *bucket,
                       const char *target, const char *prefix)
{
    struct log_target *t = find(l, bucket);
    if (target == NULL) {
        if (t) { /* undelivered lines of a removed setting are dropped */
            buf_free(&t->pending);
            *t = l->t[--l->n];
        }
        return;
    }
    if (t == NULL) {
        if (l->n == LOG_MAX_BUCKETS)
            return;
        t = &l->t[l->n++];
        memset(t, 0, sizeof(*t));
        snprintf(t->bucket, sizeof(t->bucket), "%s", bucket);
    }
    snprintf(t->target, sizeof(t->target), "%s", target);
    snprintf(t->prefix, sizeof(t->prefix), "%s", prefix ? prefix : "");
}

/* ---- recording ---- */

static const char *operation(const struct s3_req *r, char *out, size_t size)
{
    /* REST.<METHOD>.<RESOURCE>, as S3 names them */
    const char *m = r->http ? http_request_method(r->http) : "GET";
    const char *what = r->key ? "OBJECT" : "BUCKET";
    static const char *const subs[] = {
        "acl",       "versioning", "tagging",          "cors",
        "policy",    "lifecycle",  "logging",          "uploads",
        "uploadId",  "versions",   "object-lock",      "retention",
        "legal-hold", "attributes", "publicAccessBlock", "ownershipControls",
        "location",
    };
    for (size_t i = 0; i < ARRAY_SIZE(subs); i++)
        if (s3_has_param(r, subs[i])) {
            what = subs[i];
            break;
        }
    snprintf(out, size, "REST.%s.%s", m, what);
    for (char *p = out; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 32);
        else if (*p == '-')
            *p = '_';
    return out;
}

static void quoted(struct buf *b, const char *s)
{
    buf_append(b, "\"", 1);
    for (; s && *s; s++)
        buf_printf(b, *s == '"' || *s < 0x20 ? "\\x%02x" : "%c",
                   (unsigned char)*s);
    buf_append(b, "\"", 1);
}

void access_log_record(struct s3_req *r, int64_t started_ms)
{
    struct access_log *l = r->w->access_log;
    if (l == NULL || r->bucket == NULL || r->http == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    bool on = find(l, r->bucket) != NULL;
    pthread_mutex_unlock(&l->lock);
    if (!on)
        return;
    char when[40], op[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "[%d/%b/%Y:%H:%M:%S +0000]", &tm);
    unsigned status = http_reply_status(r->http);
    uint64_t bytes = http_reply_bytes(r->http);
    struct buf line = {0};
    struct bucket_row b;
    struct koala_error *err = NULL;
    char owner[65] = "-";
    struct identity bo;
    struct db *db = s3_db(r, &err);
    if (db && meta_bucket_get(db, r->bucket, &b, &err) == 0 &&
        meta_identity_by_id(db, b.owner, &bo, &err) == 0)
        snprintf(owner, sizeof(owner), "%s", bo.canonical_id);
    error_free(err);
    buf_printf(&line, "%s %s %s %s %s %s %s ", owner, r->bucket, when,
               http_request_peer(r->http),
               r->who.anonymous ? "-" : r->who.canonical_id, r->request_id,
               operation(r, op, sizeof(op)));
    if (r->key)
        str_uri_encode(&line, r->key, strlen(r->key), true);
    else
        buf_append(&line, "-", 1);
    buf_append(&line, " ", 1);
    struct buf req = {0};
    buf_printf(&req, "%s %s HTTP/1.1", http_request_method(r->http),
               http_request_target(r->http));
    quoted(&line, req.data);
    buf_free(&req);
    buf_printf(&line, " %u - ", status);
    if (bytes)
        buf_printf(&line, "%llu", (unsigned long long)bytes);
    else
        buf_append(&line, "-", 1);
    buf_printf(&line, " - %lld - ", (long long)(time_now_ms() - started_ms));
    const char *ref = s3_header(r, "Referer");
    quoted(&line, ref ? ref : "-");
    buf_append(&line, " ", 1);
    const char *ua = s3_header(r, "User-Agent");
    quoted(&line, ua ? ua : "-");
    const char *vid = s3_param(r, "versionId");
    const char *host = s3_header(r, "Host");
    buf_printf(&line, " %s %s %s - %s %s - - -\n", vid ? vid : "-",
               r->request_id,
               r->who.anonymous ? "-" : r->have_v4 ? "SigV4" : "SigV2",
               r->who.anonymous ? "-"
               : r->presigned   ? "QueryString"
                                : "AuthHeader",
               host ? host : "-");
    pthread_mutex_lock(&l->lock);
    struct log_target *t = find(l, r->bucket);
    if (t && line.data)
        buf_append(&t->pending, line.data, line.len);
    pthread_mutex_unlock(&l->lock);
    buf_free(&line);
}

/* ---- delivery ---- */

struct deliver_job {
    const char *bucket;
    struct object_row *o;
};

static int deliver_run(struct db *db, void *ctx, struct koala_error **err)
{
    struct deliver_job *j = ctx;
    return meta_object_put(db, j->bucket, j->o, err);
}

static int deliver(struct walrus *w, const char *target, const char *prefix,
                   const struct buf *data, struct koala_error **err)
{
    struct db *db = db_pool_get(w->db, err);
    if (db == NULL)
        return -1;
    struct bucket_row b;
    struct identity owner;
    int rc = meta_bucket_get(db, target, &b, err);
    if (rc == 0)
        rc = meta_identity_by_id(db, b.owner, &owner, err);
    db_pool_put(w->db, db);
    if (rc != 0)
        return rc < 0 ? -1 : 0; /* the target is gone: nowhere to write */
    char name[400], rnd[17], date[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d-%H-%M-%S", &tm);
    if (id_random_hex(rnd, 8) < 0)
        return error_set_errno(err, "getrandom");
    snprintf(name, sizeof(name), "%s%s-%s", prefix, date, rnd);
    struct blob_writer bw = {.fd = -1};
    struct checksum *md5 = checksum_new(CHECKSUM_MD5);
    struct object_row o = {0};
    unsigned char d[CHECKSUM_MAX_LEN];
    /* A target with default encryption gets SSE-S3 log objects, as S3's;
     * the lines are enciphered in a copy before any byte is written. */
    struct sse_request q = {.mode = b.encryption[0] ? SSE_S3 : SSE_NONE};
    struct sse_key k = {0};
    const char *bytes = data->data;
    _cleanup_free_ char *sealed = NULL;
    rc = md5 ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
    if (rc == 0)
        checksum_update(md5, data->data, data->len);
    if (rc == 0 && q.mode != SSE_NONE) {
        struct sse_ctr *ctr = NULL;
        if (sse_seal(w, &q, &k, err) < 0)
            rc = -1;
        else if ((sealed = malloc(data->len ? data->len : 1)) == NULL ||
                 (ctr = sse_ctr_new(&k, 0)) == NULL ||
                 sse_ctr_apply(ctr, data->data, sealed, data->len) < 0)
            rc = error_set(err, ENOMEM, NULL, "out of memory");
        sse_ctr_free(ctr);
        bytes = sealed;
    }
    if (rc == 0 && (blob_writer_open(w, &bw, true, err) < 0 ||
                    blob_writer_write(&bw, bytes, data->len, err) < 0 ||
                    blob_writer_sync(&bw, err) < 0))
        rc = -1;
    if (rc == 0) {
        checksum_final(md5, d);
        str_hex(d, 16, o.etag);
        o.key = name;
        snprintf(o.blob, sizeof(o.blob), "%s", bw.id);
        o.size = bw.size;
        o.mtime_ms = time_now_ms();
        o.headers = (char *)"content-type: text/plain\n";
        o.owner = b.owner;
        o.is_inline = bw.is_inline;
        o.data = bw.pending.data;
        o.sse = k.desc;
        rc = acl_canned(&o.acl, "private", &owner, NULL, err);
    }
    struct deliver_job j = {.bucket = target, .o = &o};
    if (rc == 0 && (db_group_run(w->group, deliver_run, &j, err) < 0 ||
                    blob_writer_publish(w, &bw, err) < 0))
        rc = -1;
    blob_writer_abort(&bw);
    checksum_free(md5);
    sse_key_clear(&k);
    return rc;
}

int access_log_flush(struct walrus *w)
{
    struct access_log *l = w->access_log;
    if (l == NULL)
        return 0;
    struct {
        char target[64];
        char prefix[256];
        struct buf data;
    } out[LOG_MAX_BUCKETS];
    size_t n = 0;
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n; i++) {
        if (l->t[i].pending.len == 0)
            continue;
        snprintf(out[n].target, sizeof(out[n].target), "%s", l->t[i].target);
        snprintf(out[n].prefix, sizeof(out[n].prefix), "%s", l->t[i].prefix);
        out[n].data = l->t[i].pending; /* taken */
        memset(&l->t[i].pending, 0, sizeof(l->t[i].pending));
        n++;
    }
    pthread_mutex_unlock(&l->lock);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        struct koala_error *err = NULL;
        if (deliver(w, out[i].target, out[i].prefix, &out[i].data, &err) <
            0) {
            log_warn("access log for %s: %s", out[i].target,
                     error_message(err));
            error_free(err);
            rc = -1;
        }
        buf_free(&out[i].data);
    }
    return rc;
}

static void *flusher(void *arg)
{
    struct walrus *w = arg;
    struct access_log *l = w->access_log;
    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ms = (int64_t)(w->opt.log_flush_interval_s * 1000.0);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!l->stop &&
               pthread_cond_timedwait(&l->cond, &l->lock, &until) == 0)
            ;
        pthread_mutex_unlock(&l->lock);
        access_log_flush(w);
        pthread_mutex_lock(&l->lock);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

int access_log_start(struct walrus *w, struct koala_error **err)
{
    struct access_log *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    w->access_log = l;
    struct db *db = db_pool_get(w->db, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = db_stmt(
        db, "SELECT name, logging FROM buckets WHERE logging <> ''", err);
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 1);
        const char *nl = strchr(v, '\n');
        char target[64];
        snprintf(target, sizeof(target), "%.*s",
                 (int)(nl ? nl - v : (long)strlen(v)), v);
        set_target(l, (const char *)sqlite3_column_text(st, 0), target,
                   nl ? nl + 1 : "");
    }
    if (st)
        db_stmt_done(st);
    db_pool_put(w->db, db);
    if (st == NULL)
        return -1;
    if (pthread_create(&l->thread, NULL, flusher, w) != 0)
        return error_set(err, EAGAIN, NULL, "cannot start access log");
    l->started = true;
    return 0;
}

void access_log_stop(struct walrus *w)
{
    struct access_log *l = w->access_log;
    if (l == NULL)
        return;
    if (l->started) {
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_signal(&l->cond);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->thread, NULL);
        access_log_flush(w); /* what a clean stop still holds */
    }
    for (size_t i = 0; i < l->n; i++)
        buf_free(&l->t[i].pending);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    free(l);
    w->access_log = NULL;
}

/* ---- Put/GetBucketLogging ---- */

void s3_get_bucket_logging(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    struct access_log *l = r->w->access_log;
    struct xml_writer *x = xml_writer_new("BucketLoggingStatus", S3_XMLNS);
    pthread_mutex_lock(&l->lock);
    struct log_target *t = find(l, r->bucket);
    if (t) {
        xml_start(x, "LoggingEnabled");
        xml_text_element(x, "TargetBucket", t->target);
        xml_text_element(x, "TargetPrefix", t->prefix);
        xml_end(x);
    }
    pthread_mutex_unlock(&l->lock);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

void s3_put_bucket_logging(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b, tb;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    _cleanup_xml_doc_ struct xml_doc *doc =
        r->body.len ? xml_parse(r->body.data, r->body.len, WALRUS_MAX_XML_BODY,
                                &err)
                    : NULL;
    const struct xml_node *root = doc ? xml_root(doc) : NULL;
    const struct xml_node *en = root ? xml_child(root, "LoggingEnabled")
                                     : NULL;
    _cleanup_free_ char *target = en ? xml_child_text(en, "TargetBucket")
                                     : NULL;
    _cleanup_free_ char *prefix = en ? xml_child_text(en, "TargetPrefix")
                                     : NULL;
    if (root == NULL || strcmp(xml_name(root), "BucketLoggingStatus") != 0 ||
        (en && target == NULL)) {
        if (err == NULL)
            error_set(&err, EINVAL, "MalformedXML",
                      "The XML you provided was not well-formed or did not "
                      "validate against our published schema");
        return s3_fail(r, err);
    }
    if (target) {
        int rc = meta_bucket_get(r->db, str_trim(target), &tb, &err);
        if (rc == 1)
            error_set(&err, EINVAL, "InvalidTargetBucketForLogging",
                      "The target bucket for logging does not exist");
        else if (rc == 0 && tb.owner != b.owner)
            error_set(&err, EINVAL, "InvalidTargetBucketForLogging",
                      "The owner for the bucket to be logged and the target "
                      "bucket must be the same.");
        if (err)
            return s3_fail(r, err);
    }
    struct buf v = {0};
    if (target)
        buf_printf(&v, "%s\n%s", target, prefix ? prefix : "");
    else
        buf_append(&v, "", 0);
    int rc = s3_bucket_set_text(r, "logging", v.data ? v.data : "", &err);
    buf_free(&v);
    if (rc < 0)
        return s3_fail(r, err);
    struct access_log *l = r->w->access_log;
    pthread_mutex_lock(&l->lock);
    set_target(l, r->bucket, target, prefix);
    pthread_mutex_unlock(&l->lock);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}

void access_log_forget(struct walrus *w, const char *bucket)
{
    struct access_log *l = w->access_log;
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    set_target(l, bucket, NULL, NULL);
    pthread_mutex_unlock(&l->lock);
}
