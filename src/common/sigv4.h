/* sigv4.h: AWS Signature Version 4: verifying requests (Authorization header
 * and presigned query string, as S3 and EC2 servers must) and signing them
 * (for clients: the NC's downloads, the benchmarks, the CLC's presigned URLs).
 *
 * The request is described by its method, its raw path and query exactly as
 * they came over the wire (still percent-encoded), and a header lookup.
 * Canonicalisation follows the AWS documentation: S3 ("s3" service) does not
 * normalise the path and encodes it once; other services normalise it
 * (remove dot segments, merge slashes) and encode it twice.
 */
#ifndef KOALA_SIGV4_H
#define KOALA_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "error.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_STREAMING_PAYLOAD "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
#define SIGV4_STREAMING_PAYLOAD_TRAILER                                        \
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
#define SIGV4_STREAMING_UNSIGNED_TRAILER "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
#define SIGV4_MAX_SKEW_SECONDS (15 * 60)

/* Returns the (possibly comma-joined, if repeated) value of the header with
 * the given lower-case name, or NULL.  The pointer stays valid for the
 * request's life. */
typedef const char *(*sigv4_header_fn)(void *ctx, const char *lname);
/* Calls fn(fn_ctx, name, value) for every header (name as sent, one call per
 * occurrence) until fn returns non-zero. */
typedef void (*sigv4_header_foreach_fn)(
    void *ctx, int (*fn)(void *fn_ctx, const char *name, const char *value),
    void *fn_ctx);

struct sigv4_request {
    const char *method;    /* "GET" ... */
    const char *raw_path;  /* "/bucket/a%20b", as received */
    const char *raw_query; /* "list-type=2&prefix=a", as received; may be "" */
    sigv4_header_fn header;
    void *header_ctx;
    /* Optional (called with header_ctx): SigV2 signs every x-amz-* header,
     * which a lookup by name cannot find.  Without it SigV2 only sees the
     * common x-amz-* headers it knows by name (no x-amz-meta-*). */
    sigv4_header_foreach_fn header_foreach;
};

/* What a request's SigV4 authentication says, parsed but not yet checked.
 * All strings are owned by the struct; free with sigv4_auth_clear(). */
struct sigv4_auth {
    bool presigned; /* from the query string */
    char *access_key;
    char *date; /* credential scope date, "20150830" */
    char *region;
    char *service;
    char *signed_headers; /* "host;x-amz-date" */
    char *signature;      /* hex */
    char *amz_date;       /* "20150830T123600Z" (X-Amz-Date or header) */
    long expires;         /* presigned only: X-Amz-Expires seconds */
    char *payload_hash;   /* x-amz-content-sha256 value, or
                             "UNSIGNED-PAYLOAD" for S3 presigned URLs;
                             NULL when absent.  Services whose clients
                             send no such header (EC2) set it, malloc'd,
                             to the hex SHA-256 of the body before
                             sigv4_verify; a presigned non-S3 request
                             left at NULL is taken to have an empty
                             body. */
};

enum sigv4_kind {
    SIGV4_NONE = 0,  /* no SigV4 credentials in the request */
    SIGV4_FOUND = 1, /* *auth filled */
};

/* Looks for SigV4 authentication in the Authorization header or the query
 * string and parses it.  Returns SIGV4_NONE, SIGV4_FOUND, or -1 with
 * err->code "AuthorizationHeaderMalformed" /
 * "AuthorizationQueryParametersError" / "InvalidRequest" when it is present but
 * malformed. */
int sigv4_parse(const struct sigv4_request *req, struct sigv4_auth *auth,
                struct koala_error **err);
void sigv4_auth_clear(struct sigv4_auth *auth);

/* Checks the signature of a parsed request with the caller's secret key.
 * `now` is the server's clock.  Errors (err->code):
 *   RequestTimeTooSkewed   header-signed request more than 15 minutes off
 *   AccessDenied           presigned URL expired ("Request has expired") or
 *                          not yet valid
 *   SignatureDoesNotMatch  wrong signature
 *   AuthorizationHeaderMalformed  scope date != X-Amz-Date's date, ...
 * The payload itself is not hashed here: when payload_hash is a hex SHA-256
 * the caller compares it with the body's hash (XAmzContentSHA256Mismatch). */
int sigv4_verify(const struct sigv4_request *req, const struct sigv4_auth *auth,
                 const char *secret, time_t now, struct koala_error **err);

/* As sigv4_verify, with the signing key (sigv4_signing_key of the secret
 * for the auth's date, region and service) instead of the secret: servers
 * cache the key, which costs four HMACs to derive. */
int sigv4_verify_key(const struct sigv4_request *req,
                     const struct sigv4_auth *auth, const unsigned char key[32],
                     time_t now, struct koala_error **err);

/* The signing key: HMAC chain over date, region, service, "aws4_request". */
void sigv4_signing_key(const char *secret, const char *date, const char *region,
                       const char *service, unsigned char out[32]);
/* Canonical request and string to sign (exposed for tests and debugging);
 * malloc'd strings, NULL on error. */
char *sigv4_canonical_request(const struct sigv4_request *req,
                              const char *signed_headers,
                              const char *payload_hash, const char *service,
                              bool presigned);
char *sigv4_string_to_sign(const char *amz_date, const char *scope,
                           const char *canonical_request);

/* Client side.  Signs a request with the Authorization header: given the
 * request (headers via the lookup, which must include host and x-amz-date,
 * and x-amz-content-sha256 for s3), the list of headers to sign (sorted,
 * lower-case, ';'-separated) and the payload hash, returns the malloc'd
 * Authorization header value, or NULL. */
char *sigv4_sign(const struct sigv4_request *req, const char *access_key,
                 const char *secret, const char *region, const char *service,
                 const char *amz_date, const char *signed_headers,
                 const char *payload_hash);
/* Presigns a URL: returns the malloc'd query string to append after '?'
 * (the request's own raw_query, if any, plus the X-Amz-* parameters), with
 * only "host" signed and UNSIGNED-PAYLOAD. */
char *sigv4_presign(const struct sigv4_request *req, const char *access_key,
                    const char *secret, const char *region, const char *service,
                    time_t now, long expires_s);

/* Streaming (aws-chunked) signatures.  The seed is the request signature. */
/* chunk string to sign:
 *   "AWS4-HMAC-SHA256-PAYLOAD\n" amz_date "\n" scope "\n" prev_sig "\n"
 *   hex(sha256("")) "\n" hex(sha256(chunk)) ; returns hex into out[65]. */
void sigv4_chunk_signature(const unsigned char key[32], const char *amz_date,
                           const char *scope, const char *prev_sig,
                           const unsigned char chunk_sha256[32], char out[65]);
/* trailer string to sign:
 *   "AWS4-HMAC-SHA256-TRAILER\n" amz_date "\n" scope "\n" prev_sig "\n"
 *   hex(sha256(trailer_bytes)) */
void sigv4_trailer_signature(const unsigned char key[32], const char *amz_date,
                             const char *scope, const char *prev_sig,
                             const char *trailer, size_t trailer_len,
                             char out[65]);

/* "20150830/us-east-1/s3/aws4_request" into a malloc'd string. */
char *sigv4_scope(const struct sigv4_auth *auth);

#endif
