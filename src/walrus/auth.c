/* auth.c: who is calling: SigV4 (header or presigned), SigV2 (header or
 * presigned) or anonymous.  Keys and secrets come from the accounts in
 * Walrus' database. */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>

#include "keycache.h"
#include "log.h"
#include "sigv2.h"
#include "walrus.h"

int s3_authenticate(struct s3_req *r, struct koala_error **err);

static const char *header_fn(void *ctx, const char *lname)
{
    return http_request_header_joined(ctx, lname);
}

static void foreach_fn(void *ctx,
                       int (*fn)(void *fn_ctx, const char *name,
                                 const char *value),
                       void *fn_ctx)
{
    http_request_headers_foreach(ctx, fn, fn_ctx);
}

static bool is_hex64(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    return true;
}

/* The caller's secret and identity, from the key cache or the database.
 * *cached says which: a signature that fails with a cached secret is
 * checked again with the database's (the key may have changed). */
static int lookup_secret(struct s3_req *r, const char *access_key,
                         char secret[KEYCACHE_MAX_SECRET], bool *cached,
                         struct koala_error **err)
{
    *cached =
        keycache_get(r->w->keys, access_key, secret, &r->who, sizeof(r->who));
    if (*cached)
        return 0;
    struct db *db = s3_db(r, err);
    if (db == NULL)
        return -1;
    char *s = NULL;
    int rc = meta_identity_by_key(db, access_key, &s, &r->who, err);
    if (rc == 1 && r->w->opt.clc_endpoint)
        rc = walrus_clc_lookup(r->w, db, access_key, &s, &r->who, err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return error_set(err, EACCES, "InvalidAccessKeyId",
                         "The AWS Access Key Id you provided does not exist "
                         "in our records.");
    snprintf(secret, KEYCACHE_MAX_SECRET, "%s", s);
    keycache_put(r->w->keys, access_key, s, &r->who, sizeof(r->who));
    OPENSSL_cleanse(s, strlen(s));
    free(s);
    return 0;
}

int s3_lookup_secret(struct s3_req *r, const char *access_key,
                     char secret[KEYCACHE_MAX_SECRET],
                     struct koala_error **err)
{
    bool cached;
    return lookup_secret(r, access_key, secret, &cached, err);
}

static int verify_v4(struct s3_req *r, const struct sigv4_request *sr,
                     struct koala_error **err)
{
    char secret[KEYCACHE_MAX_SECRET];
    bool cached;
    const struct sigv4_auth *a = &r->v4;
    int rc = lookup_secret(r, a->access_key, secret, &cached, err);
    for (int attempt = 0; rc == 0; attempt++) {
        keycache_signing_key(r->w->keys, a->access_key, secret, a->date,
                             a->region, a->service, r->signing_key);
        struct koala_error *e = NULL;
        rc = sigv4_verify_key(sr, a, r->signing_key, time(NULL), &e);
        if (rc == 0 || !cached || attempt > 0 ||
            strcmp(error_code(e), "SignatureDoesNotMatch") != 0) {
            if (rc < 0)
                error_set(err, e->errnum, e->code, "%s", error_message(e));
            error_free(e);
            break;
        }
        error_free(e);
        keycache_forget(r->w->keys, a->access_key);
        rc = lookup_secret(r, a->access_key, secret, &cached, err);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

static int auth_v4(struct s3_req *r, const struct sigv4_request *sr,
                   struct koala_error **err)
{
    if (verify_v4(r, sr, err) < 0)
        return -1;
    r->have_v4 = true;
    const char *ph = r->v4.payload_hash;
    log_debug("%s %s: SigV4 %s, payload %s", http_request_method(r->http),
              http_request_path(r->http),
              r->v4.presigned ? "presigned" : "header", ph ? ph : "-");
    if (ph == NULL) {
        if (!r->v4.presigned)
            return error_set(err, EINVAL, "InvalidRequest",
                             "Missing required header for this request: "
                             "x-amz-content-sha256");
    } else if (is_hex64(ph)) {
        r->body_sha256 = checksum_new(CHECKSUM_SHA256);
        if (r->body_sha256 == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
    } else if (strcmp(ph, SIGV4_UNSIGNED_PAYLOAD) != 0 &&
               strcmp(ph, SIGV4_STREAMING_PAYLOAD) != 0 &&
               strcmp(ph, SIGV4_STREAMING_PAYLOAD_TRAILER) != 0 &&
               strcmp(ph, SIGV4_STREAMING_UNSIGNED_TRAILER) != 0) {
        return error_set(err, EINVAL, "InvalidArgument",
                         "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                         "STREAMING-* or a valid sha256 value.");
    }
    return 0;
}

static int auth_v2(struct s3_req *r, const struct sigv4_request *sr,
                   struct sigv2_auth *v2, struct koala_error **err)
{
    char secret[KEYCACHE_MAX_SECRET];
    bool cached;
    if (lookup_secret(r, v2->access_key, secret, &cached, err) < 0)
        return -1;
    struct buf prefix = {0};
    if (r->virtual_host)
        buf_printf(&prefix, "/%s", r->bucket);
    int rc = sigv2_verify(sr, v2, prefix.data ? prefix.data : "", secret,
                          time(NULL), err);
    if (rc < 0 && cached) /* the cached secret may be stale */
        keycache_forget(r->w->keys, v2->access_key);
    buf_free(&prefix);
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc;
}

int s3_authenticate(struct s3_req *r, struct koala_error **err)
{
    struct sigv4_request sr = {
        .method = http_request_method(r->http),
        .raw_path = http_request_path(r->http),
        .raw_query = http_request_query(r->http),
        .header = header_fn,
        .header_ctx = r->http,
        .header_foreach = foreach_fn,
    };
    int rc = sigv4_parse(&sr, &r->v4, err);
    if (rc < 0)
        return -1;
    if (rc == SIGV4_FOUND) {
        /* Any region is accepted (one endpoint serves every bucket), but a
         * key scoped to another service is not an S3 credential. */
        if (strcmp(r->v4.service, "s3") != 0)
            return error_set(err, EINVAL,
                             r->v4.presigned
                                 ? "AuthorizationQueryParametersError"
                                 : "AuthorizationHeaderMalformed",
                             "The authorization header is malformed; "
                             "incorrect service \"%s\". This endpoint "
                             "belongs to \"s3\".",
                             r->v4.service);
        if (auth_v4(r, &sr, err) < 0)
            return -1;
        r->signed_request = true;
        r->presigned = r->v4.presigned;
        return 0;
    }
    struct sigv2_auth v2 = {0};
    rc = sigv2_parse(&sr, &v2, err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        r->presigned = v2.presigned;
        rc = auth_v2(r, &sr, &v2, err);
        sigv2_auth_clear(&v2);
        if (rc < 0)
            return -1;
        r->signed_request = true;
        return 0;
    }
    memset(&r->who, 0, sizeof(r->who));
    r->who.anonymous = true;
    return 0;
}
