/* multipart.h: what multipart.c shares with multipart_list.c: an upload's
 * row and loading the upload a request names. */
#ifndef KOALA_WALRUS_MULTIPART_H
#define KOALA_WALRUS_MULTIPART_H

#include "walrus.h"

struct upload_row {
    int64_t owner;
    int64_t initiated_ms;
    char *headers;
    char *acl;
    char *tags;
    struct object_lock lock;
    char checksum_alg[16]; /* x-amz-checksum-algorithm of the create */
    char sse[200];         /* the upload's key record (sse.c), "" none */
};

void upload_row_clear(struct upload_row *u);
/* The upload named by ?uploadId for the request's bucket and key:
 * NoSuchUpload when there is none. */
int load_upload(struct s3_req *r, struct upload_row *u,
                struct koala_error **err);

#endif
