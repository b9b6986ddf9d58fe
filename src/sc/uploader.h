/* uploader.h: the snapshot job's blocks hashed and uploaded to Walrus by
 * a few threads at once (one thread hashing and one PUT at a time left the
 * job at half the speed of `aws s3 cp`).
 *
 * The job reads the dirty blocks in order and hands each one here; a
 * thread hashes it into the manifest's entry (nothing for a block of
 * zeros), and unless Walrus has it already (the database says) or this
 * job handed over the same bytes before, PUTs it and records it in the
 * database once Walrus has it (never before: a recorded block is one the
 * next snapshot does not upload). */
#ifndef KOALA_SC_UPLOADER_H
#define KOALA_SC_UPLOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct sc;
struct sc_manifest;
struct sc_uploader;

/* Hashes go into m (its entries must outlive the uploader). */
struct sc_uploader *sc_uploader_new(struct sc *sc, unsigned threads,
                                    struct sc_manifest *m,
                                    struct koala_error **err);
/* Queues a copy of block `index` (waits while the queue is full).  -1
 * once a block failed (that error). */
int sc_uploader_put(struct sc_uploader *u, size_t index, const void *data,
                    size_t len, struct koala_error **err);
/* Waits for every upload, stops the threads, frees u; the bytes uploaded;
 * -1 with the first failure. */
int sc_uploader_finish(struct sc_uploader *u, uint64_t *uploaded,
                       struct koala_error **err);

#endif
