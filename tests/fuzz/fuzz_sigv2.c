/* fuzz_sigv2.c: libFuzzer target for SigV2 (src/common/sigv2.h): the
 * "AWS AKID:signature" Authorization header and the AWSAccessKeyId /
 * Expires / Signature presigned query (sigv2_parse), then the string to
 * sign (path-style and virtual-host-style) and sigv2_verify.  The input is
 * a whole request (see fuzz_req.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz_req.h"
#include "sigv2.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_req req;
    if (fuzz_req_parse(&req, data, size) < 0) {
        fuzz_req_free(&req);
        return 0;
    }
    struct sigv2_auth auth = {0};
    struct koala_error *err = NULL;
    int rc = sigv2_parse(&req.sr, &auth, &err);
    const char *date = fuzz_req_header(&req, "date");
    char expires[32] = "";
    if (rc == 1 && auth.presigned)
        snprintf(expires, sizeof(expires), "%lld", (long long)auth.expires);
    const char *dox = expires[0] ? expires : date ? date : "";
    char *sts = sigv2_string_to_sign(&req.sr, NULL, dox);
    char *sig = sts ? sigv2_sign(SECRET, sts) : NULL;
    free(sig);
    free(sts);
    sts = sigv2_string_to_sign(&req.sr, "/bucket", dox);
    free(sts);
    if (rc == 1) {
        /* Once at a fixed time, once at the request's own (past the
         * clock and expiry checks, into the signature comparison). */
        time_t at[2] = {1440938160, auth.presigned && auth.expires > 0
                                        ? auth.expires - 1
                                        : 0};
        if (!auth.presigned && date && time_parse(date, &at[1]) < 0)
            at[1] = 0;
        for (int i = 0; i < 2; i++) {
            struct koala_error *verr = NULL;
            sigv2_verify(&req.sr, &auth, i ? "/bucket" : "", SECRET, at[i],
                         &verr);
            error_free(verr);
        }
    }
    sigv2_auth_clear(&auth);
    error_free(err);
    fuzz_req_free(&req);
    return 0;
}
