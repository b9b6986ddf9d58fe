/* fuzz_req.h: the request format shared by the fuzz targets that see a
 * whole HTTP request (sigv4, sigv2, s3_router):
 *
 *   METHOD\n RAW-PATH\n RAW-QUERY\n (Name: value\n)* \n BODY
 *
 * (a "\r\n" ends a line too).  The path and query are as they would come
 * over the wire, still percent-encoded.  Header lookups are by name,
 * case-insensitive; repeated headers are joined with ",", as
 * http_request_header_joined does. */
#ifndef KOALA_FUZZ_REQ_H
#define KOALA_FUZZ_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "sigv4.h"

struct fuzz_header {
    char *name;
    char *value;
};

struct fuzz_req {
    char *text; /* the input, NUL-terminated; the strings point into it */
    char *method, *path, *query;
    struct fuzz_header *headers;
    size_t n_headers;
    char **joined; /* joined values handed out: valid until the end */
    size_t n_joined;
    const char *body;
    size_t body_len;
    struct sigv4_request sr; /* .header/.header_foreach: the lookups */
};

/* Splits data into a request; -1 when memory ran out. */
int fuzz_req_parse(struct fuzz_req *r, const uint8_t *data, size_t size);
void fuzz_req_free(struct fuzz_req *r);
const char *fuzz_req_header(void *ctx, const char *name);

#endif
