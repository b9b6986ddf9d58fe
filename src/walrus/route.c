/* route.c: which S3 operation a request is: addressing (path-style and
 * virtual-host-style), the query's parameters, and the table from method,
 * sub-resources and headers to the operation; sub-resources S3 has and
 * Walrus does not are refused with NotImplemented here, as are requests
 * asking for server-side encryption of operations that do not do it.  Apart from the connection, so that
 * the fuzz target tests/fuzz/fuzz_s3_router.c runs exactly this code. */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "walrus.h"

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
            {"encryption", OP_GET_BUCKET_ENCRYPTION, OP_PUT_BUCKET_ENCRYPTION,
             OP_DELETE_BUCKET_ENCRYPTION},
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
    /* Server-side encryption (sse.c) is done for PutObject, GetObject,
     * HeadObject, CopyObject and multipart uploads; elsewhere (POST's
     * fields are refused in post.c) a request that asks for it is refused rather
     * than stored in the clear behind its back. */
    static const char *const sse[] = {
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-customer-algorithm",
        "x-amz-server-side-encryption-customer-key",
        "x-amz-copy-source-server-side-encryption-customer-algorithm",
        "x-amz-copy-source-server-side-encryption-customer-key",
    };
    bool copy = op == OP_COPY_OBJECT || op == OP_UPLOAD_PART_COPY;
    bool sse_done = op == OP_PUT_OBJECT || op == OP_GET_OBJECT ||
                    op == OP_HEAD_OBJECT || op == OP_CREATE_UPLOAD ||
                    op == OP_UPLOAD_PART || op == OP_COMPLETE_UPLOAD ||
                    op == OP_GET_OBJECT_ATTRIBUTES || copy;
    for (size_t i = 0; op != OP_NONE && i < ARRAY_SIZE(sse); i++)
        if (s3_header(r, sse[i]) && (!sse_done || (i >= 3 && !copy))) {
            error_set(err, ENOTSUP, "NotImplemented",
                      "Server-side encryption (%s) is not implemented for "
                      "this operation.",
                      sse[i]);
            return OP_NONE;
        }
    return op;
}

