/* fuzz_s3_router.c: libFuzzer target for Walrus' request router
 * (s3_route in src/walrus/server.c), which runs on every request before
 * authentication: the path (path-style and virtual-host-style addressing
 * with the Host header), the bucket and key's percent-decoding and UTF-8
 * check, the query's sub-resources and the choice of operation from the
 * method, sub-resources and x-amz-copy-source; then, for the copies,
 * s3_copy_source (the header's bucket and key).  The input is a whole
 * request (see fuzz_req.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_req.h"
#include "walrus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char domain[] = "s3.example.org", region[] = "us-east-1";
    static struct walrus w = {.domain = domain, .region = region};
    struct fuzz_req req;
    if (fuzz_req_parse(&req, data, size) < 0) {
        fuzz_req_free(&req);
        return 0;
    }
    struct s3_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        fuzz_req_free(&req);
        return 0;
    }
    r->w = &w;
    struct koala_error *err = NULL;
    r->op = s3_route(r, req.method, req.path, req.query, fuzz_req_header, &req,
                     &err);
    if (r->op != OP_NONE) {
        /* What the operations then read of the request. */
        if (r->resource == NULL)
            abort(); /* every routed request names its resource */
        if (r->key && strlen(r->key) > WALRUS_MAX_KEY)
            abort(); /* too long a key is refused before routing */
        if (r->key && r->bucket == NULL)
            abort(); /* a key always comes with its bucket */
        static const char *const params[] = {
            "uploadId",    "partNumber",    "prefix",
            "delimiter",   "marker",        "max-keys",
            "list-type",   "encoding-type", "continuation-token",
            "start-after", "versionId",     "response-content-type",
        };
        for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
            (void)s3_param(r, params[i]);
        if (r->op == OP_COPY_OBJECT || r->op == OP_UPLOAD_PART_COPY) {
            /* the copy source, as CopyObject and UploadPartCopy read it */
            char *sb = NULL, *sk = NULL, *sv = NULL;
            if (s3_copy_source(r, &sb, &sk, &sv, &err) == 0 &&
                (sb == NULL || sk == NULL || strlen(sk) > WALRUS_MAX_KEY ||
                 (sv && !version_id_valid(sv))))
                abort();
            free(sb);
            free(sk);
            free(sv);
        }
    }
    error_free(err);
    s3_req_free(r);
    fuzz_req_free(&req);
    return 0;
}
