/* fuzz_sigv4.c: libFuzzer target for SigV4 (src/common/sigv4.h): the
 * Authorization header and the presigned query string (sigv4_parse), then
 * everything verification computes from the untrusted request: the
 * canonical request (S3's way and, normalising the path, EC2's), the
 * string to sign, the scope and sigv4_verify itself.  The input is a whole
 * request (see fuzz_req.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "fuzz_req.h"
#include "sigv4.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define NOW 1440938160 /* 2015-08-30T12:36:00Z, the AWS examples' time */
#define EMPTY_SHA256                                                           \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void canonical(const struct sigv4_request *sr, const char *sh,
                      const char *ph, const char *service, bool presigned)
{
    char *c = sigv4_canonical_request(sr, sh, ph, service, presigned);
    if (c == NULL)
        return;
    char *sts = sigv4_string_to_sign("20150830T123600Z",
                                     "20150830/us-east-1/s3/aws4_request", c);
    free(sts);
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_req req;
    if (fuzz_req_parse(&req, data, size) < 0) {
        fuzz_req_free(&req);
        return 0;
    }
    struct sigv4_auth auth;
    struct koala_error *err = NULL;
    int rc = sigv4_parse(&req.sr, &auth, &err);
    if (rc == SIGV4_FOUND) {
        char *scope = sigv4_scope(&auth);
        free(scope);
        /* As the CLC does for EC2: the body's hash when none was sent. */
        if (auth.payload_hash == NULL && strcmp(auth.service, "s3") != 0)
            auth.payload_hash = strdup(EMPTY_SHA256);
        canonical(&req.sr, auth.signed_headers,
                  auth.payload_hash ? auth.payload_hash : EMPTY_SHA256,
                  auth.service, auth.presigned);
        struct koala_error *verr = NULL;
        sigv4_verify(&req.sr, &auth, SECRET, NOW, &verr);
        error_free(verr);
        /* The same at the request's own time, past the clock check. */
        time_t t;
        if (auth.amz_date && time_parse(auth.amz_date, &t) == 0) {
            verr = NULL;
            sigv4_verify(&req.sr, &auth, SECRET, t, &verr);
            error_free(verr);
        }
    } else {
        /* No credentials: the canonical request of what was sent, signing
         * whatever the x-fuzz-signed-headers header names. */
        const char *sh = fuzz_req_header(&req, "x-fuzz-signed-headers");
        canonical(&req.sr, sh ? sh : "host;x-amz-date", EMPTY_SHA256, "s3",
                  false);
        canonical(&req.sr, sh ? sh : "host", SIGV4_UNSIGNED_PAYLOAD, "ec2",
                  true);
    }
    sigv4_auth_clear(&auth);
    error_free(err);
    fuzz_req_free(&req);
    return 0;
}
