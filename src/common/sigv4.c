/* sigv4.c: AWS Signature Version 4, verifying and signing (see sigv4.h).
 *
 * Both sides build the same canonical request, so verify and sign share one
 * builder.  The request is taken as it came over the wire: the path and query
 * are percent-decoded and re-encoded here, so that a client that escapes more
 * or less than strictly needed ("%7E" for "~", a raw space) still
 * canonicalises to what it signed.  In the query, '+' is a space (as S3 and
 * form encoding read it); in the path it is a plus.
 */
#include "sigv4.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "checksum.h"

#define EMPTY_SHA256                                                           \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_PRESIGN_EXPIRES 604800L /* a week */

static const char msg_mismatch[] =
    "The request signature we calculated does not match the signature you "
    "provided. Check your key and signing method.";

/* ---- small helpers ---- */

static void hmac_sha256(const void *key, size_t key_len, const void *data,
                        size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* "20150830T123600Z" exactly. */
static bool is_amz_date(const char *s)
{
    if (s == NULL || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool is_date8(const char *s)
{
    if (strlen(s) != 8)
        return false;
    for (int i = 0; i < 8; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* ---- query strings ---- */

struct qparam {
    char *name;  /* decoded */
    char *value; /* decoded; "" when the parameter had no '=' */
};

struct qlist {
    struct qparam *v;
    size_t n;
};

static void qlist_free(struct qlist *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->v[i].name);
        free(q->v[i].value);
    }
    free(q->v);
    q->v = NULL;
    q->n = 0;
}

/* Splits and decodes a raw query.  -1 with InvalidArgument for a malformed
 * escape, or an internal error when memory runs out. */
static int qlist_parse(const char *raw, struct qlist *q,
                       struct koala_error **err)
{
    q->v = NULL;
    q->n = 0;
    if (raw == NULL)
        return 0;
    const char *p = raw;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            const char *eq = memchr(p, '=', len);
            size_t nlen = eq ? (size_t)(eq - p) : len;
            struct qparam *nv = realloc(q->v, (q->n + 1) * sizeof(*nv));
            if (nv == NULL) {
                qlist_free(q);
                return error_set(err, ENOMEM, NULL, "out of memory");
            }
            q->v = nv;
            char *name = str_uri_decode(p, nlen, true);
            char *value =
                eq ? str_uri_decode(eq + 1, len - nlen - 1, true) : strdup("");
            if (name == NULL || value == NULL) {
                free(name);
                free(value);
                qlist_free(q);
                return error_set(err, EINVAL, "InvalidArgument",
                                 "The query string has a malformed "
                                 "percent-encoding.");
            }
            q->v[q->n].name = name;
            q->v[q->n].value = value;
            q->n++;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return 0;
}

static const char *qlist_get(const struct qlist *q, const char *name)
{
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->v[i].name, name) == 0)
            return q->v[i].value;
    return NULL;
}

struct qenc {
    char *name;
    char *value;
};

static int qenc_cmp(const void *a, const void *b)
{
    const struct qenc *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static char *encode_str(const char *s)
{
    struct buf b = {0};
    if (str_uri_encode(&b, s, strlen(s), false) < 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

/* Canonical query: every parameter (but X-Amz-Signature when presigned),
 * names and values encoded, sorted by name then value. */
static int canonical_query(const char *raw, bool presigned, struct buf *out,
                           struct koala_error **err)
{
    struct qlist q;
    if (qlist_parse(raw, &q, err) < 0)
        return -1;
    int rc = -1;
    size_t n = 0;
    struct qenc *e = calloc(q.n ? q.n : 1, sizeof(*e));
    if (e == NULL)
        goto oom;
    for (size_t i = 0; i < q.n; i++) {
        if (presigned && strcmp(q.v[i].name, "X-Amz-Signature") == 0)
            continue;
        e[n].name = encode_str(q.v[i].name);
        e[n].value = encode_str(q.v[i].value);
        n++;
        if (e[n - 1].name == NULL || e[n - 1].value == NULL)
            goto oom;
    }
    qsort(e, n, sizeof(*e), qenc_cmp);
    for (size_t i = 0; i < n; i++) {
        if (buf_printf(out, "%s%s=%s", i ? "&" : "", e[i].name, e[i].value) < 0)
            goto oom;
    }
    rc = 0;
    goto out;
oom:
    error_set(err, ENOMEM, NULL, "out of memory");
out:
    for (size_t i = 0; e && i < n; i++) {
        free(e[i].name);
        free(e[i].value);
    }
    free(e);
    qlist_free(&q);
    return rc;
}

/* ---- paths ---- */

/* Removes "." and ".." segments and empty segments (merged slashes), keeping
 * a trailing slash, as the SDKs do for every service but S3. */
static int normalize_path(const char *raw, struct buf *out)
{
    size_t len = strlen(raw);
    const char **seg = calloc(len / 2 + 2, sizeof(*seg));
    size_t *seglen = calloc(len / 2 + 2, sizeof(*seglen));
    size_t n = 0;
    int rc = -1;
    if (seg == NULL || seglen == NULL)
        goto out;
    const char *p = raw;
    while (*p) {
        while (*p == '/')
            p++;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t l = (size_t)(p - s);
        if (l == 0 || (l == 1 && s[0] == '.'))
            continue;
        if (l == 2 && s[0] == '.' && s[1] == '.') {
            if (n > 0)
                n--;
            continue;
        }
        seg[n] = s;
        seglen[n] = l;
        n++;
    }
    if (buf_append_char(out, '/') < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if ((i && buf_append_char(out, '/') < 0) ||
            buf_append(out, seg[i], seglen[i]) < 0)
            goto out;
    }
    if (n > 0 && len > 0 && raw[len - 1] == '/' &&
        buf_append_char(out, '/') < 0)
        goto out;
    rc = 0;
out:
    free(seg);
    free(seglen);
    return rc;
}

static int canonical_path(const char *raw, bool s3, struct buf *out,
                          struct koala_error **err)
{
    if (raw == NULL || raw[0] == '\0')
        raw = "/";
    if (s3) {
        /* S3 keys are taken literally: decode what the client escaped and
         * encode once, so "%7E", "~", "%20" and " " all land the same. */
        _cleanup_free_ char *dec = str_uri_decode(raw, strlen(raw), false);
        if (dec == NULL)
            return error_set(err, EINVAL, "InvalidURI",
                             "Couldn't parse the specified URI.");
        if (str_uri_encode(out, dec, strlen(dec), true) < 0)
            return error_set(err, ENOMEM, NULL, "out of memory");
        return 0;
    }
    /* Other services: normalise, then encode the still-encoded path once
     * more (so "%20" on the wire becomes "%2520"), as the SDKs do. */
    struct buf norm = {0};
    if (normalize_path(raw, &norm) < 0 ||
        str_uri_encode(out, norm.data, norm.len, true) < 0) {
        buf_free(&norm);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    buf_free(&norm);
    return 0;
}

/* ---- headers ---- */

/* Trims the value and collapses inner runs of white space to one space. */
static int append_header_value(struct buf *out, const char *v)
{
    bool any = false, gap = false;
    for (; *v; v++) {
        if (is_space(*v)) {
            gap = any;
            continue;
        }
        if (gap && buf_append_char(out, ' ') < 0)
            return -1;
        if (buf_append_char(out, *v) < 0)
            return -1;
        gap = false;
        any = true;
    }
    return 0;
}

static int canonical_headers(const struct sigv4_request *req,
                             const char *signed_headers, struct buf *out,
                             struct koala_error **err)
{
    const char *p = signed_headers;
    if (p == NULL || *p == '\0')
        return error_set(err, EINVAL, "AuthorizationHeaderMalformed",
                         "SignedHeaders is empty.");
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[256];
        if (len == 0 || len >= sizeof(name))
            return error_set(err, EINVAL, "AuthorizationHeaderMalformed",
                             "SignedHeaders is malformed.");
        for (size_t i = 0; i < len; i++)
            name[i] = (char)tolower((unsigned char)p[i]);
        name[len] = '\0';
        const char *v = req->header ? req->header(req->header_ctx, name) : NULL;
        if (buf_printf(out, "%s:", name) < 0 ||
            append_header_value(out, v ? v : "") < 0 ||
            buf_append_char(out, '\n') < 0)
            return error_set(err, ENOMEM, NULL, "out of memory");
        if (end == NULL)
            break;
        p = end + 1;
    }
    return 0;
}

static int lower_copy(struct buf *out, const char *s)
{
    for (; *s; s++)
        if (buf_append_char(out, (char)tolower((unsigned char)*s)) < 0)
            return -1;
    return 0;
}

/* ---- canonical request and string to sign ---- */

static int build_canonical(const struct sigv4_request *req,
                           const char *signed_headers, const char *payload_hash,
                           const char *service, bool presigned, struct buf *out,
                           struct koala_error **err)
{
    bool s3 = service != NULL && strcmp(service, "s3") == 0;
    if (buf_printf(out, "%s\n", req->method ? req->method : "") < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (canonical_path(req->raw_path, s3, out, err) < 0)
        return -1;
    if (buf_append_char(out, '\n') < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (canonical_query(req->raw_query, presigned, out, err) < 0)
        return -1;
    if (buf_append_char(out, '\n') < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    if (canonical_headers(req, signed_headers, out, err) < 0)
        return -1;
    if (buf_append_char(out, '\n') < 0 || lower_copy(out, signed_headers) < 0 ||
        buf_printf(out, "\n%s", payload_hash ? payload_hash : "") < 0)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return 0;
}

char *sigv4_canonical_request(const struct sigv4_request *req,
                              const char *signed_headers,
                              const char *payload_hash, const char *service,
                              bool presigned)
{
    struct buf b = {0};
    struct koala_error *err = NULL;
    if (build_canonical(req, signed_headers, payload_hash, service, presigned,
                        &b, &err) < 0) {
        error_free(err);
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

char *sigv4_string_to_sign(const char *amz_date, const char *scope,
                           const char *canonical_request)
{
    char hash[65];
    checksum_sha256_hex(canonical_request, strlen(canonical_request), hash);
    char *out = NULL;
    if (asprintf(&out, SIGV4_ALGORITHM "\n%s\n%s\n%s", amz_date, scope, hash) <
        0)
        return NULL;
    return out;
}

void sigv4_signing_key(const char *secret, const char *date, const char *region,
                       const char *service, unsigned char out[32])
{
    struct buf k = {0};
    unsigned char a[32], b[32];
    if (buf_printf(&k, "AWS4%s", secret) < 0) {
        /* Out of memory: a random key, so nothing signed can match. */
        RAND_bytes(out, 32);
        return;
    }
    hmac_sha256(k.data, k.len, date, strlen(date), a);
    hmac_sha256(a, 32, region, strlen(region), b);
    hmac_sha256(b, 32, service, strlen(service), a);
    hmac_sha256(a, 32, "aws4_request", 12, out);
    OPENSSL_cleanse(k.data, k.len);
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    buf_free(&k);
}

static void sign_hex(const unsigned char key[32], const char *sts, char out[65])
{
    unsigned char mac[32];
    hmac_sha256(key, 32, sts, strlen(sts), mac);
    str_hex(mac, 32, out);
}

/* Computes the hex signature of a request; -1 with *err on failure. */
static int compute_signature(const struct sigv4_request *req,
                             const char *signed_headers,
                             const char *payload_hash,
                             const unsigned char key[32], const char *date,
                             const char *region, const char *service,
                             const char *amz_date, bool presigned, char out[65],
                             struct koala_error **err)
{
    struct buf creq = {0};
    if (build_canonical(req, signed_headers, payload_hash, service, presigned,
                        &creq, err) < 0) {
        buf_free(&creq);
        return -1;
    }
    char *scope = NULL;
    if (asprintf(&scope, "%s/%s/%s/aws4_request", date, region, service) < 0) {
        buf_free(&creq);
        return error_set(err, ENOMEM, NULL, "out of memory");
    }
    char *sts = sigv4_string_to_sign(amz_date, scope, creq.data);
    free(scope);
    buf_free(&creq);
    if (sts == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    sign_hex(key, sts, out);
    free(sts);
    return 0;
}

/* ---- parsing ---- */

void sigv4_auth_clear(struct sigv4_auth *a)
{
    if (a == NULL)
        return;
    free(a->access_key);
    free(a->date);
    free(a->region);
    free(a->service);
    free(a->signed_headers);
    free(a->signature);
    free(a->amz_date);
    free(a->payload_hash);
    memset(a, 0, sizeof(*a));
}

/* "AKID/20150830/us-east-1/s3/aws4_request" into the auth fields. */
static int parse_credential(const char *cred, struct sigv4_auth *a)
{
    const char *part[5];
    size_t len[5];
    const char *p = cred;
    for (int i = 0; i < 5; i++) {
        const char *end = strchr(p, '/');
        if ((end == NULL) != (i == 4))
            return -1;
        part[i] = p;
        len[i] = end ? (size_t)(end - p) : strlen(p);
        if (len[i] == 0)
            return -1;
        p = end ? end + 1 : p;
    }
    if (len[4] != 12 || memcmp(part[4], "aws4_request", 12) != 0)
        return -1;
    a->access_key = strndup(part[0], len[0]);
    a->date = strndup(part[1], len[1]);
    a->region = strndup(part[2], len[2]);
    a->service = strndup(part[3], len[3]);
    if (!a->access_key || !a->date || !a->region || !a->service)
        return -1;
    return is_date8(a->date) ? 0 : -1;
}

static int parse_header_auth(const struct sigv4_request *req, const char *value,
                             struct sigv4_auth *a, struct koala_error **err)
{
    static const char code[] = "AuthorizationHeaderMalformed";
    const char *p = value + strlen(SIGV4_ALGORITHM);
    if (!is_space(*p))
        return error_set(err, EINVAL, code,
                         "The authorization header is malformed.");
    _cleanup_free_ char *copy = strdup(p);
    if (copy == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    char *save = NULL;
    const char *cred = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        tok = str_trim(tok);
        if (*tok == '\0')
            continue;
        char *eq = strchr(tok, '=');
        if (eq == NULL)
            return error_set(err, EINVAL, code,
                             "The authorization header is malformed; "
                             "the authorization component \"%s\" is "
                             "malformed.",
                             tok);
        *eq = '\0';
        char *v = str_trim(eq + 1);
        char *k = str_trim(tok);
        char **dst = NULL;
        if (strcmp(k, "Credential") == 0) {
            cred = v;
            continue;
        } else if (strcmp(k, "SignedHeaders") == 0) {
            dst = &a->signed_headers;
        } else if (strcmp(k, "Signature") == 0) {
            dst = &a->signature;
        } else {
            continue; /* unknown components are ignored, as S3 does */
        }
        free(*dst);
        *dst = strdup(v);
        if (*dst == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
    }
    if (cred == NULL || a->signed_headers == NULL || a->signature == NULL ||
        a->signed_headers[0] == '\0' || a->signature[0] == '\0')
        return error_set(err, EINVAL, code,
                         "The authorization header is malformed; it must "
                         "have Credential, SignedHeaders and Signature.");
    if (parse_credential(cred, a) < 0)
        return error_set(err, EINVAL, code,
                         "The authorization header is malformed; the "
                         "Credential is mal-formed; expecting "
                         "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/"
                         "aws4_request\".");
    const char *d = req->header(req->header_ctx, "x-amz-date");
    if (d != NULL) {
        if (!is_amz_date(d))
            return error_set(err, EACCES, "AccessDenied",
                             "AWS authentication requires a valid Date or "
                             "x-amz-date header");
        a->amz_date = strdup(d);
    } else {
        /* SigV4 allows the Date header in its place. */
        time_t t;
        char basic[17];
        d = req->header(req->header_ctx, "date");
        if (d == NULL || time_parse(d, &t) < 0)
            return error_set(err, EACCES, "AccessDenied",
                             "AWS authentication requires a valid Date or "
                             "x-amz-date header");
        a->amz_date = strdup(time_format_iso8601_basic(t, basic));
    }
    const char *ph = req->header(req->header_ctx, "x-amz-content-sha256");
    if (a->amz_date == NULL || (ph && (a->payload_hash = strdup(ph)) == NULL))
        return error_set(err, ENOMEM, NULL, "out of memory");
    return 0;
}

static int parse_query_auth(const struct sigv4_request *req,
                            const struct qlist *q, struct sigv4_auth *a,
                            struct koala_error **err)
{
    static const char code[] = "AuthorizationQueryParametersError";
    const char *alg = qlist_get(q, "X-Amz-Algorithm");
    const char *cred = qlist_get(q, "X-Amz-Credential");
    const char *date = qlist_get(q, "X-Amz-Date");
    const char *expires = qlist_get(q, "X-Amz-Expires");
    const char *sh = qlist_get(q, "X-Amz-SignedHeaders");
    const char *sig = qlist_get(q, "X-Amz-Signature");
    a->presigned = true;
    if (!alg || !cred || !date || !expires || !sh || !sig || !*sh || !*sig)
        return error_set(err, EINVAL, code,
                         "Query-string authentication version 4 requires "
                         "the X-Amz-Algorithm, X-Amz-Credential, "
                         "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
                         "and X-Amz-Expires parameters.");
    if (strcmp(alg, SIGV4_ALGORITHM) != 0)
        return error_set(err, EINVAL, code,
                         "X-Amz-Algorithm only supports \"" SIGV4_ALGORITHM
                         "\"");
    if (parse_credential(cred, a) < 0)
        return error_set(err, EINVAL, code,
                         "Error parsing the X-Amz-Credential parameter; the "
                         "Credential is mal-formed; expecting "
                         "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/"
                         "aws4_request\".");
    if (!is_amz_date(date))
        return error_set(err, EINVAL, code,
                         "X-Amz-Date must be in the ISO8601 Long Format "
                         "\"yyyyMMdd'T'HHmmss'Z'\"");
    int64_t e;
    if (str_to_i64(expires, &e) < 0 || e < 0)
        return error_set(err, EINVAL, code, "X-Amz-Expires should be a number");
    if (e > MAX_PRESIGN_EXPIRES)
        return error_set(err, EINVAL, code,
                         "X-Amz-Expires must be less than a week (in "
                         "seconds) that is 604800");
    a->expires = (long)e;
    a->amz_date = strdup(date);
    a->signed_headers = strdup(sh);
    a->signature = strdup(sig);
    /* S3 presigned URLs carry no payload hash; other services sign the
     * (normally empty) body's hash, which sigv4_verify assumes when this
     * stays NULL. */
    const char *ph = qlist_get(q, "X-Amz-Content-Sha256");
    if (ph == NULL && strcmp(a->service, "s3") == 0)
        ph = SIGV4_UNSIGNED_PAYLOAD;
    if (ph == NULL)
        ph = req->header(req->header_ctx, "x-amz-content-sha256");
    if (!a->amz_date || !a->signed_headers || !a->signature ||
        (ph && (a->payload_hash = strdup(ph)) == NULL))
        return error_set(err, ENOMEM, NULL, "out of memory");
    return 0;
}

int sigv4_parse(const struct sigv4_request *req, struct sigv4_auth *auth,
                struct koala_error **err)
{
    memset(auth, 0, sizeof(*auth));
    struct qlist q;
    const char *authz = req->header(req->header_ctx, "authorization");
    bool header_v4 = authz && str_has_prefix(authz, SIGV4_ALGORITHM);
    if (authz && !header_v4 && str_has_prefix(authz, "AWS4-"))
        return error_set(err, EINVAL, "InvalidRequest",
                         "The authorization mechanism you have provided is "
                         "not supported. Please use " SIGV4_ALGORITHM ".");
    if (qlist_parse(req->raw_query, &q, err) < 0)
        return -1;
    bool query_v4 = qlist_get(&q, "X-Amz-Algorithm") ||
                    qlist_get(&q, "X-Amz-Credential") ||
                    qlist_get(&q, "X-Amz-Signature");
    int rc = SIGV4_NONE;
    if (header_v4 && query_v4) {
        rc = error_set(err, EINVAL, "InvalidRequest",
                       "Only one auth mechanism allowed; only the "
                       "X-Amz-Algorithm query parameter or the "
                       "Authorization header should be specified");
    } else if (header_v4) {
        rc = parse_header_auth(req, authz, auth, err) < 0 ? -1 : SIGV4_FOUND;
    } else if (query_v4) {
        rc = parse_query_auth(req, &q, auth, err) < 0 ? -1 : SIGV4_FOUND;
    }
    qlist_free(&q);
    if (rc < 0)
        sigv4_auth_clear(auth);
    return rc;
}

/* ---- verification ---- */

static int check_time(const struct sigv4_auth *a, time_t now,
                      struct koala_error **err)
{
    time_t t;
    if (time_parse(a->amz_date, &t) < 0)
        return error_set(err, EACCES, "AccessDenied",
                         "AWS authentication requires a valid Date or "
                         "x-amz-date header");
    if (strncmp(a->amz_date, a->date, 8) != 0) {
        if (a->presigned)
            return error_set(err, EINVAL, "AuthorizationQueryParametersError",
                             "Invalid credential date \"%s\". This date is "
                             "not the same as X-Amz-Date: \"%.8s\".",
                             a->date, a->amz_date);
        return error_set(err, EINVAL, "AuthorizationHeaderMalformed",
                         "The authorization header is malformed; Invalid "
                         "credential date. Date is not the same as "
                         "X-Amz-Date.");
    }
    if (a->presigned) {
        if (now + SIGV4_MAX_SKEW_SECONDS < t)
            return error_set(err, EACCES, "AccessDenied",
                             "Request is not valid yet");
        if (now > t + a->expires)
            return error_set(err, EACCES, "AccessDenied",
                             "Request has expired");
        return 0;
    }
    if (now > t + SIGV4_MAX_SKEW_SECONDS || t > now + SIGV4_MAX_SKEW_SECONDS)
        return error_set(err, EACCES, "RequestTimeTooSkewed",
                         "The difference between the request time and the "
                         "current time is too large.");
    return 0;
}

int sigv4_verify(const struct sigv4_request *req, const struct sigv4_auth *auth,
                 const char *secret, time_t now, struct koala_error **err)
{
    unsigned char key[32];
    sigv4_signing_key(secret, auth->date ? auth->date : "",
                      auth->region ? auth->region : "",
                      auth->service ? auth->service : "", key);
    int rc = sigv4_verify_key(req, auth, key, now, err);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int sigv4_verify_key(const struct sigv4_request *req,
                     const struct sigv4_auth *auth, const unsigned char key[32],
                     time_t now, struct koala_error **err)
{
    if (auth->access_key == NULL || auth->amz_date == NULL ||
        auth->signature == NULL || auth->signed_headers == NULL)
        return error_set(err, EINVAL, "InvalidRequest",
                         "The request carries no SigV4 authentication.");
    if (check_time(auth, now, err) < 0)
        return -1;
    const char *ph = auth->payload_hash;
    if (ph == NULL) {
        if (!auth->presigned)
            return error_set(err, EINVAL, "InvalidRequest",
                             "Missing required header for this request: "
                             "x-amz-content-sha256");
        ph = EMPTY_SHA256;
    }
    char want[65];
    if (compute_signature(req, auth->signed_headers, ph, key, auth->date,
                          auth->region, auth->service, auth->amz_date,
                          auth->presigned, want, err) < 0)
        return -1;
    char got[65];
    size_t n = strlen(auth->signature);
    if (n != 64)
        return error_set(err, EACCES, "SignatureDoesNotMatch", msg_mismatch);
    for (size_t i = 0; i < 64; i++)
        got[i] = (char)tolower((unsigned char)auth->signature[i]);
    if (CRYPTO_memcmp(got, want, 64) != 0)
        return error_set(err, EACCES, "SignatureDoesNotMatch", msg_mismatch);
    return 0;
}

/* ---- client side ---- */

char *sigv4_sign(const struct sigv4_request *req, const char *access_key,
                 const char *secret, const char *region, const char *service,
                 const char *amz_date, const char *signed_headers,
                 const char *payload_hash)
{
    if (!is_amz_date(amz_date))
        return NULL;
    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    char sig[65];
    struct koala_error *err = NULL;
    unsigned char key[32];
    sigv4_signing_key(secret, date, region, service, key);
    int rc = compute_signature(req, signed_headers, payload_hash, key, date,
                               region, service, amz_date, false, sig, &err);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc < 0) {
        error_free(err);
        return NULL;
    }
    char *out = NULL;
    if (asprintf(&out,
                 SIGV4_ALGORITHM " Credential=%s/%s/%s/%s/aws4_request, "
                                 "SignedHeaders=%s, Signature=%s",
                 access_key, date, region, service, signed_headers, sig) < 0)
        return NULL;
    return out;
}

char *sigv4_presign(const struct sigv4_request *req, const char *access_key,
                    const char *secret, const char *region, const char *service,
                    time_t now, long expires_s)
{
    if (expires_s < 1 || expires_s > MAX_PRESIGN_EXPIRES)
        return NULL;
    char amz_date[17], date[9];
    time_format_iso8601_basic(now, amz_date);
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    struct buf q = {0}, cred = {0};
    char *out = NULL;
    if (buf_printf(&cred, "%s/%s/%s/%s/aws4_request", access_key, date, region,
                   service) < 0)
        goto out;
    if (req->raw_query && req->raw_query[0] &&
        buf_printf(&q, "%s&", req->raw_query) < 0)
        goto out;
    if (buf_append_str(&q, "X-Amz-Algorithm=" SIGV4_ALGORITHM
                           "&X-Amz-Credential=") < 0 ||
        str_uri_encode(&q, cred.data, cred.len, false) < 0 ||
        buf_printf(&q,
                   "&X-Amz-Date=%s&X-Amz-Expires=%ld"
                   "&X-Amz-SignedHeaders=host",
                   amz_date, expires_s) < 0)
        goto out;
    struct sigv4_request r = *req;
    r.raw_query = q.data;
    bool s3 = strcmp(service, "s3") == 0;
    char sig[65];
    struct koala_error *err = NULL;
    unsigned char key[32];
    sigv4_signing_key(secret, date, region, service, key);
    int rc = compute_signature(
        &r, "host", s3 ? SIGV4_UNSIGNED_PAYLOAD : EMPTY_SHA256, key, date,
        region, service, amz_date, true, sig, &err);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc < 0) {
        error_free(err);
        goto out;
    }
    if (buf_printf(&q, "&X-Amz-Signature=%s", sig) < 0)
        goto out;
    out = buf_steal(&q);
out:
    buf_free(&q);
    buf_free(&cred);
    return out;
}

/* ---- streaming ---- */

void sigv4_chunk_signature(const unsigned char key[32], const char *amz_date,
                           const char *scope, const char *prev_sig,
                           const unsigned char chunk_sha256[32], char out[65])
{
    char hash[65];
    str_hex(chunk_sha256, 32, hash);
    struct buf sts = {0};
    if (buf_printf(&sts,
                   "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n%s\n" EMPTY_SHA256 "\n%s",
                   amz_date, scope, prev_sig, hash) < 0) {
        buf_free(&sts);
        memset(out, 0, 65); /* out of memory: "" matches no signature */
        return;
    }
    sign_hex(key, sts.data, out);
    buf_free(&sts);
}

void sigv4_trailer_signature(const unsigned char key[32], const char *amz_date,
                             const char *scope, const char *prev_sig,
                             const char *trailer, size_t trailer_len,
                             char out[65])
{
    char hash[65];
    checksum_sha256_hex(trailer, trailer_len, hash);
    struct buf sts = {0};
    if (buf_printf(&sts, "AWS4-HMAC-SHA256-TRAILER\n%s\n%s\n%s\n%s", amz_date,
                   scope, prev_sig, hash) < 0) {
        buf_free(&sts);
        memset(out, 0, 65);
        return;
    }
    sign_hex(key, sts.data, out);
    buf_free(&sts);
}

char *sigv4_scope(const struct sigv4_auth *auth)
{
    if (!auth->date || !auth->region || !auth->service)
        return NULL;
    char *out = NULL;
    if (asprintf(&out, "%s/%s/%s/aws4_request", auth->date, auth->region,
                 auth->service) < 0)
        return NULL;
    return out;
}
