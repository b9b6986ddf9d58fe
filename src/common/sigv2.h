/* sigv2.h: AWS Signature Version 2 for S3 (the "AWS AKID:signature"
 * Authorization header and the AWSAccessKeyId/Expires/Signature presigned
 * query string), which s3cmd and older tools still use.
 *
 * StringToSign = Method \n Content-MD5 \n Content-Type \n Date-or-Expires \n
 *                CanonicalizedAmzHeaders CanonicalizedResource
 * where the resource is the raw path (with "/bucket" prepended for
 * virtual-host-style requests) plus the S3 sub-resources of the query
 * (acl, uploads, partNumber, uploadId, response-* ...), sorted.
 */
#ifndef KOALA_SIGV2_H
#define KOALA_SIGV2_H

#include <stdbool.h>
#include <time.h>

#include "error.h"
#include "sigv4.h" /* struct sigv4_request, the same request description */

struct sigv2_auth {
    bool presigned;
    char *access_key;
    char *signature; /* base64 */
    time_t expires;  /* presigned only */
};

/* Returns 0 (no SigV2 credentials), 1 (found, *auth filled) or -1 when
 * malformed (InvalidArgument / AccessDenied). */
int sigv2_parse(const struct sigv4_request *req, struct sigv2_auth *auth,
                struct koala_error **err);
void sigv2_auth_clear(struct sigv2_auth *auth);

/* bucket_prefix: "/bucket" for virtual-host-style requests, else "" or
 * NULL.  Header-signed requests must carry a Date or x-amz-date within 15
 * minutes of now (RequestTimeTooSkewed); presigned ones must not have
 * expired (AccessDenied).  Wrong signature: SignatureDoesNotMatch. */
int sigv2_verify(const struct sigv4_request *req, const struct sigv2_auth *auth,
                 const char *bucket_prefix, const char *secret, time_t now,
                 struct koala_error **err);

/* The string to sign (for tests, and for the SignatureDoesNotMatch reply's
 * StringToSign element); malloc'd. */
char *sigv2_string_to_sign(const struct sigv4_request *req,
                           const char *bucket_prefix,
                           const char *date_or_expires);
/* base64(HMAC-SHA1(secret, string_to_sign)), malloc'd. */
char *sigv2_sign(const char *secret, const char *string_to_sign);

#endif
