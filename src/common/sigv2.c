/* sigv2.c: AWS Signature Version 2 for S3 (see sigv2.h).
 *
 * The canonical form follows what boto, botocore's HmacV1Auth and s3cmd
 * produce, since they are the clients still signing this way: the resource
 * is the raw (still encoded) path, and the query's sub-resources are listed
 * sorted by name, values percent-decoded, a bare "uploads" kept bare.
 */
#include "sigv2.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

/* The query parameters that are part of the signed resource (botocore's
 * HmacV1Auth list, which covers the older boto and s3cmd lists). */
static const char *const sub_resources[] = {
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "retention",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
};

/* Looked up by name when the request cannot list its headers. */
static const char *const known_amz_headers[] = {
    "x-amz-acl",
    "x-amz-content-sha256",
    "x-amz-copy-source",
    "x-amz-copy-source-if-match",
    "x-amz-copy-source-if-modified-since",
    "x-amz-copy-source-if-none-match",
    "x-amz-copy-source-if-unmodified-since",
    "x-amz-copy-source-range",
    "x-amz-date",
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write",
    "x-amz-grant-write-acp",
    "x-amz-metadata-directive",
    "x-amz-request-payer",
    "x-amz-security-token",
    "x-amz-server-side-encryption",
    "x-amz-storage-class",
    "x-amz-tagging",
    "x-amz-tagging-directive",
    "x-amz-website-redirect-location",
};

static const char msg_mismatch[] =
    "The request signature we calculated does not match the signature you "
    "provided. Check your key and signing method.";

static bool is_sub_resource(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(sub_resources); i++)
        if (strlen(sub_resources[i]) == len &&
            memcmp(sub_resources[i], name, len) == 0)
            return true;
    return false;
}

/* ---- CanonicalizedAmzHeaders ---- */

struct amz_header {
    char *name; /* lower case */
    struct buf value;
};

struct amz_headers {
    struct amz_header *v;
    size_t n;
    bool oom;
};

static void amz_headers_free(struct amz_headers *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i].name);
        buf_free(&h->v[i].value);
    }
    free(h->v);
}

/* Adds one occurrence: trimmed, folded white space made one space, joined
 * to an earlier occurrence with ','. */
static int amz_add(void *ctx, const char *name, const char *value)
{
    struct amz_headers *h = ctx;
    if (!str_has_prefix_nocase(name, "x-amz-"))
        return 0;
    struct amz_header *e = NULL;
    for (size_t i = 0; i < h->n; i++)
        if (strcasecmp(h->v[i].name, name) == 0)
            e = &h->v[i];
    if (e == NULL) {
        struct amz_header *nv = realloc(h->v, (h->n + 1) * sizeof(*nv));
        if (nv == NULL)
            goto oom;
        h->v = nv;
        e = &h->v[h->n];
        memset(e, 0, sizeof(*e));
        e->name = strdup(name);
        if (e->name == NULL)
            goto oom;
        for (char *p = e->name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        h->n++;
    } else if (buf_append_char(&e->value, ',') < 0) {
        goto oom;
    }
    bool any = false, gap = false;
    for (const char *p = value ? value : ""; *p; p++) {
        if (isspace((unsigned char)*p)) {
            gap = any;
            continue;
        }
        if ((gap && buf_append_char(&e->value, ' ') < 0) ||
            buf_append_char(&e->value, *p) < 0)
            goto oom;
        gap = false;
        any = true;
    }
    return 0;
oom:
    h->oom = true;
    return 1;
}

static int amz_cmp(const void *a, const void *b)
{
    const struct amz_header *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int canonical_amz_headers(const struct sigv4_request *req,
                                 struct buf *out)
{
    struct amz_headers h = {0};
    if (req->header_foreach) {
        req->header_foreach(req->header_ctx, amz_add, &h);
    } else {
        for (size_t i = 0; i < ARRAY_SIZE(known_amz_headers) && !h.oom; i++) {
            const char *v = req->header(req->header_ctx, known_amz_headers[i]);
            if (v)
                amz_add(&h, known_amz_headers[i], v);
        }
    }
    int rc = h.oom ? -1 : 0;
    if (rc == 0 && h.n > 1)
        qsort(h.v, h.n, sizeof(*h.v), amz_cmp);
    for (size_t i = 0; rc == 0 && i < h.n; i++)
        if (buf_printf(out, "%s:%s\n", h.v[i].name,
                       h.v[i].value.data ? h.v[i].value.data : "") < 0)
            rc = -1;
    amz_headers_free(&h);
    return rc;
}

/* ---- CanonicalizedResource ---- */

struct subres {
    const char *name;
    size_t name_len;
    char *value; /* decoded; NULL when the parameter had no '=' */
};

static int canonical_resource(const struct sigv4_request *req,
                              const char *bucket_prefix, struct buf *out)
{
    const char *path = req->raw_path && *req->raw_path ? req->raw_path : "/";
    if (buf_append_str(out, bucket_prefix ? bucket_prefix : "") < 0 ||
        buf_append_str(out, path) < 0)
        return -1;
    const char *q = req->raw_query ? req->raw_query : "";
    size_t cap = 1;
    for (const char *p = q; *p; p++)
        cap += *p == '&';
    struct subres *s = calloc(cap, sizeof(*s));
    if (s == NULL)
        return -1;
    size_t n = 0;
    int rc = -1;
    const char *p = q;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t nlen = eq ? (size_t)(eq - p) : len;
        if (nlen > 0 && is_sub_resource(p, nlen)) {
            s[n].name = p;
            s[n].name_len = nlen;
            if (eq) {
                s[n].value = str_uri_decode(eq + 1, len - nlen - 1, false);
                /* An undecodable value is signed as sent. */
                if (s[n].value == NULL)
                    s[n].value = strndup(eq + 1, len - nlen - 1);
                if (s[n].value == NULL)
                    goto out;
            }
            n++;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    /* Insertion sort by name: stable, as the clients' sorts are. */
    for (size_t i = 1; i < n; i++) {
        struct subres t = s[i];
        size_t j = i;
        while (j > 0) {
            const struct subres *a = &s[j - 1];
            size_t m = a->name_len < t.name_len ? a->name_len : t.name_len;
            int c = memcmp(a->name, t.name, m);
            if (c < 0 || (c == 0 && a->name_len <= t.name_len))
                break;
            s[j] = s[j - 1];
            j--;
        }
        s[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        if (buf_append_char(out, i ? '&' : '?') < 0 ||
            buf_append(out, s[i].name, s[i].name_len) < 0 ||
            (s[i].value && buf_printf(out, "=%s", s[i].value) < 0))
            goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        free(s[i].value);
    free(s);
    return rc;
}

char *sigv2_string_to_sign(const struct sigv4_request *req,
                           const char *bucket_prefix,
                           const char *date_or_expires)
{
    const char *md5 = req->header(req->header_ctx, "content-md5");
    const char *type = req->header(req->header_ctx, "content-type");
    struct buf b = {0};
    if (buf_printf(&b, "%s\n%s\n%s\n%s\n", req->method ? req->method : "",
                   md5 ? md5 : "", type ? type : "",
                   date_or_expires ? date_or_expires : "") < 0 ||
        canonical_amz_headers(req, &b) < 0 ||
        canonical_resource(req, bucket_prefix, &b) < 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

char *sigv2_sign(const char *secret, const char *string_to_sign)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (HMAC(EVP_sha1(), secret, (int)strlen(secret),
             (const unsigned char *)string_to_sign, strlen(string_to_sign), mac,
             &n) == NULL)
        return NULL;
    return str_base64_encode(mac, n);
}

/* ---- parsing ---- */

void sigv2_auth_clear(struct sigv2_auth *auth)
{
    if (auth == NULL)
        return;
    free(auth->access_key);
    free(auth->signature);
    memset(auth, 0, sizeof(*auth));
}

/* The decoded value of a query parameter (first occurrence), NULL if
 * absent; *bad set when present but not decodable. */
static char *query_get(const char *q, const char *name, bool *bad)
{
    size_t nl = strlen(name);
    const char *p = q ? q : "";
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            char *v = str_uri_decode(p + nl + 1, len - nl - 1, false);
            if (v == NULL)
                *bad = true;
            return v;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return NULL;
}

static int parse_header(const char *authz, struct sigv2_auth *auth,
                        struct koala_error **err)
{
    const char *p = authz + 4;
    while (*p == ' ')
        p++;
    const char *colon = strrchr(p, ':');
    size_t klen = colon ? (size_t)(colon - p) : 0;
    if (colon == NULL || klen == 0 || colon[1] == '\0')
        return error_set(err, EINVAL, "InvalidArgument",
                         "AWS authorization header is invalid.  Expected "
                         "AwsAccessKeyId:signature");
    auth->access_key = strndup(p, klen);
    auth->signature = strdup(colon + 1);
    if (auth->access_key == NULL || auth->signature == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    str_trim(auth->signature);
    return 1;
}

static int parse_query(const struct sigv4_request *req, struct sigv2_auth *auth,
                       struct koala_error **err)
{
    bool bad = false;
    _cleanup_free_ char *expires = query_get(req->raw_query, "Expires", &bad);
    auth->access_key = query_get(req->raw_query, "AWSAccessKeyId", &bad);
    auth->signature = query_get(req->raw_query, "Signature", &bad);
    if (auth->access_key == NULL && auth->signature == NULL && !bad)
        return 0;
    auth->presigned = true;
    if (bad || auth->access_key == NULL || auth->signature == NULL ||
        expires == NULL || auth->access_key[0] == '\0')
        return error_set(err, EACCES, "AccessDenied",
                         "Query-string authentication requires the "
                         "Signature, Expires and AWSAccessKeyId "
                         "parameters");
    int64_t e;
    if (str_to_i64(expires, &e) < 0 || e < 0)
        return error_set(err, EACCES, "AccessDenied",
                         "Invalid date (should be seconds since epoch): %s",
                         expires);
    auth->expires = (time_t)e;
    /* A '+' of the base64 signature left unescaped reads as a space. */
    for (char *s = auth->signature; *s; s++)
        if (*s == ' ')
            *s = '+';
    return 1;
}

int sigv2_parse(const struct sigv4_request *req, struct sigv2_auth *auth,
                struct koala_error **err)
{
    memset(auth, 0, sizeof(*auth));
    const char *authz = req->header(req->header_ctx, "authorization");
    int rc;
    if (authz != NULL) {
        if (!str_has_prefix(authz, "AWS "))
            return error_set(err, EINVAL, "InvalidArgument",
                             "Unsupported Authorization Type");
        rc = parse_header(authz, auth, err);
    } else {
        rc = parse_query(req, auth, err);
    }
    if (rc <= 0)
        sigv2_auth_clear(auth);
    return rc;
}

/* ---- verification ---- */

/* 1 when auth's signature is the one for req, 0 when not, -1 on OOM. */
static int signature_matches(const struct sigv4_request *req,
                             const struct sigv2_auth *auth,
                             const char *bucket_prefix, const char *secret,
                             const char *date_line)
{
    _cleanup_free_ char *sts =
        sigv2_string_to_sign(req, bucket_prefix, date_line);
    _cleanup_free_ char *want = sts ? sigv2_sign(secret, sts) : NULL;
    if (want == NULL)
        return -1;
    size_t n = strlen(want);
    return auth->signature && strlen(auth->signature) == n &&
           CRYPTO_memcmp(auth->signature, want, n) == 0;
}

int sigv2_verify(const struct sigv4_request *req, const struct sigv2_auth *auth,
                 const char *bucket_prefix, const char *secret, time_t now,
                 struct koala_error **err)
{
    char line[32];
    const char *date_line;
    if (auth->presigned) {
        if (now > auth->expires)
            return error_set(err, EACCES, "AccessDenied",
                             "Request has expired");
        snprintf(line, sizeof(line), "%lld", (long long)auth->expires);
        date_line = line;
    } else {
        /* x-amz-date, when present, replaces Date (and is signed among the
         * x-amz-* headers, so the Date line is left empty). */
        const char *amz = req->header(req->header_ctx, "x-amz-date");
        const char *date = amz ? amz : req->header(req->header_ctx, "date");
        time_t t;
        if (date == NULL || time_parse(date, &t) < 0)
            return error_set(err, EACCES, "AccessDenied",
                             "AWS authentication requires a valid Date or "
                             "x-amz-date header");
        if (t > now + SIGV4_MAX_SKEW_SECONDS ||
            now > t + SIGV4_MAX_SKEW_SECONDS)
            return error_set(err, EACCES, "RequestTimeTooSkewed",
                             "The difference between the request time and "
                             "the current time is too large.");
        date_line = amz ? "" : date;
    }
    int rc = signature_matches(req, auth, bucket_prefix, secret, date_line);
    /* A bucket's own resource is "/bucket/" to botocore and "/bucket" to
     * others, whatever the request line says: accept either. */
    const char *path = req->raw_path ? req->raw_path : "";
    bool bucket_only =
        bucket_prefix && *bucket_prefix
            ? *path == '\0'
            : *path == '/' && path[1] && strchr(path + 1, '/') == NULL;
    if (rc == 0 && bucket_only) {
        _cleanup_free_ char *slashed = NULL;
        if (asprintf(&slashed, "%s/", path) < 0)
            return error_set(err, ENOMEM, NULL, "out of memory");
        struct sigv4_request alt = *req;
        alt.raw_path = slashed;
        rc = signature_matches(&alt, auth, bucket_prefix, secret, date_line);
    }
    if (rc < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (rc == 0)
        return error_set(err, EACCES, "SignatureDoesNotMatch", msg_mismatch);
    return 0;
}
