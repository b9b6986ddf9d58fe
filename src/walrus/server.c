/* server.c: koala-walrus' request lifecycle: addressing (path-style and
 * virtual-host-style), the operation table, authentication, body intake and
 * S3 error replies.  The operations themselves live in bucket.c, object.c,
 * list.c and multipart.c. */
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

/* ---- addressing ---- */

static int parse_query(struct s3_req *r, const char *q,
                       struct koala_error **err)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > 0) {
            const char *eq = memchr(q, '=', len);
            size_t nlen = eq ? (size_t)(eq - q) : len;
            struct query_param *p =
                realloc(r->params, (r->n_params + 1) * sizeof(*p));
            if (p == NULL)
                return error_set(err, ENOMEM, NULL, "out of memory");
            r->params = p;
            p = &r->params[r->n_params];
            p->name = str_uri_decode(q, nlen, true);
            p->value =
                eq ? str_uri_decode(eq + 1, len - nlen - 1, true) : strdup("");
            p->has_value = eq != NULL;
            if (p->name == NULL || p->value == NULL) {
                free(p->name);
                free(p->value);
                return error_set(err, EINVAL, "InvalidArgument",
                                 "Malformed query string.");
            }
            r->n_params++;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return 0;
}

/* Virtual-host-style: Host is "<bucket>.<domain>[:port]". */
static char *bucket_from_host(struct s3_req *r)
{
    const char *host = s3_header(r, "Host");
    const char *dom = r->w->domain;
    if (host == NULL || dom == NULL || *dom == '\0')
        return NULL;
    size_t hlen = strcspn(host, ":");
    size_t dlen = strlen(dom);
    if (hlen <= dlen + 1 || host[hlen - dlen - 1] != '.' ||
        strncasecmp(host + hlen - dlen, dom, dlen) != 0)
        return NULL;
    return strndup(host, hlen - dlen - 1);
}

static int parse_target(struct s3_req *r, const char *path, const char *query,
                        struct koala_error **err)
{
    if (*path != '/')
        return error_set(err, EINVAL, "InvalidURI",
                         "Couldn't parse the specified URI.");
    char *vb = bucket_from_host(r);
    const char *rest = path + 1;
    if (vb) {
        r->bucket = vb;
        r->virtual_host = true;
    } else if (*rest) {
        size_t blen = strcspn(rest, "/");
        r->bucket = str_uri_decode(rest, blen, false);
        if (r->bucket == NULL)
            return error_set(err, EINVAL, "InvalidURI",
                             "Couldn't parse the specified URI.");
        rest += blen;
        if (*rest == '/')
            rest++;
        else
            rest = NULL;
        if (*r->bucket == '\0') {
            free(r->bucket);
            r->bucket = NULL;
            if (rest && *rest) /* "//key": a key without a bucket */
                return error_set(err, EINVAL, "InvalidURI",
                                 "Couldn't parse the specified URI.");
        }
    } else {
        rest = NULL;
    }
    if (rest && *rest) {
        size_t klen = strlen(rest);
        r->key = str_uri_decode(rest, klen, false);
        if (r->key == NULL || !str_valid_utf8(r->key, strlen(r->key)))
            return error_set(err, EINVAL, "InvalidURI",
                             "Couldn't parse the specified URI.");
    }
    struct buf res = {0};
    buf_printf(&res, "/%s%s%s", r->bucket ? r->bucket : "", r->key ? "/" : "",
               r->key ? r->key : "");
    r->resource = buf_steal(&res);
    if (r->key && strlen(r->key) > WALRUS_MAX_KEY)
        return error_set(err, EINVAL, "KeyTooLongError",
                         "Your key is too long");
    return parse_query(r, query, err);
}

/* Sub-resources S3 has but Walrus does not implement: answered with
 * NotImplemented rather than silently treated as a plain request. */
static const char *const unsupported[] = {
    "accelerate",
    "analytics",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "metrics",
    "notification",
    "replication",
    "requestPayment",
    "restore",
    "select",
    "torrent",
    "website",
    "attributes",
};

static enum s3_op route(struct s3_req *r, const char *m,
                        struct koala_error **err)
{
    for (size_t i = 0; i < ARRAY_SIZE(unsupported); i++)
        if (s3_has_param(r, unsupported[i]) &&
            !(r->key && strcmp(unsupported[i], "attributes") == 0)) {
            error_set(err, ENOTSUP, "NotImplemented",
                      "The '%s' sub-resource is not implemented.",
                      unsupported[i]);
            return OP_NONE;
        }
    if (strcmp(m, "OPTIONS") == 0 && r->bucket)
        return OP_CORS_PREFLIGHT;
    bool get = strcmp(m, "GET") == 0, head = strcmp(m, "HEAD") == 0;
    bool put = strcmp(m, "PUT") == 0, post = strcmp(m, "POST") == 0;
    bool del = strcmp(m, "DELETE") == 0;
    if (r->bucket == NULL) {
        if (get)
            return OP_LIST_BUCKETS;
    } else if (r->key == NULL) {
        if (put && s3_has_param(r, "versioning"))
            return OP_PUT_BUCKET_VERSIONING;
        static const struct {
            const char *param;
            enum s3_op get, put, del;
        } settings[] = {
            {"policy", OP_GET_BUCKET_POLICY, OP_PUT_BUCKET_POLICY,
             OP_DELETE_BUCKET_POLICY},
            {"policyStatus", OP_GET_BUCKET_POLICY_STATUS, OP_NONE, OP_NONE},
            {"publicAccessBlock", OP_GET_PUBLIC_ACCESS_BLOCK,
             OP_PUT_PUBLIC_ACCESS_BLOCK, OP_DELETE_PUBLIC_ACCESS_BLOCK},
            {"ownershipControls", OP_GET_OWNERSHIP_CONTROLS,
             OP_PUT_OWNERSHIP_CONTROLS, OP_DELETE_OWNERSHIP_CONTROLS},
            {"object-lock", OP_GET_OBJECT_LOCK_CONFIG,
             OP_PUT_OBJECT_LOCK_CONFIG, OP_NONE},
            {"lifecycle", OP_GET_BUCKET_LIFECYCLE, OP_PUT_BUCKET_LIFECYCLE,
             OP_DELETE_BUCKET_LIFECYCLE},
            {"logging", OP_GET_BUCKET_LOGGING, OP_PUT_BUCKET_LOGGING,
             OP_NONE},
        };
        for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
            if (!s3_has_param(r, settings[i].param))
                continue;
            enum s3_op op = get   ? settings[i].get
                            : put ? settings[i].put
                            : del ? settings[i].del
                                  : OP_NONE;
            if (op != OP_NONE)
                return op;
            error_set(err, EINVAL, "MethodNotAllowed",
                      "The specified method is not allowed against this "
                      "resource.");
            return OP_NONE;
        }
        if (s3_has_param(r, "cors")) {
            if (put)
                return OP_PUT_BUCKET_CORS;
            if (get)
                return OP_GET_BUCKET_CORS;
            if (del)
                return OP_DELETE_BUCKET_CORS;
        }
        if (s3_has_param(r, "tagging")) {
            if (put)
                return OP_PUT_BUCKET_TAGGING;
            if (get)
                return OP_GET_BUCKET_TAGGING;
            if (del)
                return OP_DELETE_BUCKET_TAGGING;
        }
        if (put)
            return s3_has_param(r, "acl") ? OP_PUT_BUCKET_ACL
                                          : OP_CREATE_BUCKET;
        if (head)
            return OP_HEAD_BUCKET;
        if (del)
            return OP_DELETE_BUCKET;
        if (post && s3_has_param(r, "delete"))
            return OP_DELETE_OBJECTS;
        if (post && r->n_params == 0) /* an HTML form (post.c) */
            return OP_POST_OBJECT;
        if (get) {
            if (s3_has_param(r, "acl"))
                return OP_GET_BUCKET_ACL;
            if (s3_has_param(r, "location"))
                return OP_GET_BUCKET_LOCATION;
            if (s3_has_param(r, "versioning"))
                return OP_GET_BUCKET_VERSIONING;
            if (s3_has_param(r, "uploads"))
                return OP_LIST_UPLOADS;
            if (s3_has_param(r, "versions"))
                return OP_LIST_OBJECT_VERSIONS;
            const char *lt = s3_param(r, "list-type");
            if (lt && strcmp(lt, "2") == 0)
                return OP_LIST_OBJECTS_V2;
            if (lt) {
                error_set(err, EINVAL, "InvalidArgument",
                          "Invalid list-type '%s'.", lt);
                return OP_NONE;
            }
            return OP_LIST_OBJECTS;
        }
    } else {
        bool upload_id = s3_has_param(r, "uploadId");
        if (s3_has_param(r, "retention") || s3_has_param(r, "legal-hold")) {
            bool ret = s3_has_param(r, "retention");
            if (get)
                return ret ? OP_GET_OBJECT_RETENTION : OP_GET_OBJECT_LEGAL_HOLD;
            if (put)
                return ret ? OP_PUT_OBJECT_RETENTION : OP_PUT_OBJECT_LEGAL_HOLD;
            error_set(err, EINVAL, "MethodNotAllowed",
                      "The specified method is not allowed against this "
                      "resource.");
            return OP_NONE;
        }
        if (s3_has_param(r, "tagging")) {
            if (put)
                return OP_PUT_OBJECT_TAGGING;
            if (get)
                return OP_GET_OBJECT_TAGGING;
            if (del)
                return OP_DELETE_OBJECT_TAGGING;
        }
        if (put) {
            if (s3_has_param(r, "acl"))
                return OP_PUT_OBJECT_ACL;
            if (upload_id || s3_has_param(r, "partNumber")) {
                if (!upload_id || !s3_has_param(r, "partNumber")) {
                    error_set(err, EINVAL, "InvalidRequest",
                              "uploadId and partNumber go together.");
                    return OP_NONE;
                }
                return s3_header(r, "x-amz-copy-source") ? OP_UPLOAD_PART_COPY
                                                         : OP_UPLOAD_PART;
            }
            return s3_header(r, "x-amz-copy-source") ? OP_COPY_OBJECT
                                                     : OP_PUT_OBJECT;
        }
        if (s3_has_param(r, "attributes") && !get) {
            error_set(err, EINVAL, "MethodNotAllowed",
                      "The specified method is not allowed against this "
                      "resource.");
            return OP_NONE;
        }
        if (get || head) {
            if (get && s3_has_param(r, "attributes"))
                return OP_GET_OBJECT_ATTRIBUTES;
            if (get && s3_has_param(r, "acl"))
                return OP_GET_OBJECT_ACL;
            if (get && upload_id)
                return OP_LIST_PARTS;
            return get ? OP_GET_OBJECT : OP_HEAD_OBJECT;
        }
        if (del)
            return upload_id ? OP_ABORT_UPLOAD : OP_DELETE_OBJECT;
        if (post) {
            if (s3_has_param(r, "uploads"))
                return OP_CREATE_UPLOAD;
            if (upload_id)
                return OP_COMPLETE_UPLOAD;
        }
    }
    error_set(err, EINVAL, "MethodNotAllowed",
              "The specified method is not allowed against this resource.");
    return OP_NONE;
}

enum s3_op s3_route(struct s3_req *r, const char *method, const char *path,
                    const char *query, sigv4_header_fn header, void *hctx,
                    struct koala_error **err)
{
    r->header = header;
    r->header_ctx = hctx;
    if (parse_target(r, path, query, err) < 0)
        return OP_NONE;
    enum s3_op op = route(r, method, err);
    /* Server-side encryption is not implemented: a request that asks for
     * it is refused rather than stored in the clear behind its back. */
    static const char *const sse[] = {
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-customer-algorithm",
        "x-amz-copy-source-server-side-encryption-customer-algorithm",
    };
    for (size_t i = 0; op != OP_NONE && i < ARRAY_SIZE(sse); i++)
        if (s3_header(r, sse[i])) {
            error_set(err, ENOTSUP, "NotImplemented",
                      "Server-side encryption (%s) is not implemented.",
                      sse[i]);
            return OP_NONE;
        }
    return op;
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
