/* server.c: koala-walrus' request lifecycle: the dispatch to the
 * operations, authentication, body intake and S3 error replies.  Addressing
 * and routing (which operation a request is) live in route.c, the
 * operations in bucket.c, object.c, list.c, multipart.c and the rest. */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "id.h"
#include "log.h"
#include "walrus.h"
#include "xml.h"

int s3_authenticate(struct s3_req *r, struct koala_error **err); /* auth.c */

/* ---- helpers ---- */

const char *s3_param(const struct s3_req *r, const char *name)
{
    for (size_t i = 0; i < r->n_params; i++)
        if (strcmp(r->params[i].name, name) == 0)
            return r->params[i].value;
    return NULL;
}

bool s3_has_param(const struct s3_req *r, const char *name)
{
    return s3_param(r, name) != NULL;
}

const char *s3_header(const struct s3_req *r, const char *name)
{
    if (r->header)
        return r->header(r->header_ctx, name);
    return r->http ? http_request_header(r->http, name) : NULL;
}

struct db *s3_db(struct s3_req *r, struct koala_error **err)
{
    if (r->db == NULL)
        r->db = db_pool_get(r->w->db, err);
    return r->db;
}

static const struct {
    const char *code;
    unsigned status;
} statuses[] = {
    {"AccessDenied", 403},
    {"AccessControlListNotSupported", 400},
    {"AccessForbidden", 403},
    {"AuthorizationHeaderMalformed", 400},
    {"AuthorizationQueryParametersError", 400},
    {"BadDigest", 400},
    {"BadRequest", 400},
    {"BucketAlreadyExists", 409},
    {"BucketAlreadyOwnedByYou", 409},
    {"BucketNotEmpty", 409},
    {"ConditionalRequestConflict", 409},
    {"EntityTooLarge", 400},
    {"EntityTooSmall", 400},
    {"IllegalLocationConstraintException", 400},
    {"IncompleteBody", 400},
    {"InternalError", 500},
    {"InvalidAccessKeyId", 403},
    {"InvalidArgument", 400},
    {"InvalidBucketAclWithObjectOwnership", 400},
    {"InvalidBucketName", 400},
    {"InvalidBucketState", 409},
    {"InvalidDigest", 400},
    {"InvalidEncryptionAlgorithmError", 400},
    {"InvalidLocationConstraint", 400},
    {"InvalidPart", 400},
    {"InvalidPartNumber", 416},
    {"InvalidPartOrder", 400},
    {"InvalidRange", 416},
    {"InvalidRequest", 400},
    {"InvalidTag", 400},
    {"InvalidTargetBucketForLogging", 400},
    {"InvalidURI", 400},
    {"KeyTooLongError", 400},
    {"MalformedACLError", 400},
    {"MalformedPolicy", 400},
    {"MalformedXML", 400},
    {"MaxMessageLengthExceeded", 400},
    {"MetadataTooLarge", 400},
    {"MethodNotAllowed", 405},
    {"MissingContentLength", 411},
    {"MissingRequestBodyError", 400},
    {"MissingSecurityHeader", 400},
    {"NoSuchBucket", 404},
    {"NoSuchBucketPolicy", 404},
    {"NoSuchPublicAccessBlockConfiguration", 404},
    {"NoSuchCORSConfiguration", 404},
    {"NoSuchKey", 404},
    {"NoSuchLifecycleConfiguration", 404},
    {"NoSuchObjectLockConfiguration", 404},
    {"NoSuchTagSet", 404},
    {"NoSuchUpload", 404},
    {"NoSuchVersion", 404},
    {"NotImplemented", 501},
    {"NotModified", 304},
    {"ObjectLockConfigurationNotFoundError", 404},
    {"OwnershipControlsNotFoundError", 404},
    {"PreconditionFailed", 412},
    {"RequestHeaderSectionTooLarge", 400},
    {"RequestTimeTooSkewed", 403},
    {"ServerSideEncryptionConfigurationNotFoundError", 404},
    {"ServiceUnavailable", 503},
    {"SignatureDoesNotMatch", 403},
    {"UnexpectedContent", 400},
    {"UnresolvableGrantByEmailAddress", 400},
    {"XAmzContentSHA256Mismatch", 400},
};

int s3_status_for(const char *code)
{
    for (size_t i = 0; i < ARRAY_SIZE(statuses); i++)
        if (strcmp(statuses[i].code, code) == 0)
            return (int)statuses[i].status;
    return 500;
}

static void add_common_headers(struct s3_req *r)
{
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_header(r->http, "x-amz-id-2", r->request_id);
}

void s3_reply_xml(struct s3_req *r, unsigned status, char *doc, size_t len)
{
    add_common_headers(r);
    if (doc == NULL) {
        http_reply_empty(r->http, 500);
        return;
    }
    http_reply_take(r->http, status, "application/xml", doc, len);
}

void s3_reply_error(struct s3_req *r, struct koala_error *err)
{
    /* A browser reads an error only with the CORS headers. */
    if (r->op != OP_NONE)
        s3_cors_headers(r);
    const char *code = error_code(err);
    unsigned status = err && err->status ? (unsigned)err->status
                                         : (unsigned)s3_status_for(code);
    if (status >= 500)
        log_error("%s %s: %s: %s", http_request_method(r->http),
                  http_request_target(r->http), code, error_message(err));
    else
        log_debug("%s %s: %s: %s", http_request_method(r->http),
                  http_request_target(r->http), code, error_message(err));
    if (status == 304) {
        add_common_headers(r);
        http_reply_empty(r->http, 304);
        return;
    }
    struct xml_writer *x = xml_writer_new("Error", NULL);
    xml_text_element(x, "Code", code);
    xml_text_element(x, "Message",
                     status >= 500 && err && err->code == NULL
                         ? "We encountered an internal error. Please try again."
                         : error_message(err));
    if (r->bucket && r->key == NULL)
        xml_text_element(x, "BucketName", r->bucket);
    if (r->key) {
        xml_text_element(x, "BucketName", r->bucket);
        xml_text_element(x, "Key", r->key);
    }
    if (r->resource)
        xml_text_element(x, "Resource", r->resource);
    xml_text_element(x, "RequestId", r->request_id);
    xml_text_element(x, "HostId", r->request_id);
    size_t len = 0;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, status, doc, len);
}

void s3_fail(struct s3_req *r, struct koala_error *err)
{
    s3_reply_error(r, err);
    error_free(err);
}

/* ---- dispatch ---- */

static void dispatch(struct s3_req *r)
{
    s3_cors_headers(r);
    switch (r->op) {
    case OP_LIST_BUCKETS:
        s3_list_buckets(r);
        break;
    case OP_CREATE_BUCKET:
        s3_create_bucket(r);
        break;
    case OP_DELETE_BUCKET:
        s3_delete_bucket(r);
        break;
    case OP_HEAD_BUCKET:
        s3_head_bucket(r);
        break;
    case OP_GET_BUCKET_LOCATION:
        s3_get_bucket_location(r);
        break;
    case OP_GET_BUCKET_VERSIONING:
        s3_get_bucket_versioning(r);
        break;
    case OP_PUT_BUCKET_VERSIONING:
        s3_put_bucket_versioning(r);
        break;
    case OP_GET_BUCKET_TAGGING:
        s3_get_bucket_tagging(r);
        break;
    case OP_PUT_BUCKET_TAGGING:
        s3_put_bucket_tagging(r);
        break;
    case OP_DELETE_BUCKET_TAGGING:
        s3_delete_bucket_tagging(r);
        break;
    case OP_GET_OBJECT_TAGGING:
        s3_get_object_tagging(r);
        break;
    case OP_GET_OBJECT_ATTRIBUTES:
        s3_get_object_attributes(r);
        break;
    case OP_GET_BUCKET_CORS:
        s3_get_bucket_cors(r);
        break;
    case OP_PUT_BUCKET_CORS:
        s3_put_bucket_cors(r);
        break;
    case OP_DELETE_BUCKET_CORS:
        s3_delete_bucket_cors(r);
        break;
    case OP_CORS_PREFLIGHT:
        s3_cors_preflight(r);
        break;
    case OP_POST_OBJECT:
        s3_post_object(r);
        break;
    case OP_GET_BUCKET_LOGGING:
        s3_get_bucket_logging(r);
        break;
    case OP_GET_BUCKET_ENCRYPTION:
        s3_get_bucket_encryption(r);
        break;
    case OP_PUT_BUCKET_ENCRYPTION:
        s3_put_bucket_encryption(r);
        break;
    case OP_DELETE_BUCKET_ENCRYPTION:
        s3_delete_bucket_encryption(r);
        break;
    case OP_PUT_BUCKET_LOGGING:
        s3_put_bucket_logging(r);
        break;
    case OP_GET_BUCKET_POLICY:
        s3_get_bucket_policy(r);
        break;
    case OP_PUT_BUCKET_POLICY:
        s3_put_bucket_policy(r);
        break;
    case OP_DELETE_BUCKET_POLICY:
        s3_delete_bucket_policy(r);
        break;
    case OP_GET_BUCKET_POLICY_STATUS:
        s3_get_bucket_policy_status(r);
        break;
    case OP_GET_PUBLIC_ACCESS_BLOCK:
        s3_get_public_access_block(r);
        break;
    case OP_PUT_PUBLIC_ACCESS_BLOCK:
        s3_put_public_access_block(r);
        break;
    case OP_DELETE_PUBLIC_ACCESS_BLOCK:
        s3_delete_public_access_block(r);
        break;
    case OP_GET_OWNERSHIP_CONTROLS:
        s3_get_ownership_controls(r);
        break;
    case OP_PUT_OWNERSHIP_CONTROLS:
        s3_put_ownership_controls(r);
        break;
    case OP_DELETE_OWNERSHIP_CONTROLS:
        s3_delete_ownership_controls(r);
        break;
    case OP_GET_OBJECT_LOCK_CONFIG:
        s3_get_object_lock_config(r);
        break;
    case OP_GET_BUCKET_LIFECYCLE:
        s3_get_bucket_lifecycle(r);
        break;
    case OP_PUT_BUCKET_LIFECYCLE:
        s3_put_bucket_lifecycle(r);
        break;
    case OP_DELETE_BUCKET_LIFECYCLE:
        s3_delete_bucket_lifecycle(r);
        break;
    case OP_PUT_OBJECT_LOCK_CONFIG:
        s3_put_object_lock_config(r);
        break;
    case OP_GET_OBJECT_RETENTION:
        s3_get_object_retention(r);
        break;
    case OP_PUT_OBJECT_RETENTION:
        s3_put_object_retention(r);
        break;
    case OP_GET_OBJECT_LEGAL_HOLD:
        s3_get_object_legal_hold(r);
        break;
    case OP_PUT_OBJECT_LEGAL_HOLD:
        s3_put_object_legal_hold(r);
        break;
    case OP_PUT_OBJECT_TAGGING:
        s3_put_object_tagging(r);
        break;
    case OP_DELETE_OBJECT_TAGGING:
        s3_delete_object_tagging(r);
        break;
    case OP_GET_BUCKET_ACL:
        s3_get_bucket_acl(r);
        break;
    case OP_PUT_BUCKET_ACL:
        s3_put_bucket_acl(r);
        break;
    case OP_LIST_OBJECTS:
        s3_list_objects(r, 1);
        break;
    case OP_LIST_OBJECTS_V2:
        s3_list_objects(r, 2);
        break;
    case OP_LIST_OBJECT_VERSIONS:
        s3_list_object_versions(r);
        break;
    case OP_LIST_UPLOADS:
        s3_list_uploads(r);
        break;
    case OP_DELETE_OBJECTS:
        s3_delete_objects(r);
        break;
    case OP_PUT_OBJECT:
        s3_put_object(r);
        break;
    case OP_COPY_OBJECT:
        s3_copy_object(r);
        break;
    case OP_GET_OBJECT:
        s3_get_object(r, false);
        break;
    case OP_HEAD_OBJECT:
        s3_get_object(r, true);
        break;
    case OP_DELETE_OBJECT:
        s3_delete_object(r);
        break;
    case OP_GET_OBJECT_ACL:
        s3_get_object_acl(r);
        break;
    case OP_PUT_OBJECT_ACL:
        s3_put_object_acl(r);
        break;
    case OP_CREATE_UPLOAD:
        s3_create_upload(r);
        break;
    case OP_UPLOAD_PART:
        s3_upload_part(r);
        break;
    case OP_UPLOAD_PART_COPY:
        s3_upload_part_copy(r);
        break;
    case OP_COMPLETE_UPLOAD:
        s3_complete_upload(r);
        break;
    case OP_ABORT_UPLOAD:
        s3_abort_upload(r);
        break;
    case OP_LIST_PARTS:
        s3_list_parts(r);
        break;
    case OP_NONE:
        break;
    }
    if (!http_replied(r->http)) {
        struct koala_error *err = NULL;
        error_set(&err, 0, NULL, "operation gave no reply");
        s3_fail(r, err);
    }
}

/* Operations that write (SQLite commits, fsync, copying data) run on a
 * worker thread; reads run on the event loop (see http_server.h). */
static bool op_blocks(enum s3_op op)
{
    switch (op) {
    case OP_CREATE_BUCKET:
    case OP_DELETE_BUCKET:
    case OP_PUT_BUCKET_ACL:
    case OP_PUT_BUCKET_VERSIONING:
    case OP_PUT_BUCKET_TAGGING:
    case OP_DELETE_BUCKET_TAGGING:
    case OP_PUT_BUCKET_CORS:
    case OP_DELETE_BUCKET_CORS:
    case OP_PUT_BUCKET_POLICY:
    case OP_DELETE_BUCKET_POLICY:
    case OP_POST_OBJECT:
    case OP_PUT_BUCKET_LOGGING:
    case OP_PUT_BUCKET_ENCRYPTION:
    case OP_DELETE_BUCKET_ENCRYPTION:
    case OP_PUT_PUBLIC_ACCESS_BLOCK:
    case OP_DELETE_PUBLIC_ACCESS_BLOCK:
    case OP_PUT_OWNERSHIP_CONTROLS:
    case OP_DELETE_OWNERSHIP_CONTROLS:
    case OP_PUT_OBJECT_LOCK_CONFIG:
    case OP_PUT_BUCKET_LIFECYCLE:
    case OP_DELETE_BUCKET_LIFECYCLE:
    case OP_PUT_OBJECT_RETENTION:
    case OP_PUT_OBJECT_LEGAL_HOLD:
    case OP_PUT_OBJECT_TAGGING:
    case OP_DELETE_OBJECT_TAGGING:
    case OP_DELETE_OBJECTS:
    case OP_PUT_OBJECT:
    case OP_COPY_OBJECT:
    case OP_DELETE_OBJECT:
    case OP_PUT_OBJECT_ACL:
    case OP_CREATE_UPLOAD:
    case OP_UPLOAD_PART:
    case OP_UPLOAD_PART_COPY:
    case OP_COMPLETE_UPLOAD:
    case OP_ABORT_UPLOAD:
        return true;
    default:
        return false;
    }
}

static void deferred_dispatch(struct http_request *http)
{
    dispatch(http_request_data(http));
}

/* Ends an upload (fsync: on a worker) and runs its operation. */
static void deferred_upload(struct http_request *http)
{
    struct s3_req *r = http_request_data(http);
    struct koala_error *err = NULL;
    if (upload_finish(r, &err) < 0)
        return s3_fail(r, err);
    dispatch(r);
}

/* Runs the operation now, or on a worker if it writes. */
static void run_op(struct s3_req *r)
{
    if (op_blocks(r->op))
        http_request_defer(r->http, deferred_dispatch);
    else
        dispatch(r);
}

static bool op_streams_body(enum s3_op op)
{
    return op == OP_PUT_OBJECT || op == OP_UPLOAD_PART;
}

static bool op_takes_xml(enum s3_op op)
{
    return op == OP_CREATE_BUCKET || op == OP_PUT_BUCKET_ACL ||
           op == OP_PUT_BUCKET_VERSIONING || op == OP_PUT_BUCKET_TAGGING ||
           op == OP_PUT_BUCKET_CORS || op == OP_PUT_BUCKET_POLICY ||
           op == OP_PUT_PUBLIC_ACCESS_BLOCK ||
           op == OP_PUT_OWNERSHIP_CONTROLS || op == OP_PUT_OBJECT_LOCK_CONFIG ||
           op == OP_PUT_OBJECT_RETENTION || op == OP_PUT_OBJECT_LEGAL_HOLD ||
           op == OP_PUT_BUCKET_LIFECYCLE || op == OP_PUT_BUCKET_LOGGING ||
           op == OP_PUT_BUCKET_ENCRYPTION ||
           op == OP_PUT_OBJECT_TAGGING ||
           op == OP_PUT_OBJECT_ACL || op == OP_DELETE_OBJECTS ||
           op == OP_COMPLETE_UPLOAD;
}

/* Before a streamed body is accepted (and 100-continue sent): the bucket
 * must exist and take writes from the caller, or the upload must exist. */
int s3_upload_precheck(struct s3_req *r, struct koala_error **err);

static const char *request_header(void *ctx, const char *lname)
{
    return http_request_header(ctx, lname);
}

static void on_request(struct http_request *http, void *ctx)
{
    struct s3_req *r = calloc(1, sizeof(*r));
    struct koala_error *err = NULL;
    if (r == NULL) {
        http_reply_empty(http, 503);
        return;
    }
    r->w = ctx;
    r->http = http;
    r->started_ms = time_now_ms();
    http_request_set_data(http, r);
    id_request(r->request_id);
    r->op = s3_route(r, http_request_method(http), http_request_path(http),
                     http_request_query(http), request_header, http, &err);
    if (r->op == OP_NONE)
        return s3_fail(r, err);
    if (s3_authenticate(r, &err) < 0)
        return s3_fail(r, err);
    if (r->op == OP_POST_OBJECT) {
        if (post_begin(r, &err) < 0)
            return s3_fail(r, err);
        return; /* the form follows */
    }
    if (op_streams_body(r->op)) {
        if (s3_upload_precheck(r, &err) < 0 || upload_begin(r, &err) < 0)
            return s3_fail(r, err);
        return; /* the body follows */
    }
    if (op_takes_xml(r->op)) {
        r->body_limit = WALRUS_MAX_XML_BODY;
        return; /* the body follows */
    }
    run_op(r);
}

static ssize_t on_body(struct http_request *http, const char *data, size_t len)
{
    struct s3_req *r = http_request_data(http);
    if (r->upload)
        return upload_feed(r, data, len, &r->err);
    if (r->post)
        return r->err ? -1 : post_feed(r, data, len, &r->err);
    if (r->body_sha256)
        checksum_update(r->body_sha256, data, len);
    if (r->body.len + len > r->body_limit) {
        error_set(&r->err, EINVAL, "MaxMessageLengthExceeded",
                  "Your request was too big.");
        return -1;
    }
    if (buf_append(&r->body, data, len) < 0) {
        error_set(&r->err, ENOMEM, NULL, "out of memory");
        return -1;
    }
    return (ssize_t)len;
}

static int check_payload_hash(struct s3_req *r, struct koala_error **err)
{
    if (r->body_sha256 == NULL)
        return 0;
    unsigned char d[CHECKSUM_MAX_LEN];
    char hex[65];
    checksum_final(r->body_sha256, d);
    checksum_free(r->body_sha256);
    r->body_sha256 = NULL;
    str_hex(d, 32, hex);
    if (strcasecmp(hex, r->v4.payload_hash) != 0)
        return error_set(err, EINVAL, "XAmzContentSHA256Mismatch",
                         "The provided 'x-amz-content-sha256' header does "
                         "not match what was computed.");
    return 0;
}

/* Content-MD5 on the small bodies (DeleteObjects requires one). */
static int check_body_md5(struct s3_req *r, struct koala_error **err)
{
    const char *md5 = s3_header(r, "Content-MD5");
    if (md5 == NULL)
        return 0;
    size_t n = 0;
    _cleanup_free_ unsigned char *want = str_base64_decode(md5, &n);
    if (want == NULL || n != 16)
        return error_set(err, EINVAL, "InvalidDigest",
                         "The Content-MD5 you specified was invalid.");
    unsigned char got[16];
    checksum_md5(r->body.data ? r->body.data : "", r->body.len, got);
    if (memcmp(got, want, 16) != 0)
        return error_set(err, EINVAL, "BadDigest",
                         "The Content-MD5 you specified did not match what "
                         "we received.");
    return 0;
}

static void on_complete(struct http_request *http)
{
    struct s3_req *r = http_request_data(http);
    struct koala_error *err = NULL;
    if (r->err) {
        err = r->err;
        r->err = NULL;
        return s3_fail(r, err);
    }
    if (r->upload)
        return http_request_defer(http, deferred_upload);
    if (check_payload_hash(r, &err) < 0 || check_body_md5(r, &err) < 0)
        return s3_fail(r, err);
    run_op(r);
}

void s3_req_free(struct s3_req *r)
{
    if (r == NULL)
        return;
    if (r->upload)
        upload_free(r->upload);
    if (r->sse_part) {
        sse_key_clear(r->sse_part);
        free(r->sse_part);
    }
    if (r->db)
        db_pool_put(r->w->db, r->db);
    for (size_t i = 0; i < r->n_params; i++) {
        free(r->params[i].name);
        free(r->params[i].value);
    }
    free(r->params);
    free(r->bucket);
    free(r->key);
    free(r->resource);
    free(r->obj_headers);
    policy_free(r->policy);
    post_free(r->post);
    if (r->put)
        free(r->put->tags);
    free(r->put);
    sigv4_auth_clear(&r->v4);
    checksum_free(r->body_sha256);
    buf_free(&r->body);
    error_free(r->err);
    free(r);
}

static void on_done(struct http_request *http)
{
    struct s3_req *r = http_request_data(http);
    if (r && r->op != OP_NONE)
        access_log_record(r, r->started_ms);
    s3_req_free(r);
}

static void on_oversized(struct http_request *http, void *ctx)
{
    struct s3_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        http_reply_empty(http, 400);
        return;
    }
    r->w = ctx;
    r->http = http;
    http_request_set_data(http, r);
    id_request(r->request_id);
    struct koala_error *err = NULL;
    error_set(&err, EINVAL, "RequestHeaderSectionTooLarge",
              "Your request header section exceeds the maximum allowed "
              "size.");
    s3_fail(r, err);
}

const struct http_handler walrus_http_handler = {
    .on_request = on_request,
    .on_body = on_body,
    .on_complete = on_complete,
    .on_done = on_done,
    .on_oversized = on_oversized,
};
