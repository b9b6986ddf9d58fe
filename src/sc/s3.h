/* s3.h: the SC's client of Walrus' S3 API, for snapshot blocks and
 * manifests in the cloud's own bucket (koala-snapshots), signed with
 * SigV4 as the cloud-internal account koala-storage.
 *
 * Threads: any number at once (each call takes its own curl handle from
 * a small pool). */
#ifndef KOALA_SC_S3_H
#define KOALA_SC_S3_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

struct sc_s3;

/* credentials: a file of AWS_ACCESS_KEY_ID= / AWS_SECRET_ACCESS_KEY=
 * lines. */
struct sc_s3 *sc_s3_new(const char *endpoint, const char *credentials,
                        const char *region, struct koala_error **err);
void sc_s3_free(struct sc_s3 *s);

/* Creates the bucket unless the account has it already. */
int sc_s3_make_bucket(struct sc_s3 *s, const char *bucket,
                      struct koala_error **err);
int sc_s3_put(struct sc_s3 *s, const char *bucket, const char *key,
              const void *data, size_t len, struct koala_error **err);
/* As sc_s3_put, with the data's SHA-256 (hex) known already: a block's
 * content address is also the payload hash SigV4 signs. */
int sc_s3_put_hashed(struct sc_s3 *s, const char *bucket, const char *key,
                     const void *data, size_t len, const char *sha256,
                     struct koala_error **err);
/* The object into out (at most max bytes); 1 when there is none. */
int sc_s3_get(struct sc_s3 *s, const char *bucket, const char *key,
              struct buf *out, size_t max, struct koala_error **err);
/* A missing object is no error. */
int sc_s3_delete(struct sc_s3 *s, const char *bucket, const char *key,
                 struct koala_error **err);

#endif
