/* uploader.h: the snapshot job's block uploads to Walrus, several at once
 * (one PUT at a time left the job at half the speed of `aws s3 cp`).
 *
 * The job reads and hashes blocks in order and hands each new one here;
 * a few threads PUT them and record each block in the database once
 * Walrus has it (never before: a recorded block is one the next snapshot
 * does not upload).  A block already handed over in this job is not
 * uploaded twice. */
#ifndef KOALA_SC_UPLOADER_H
#define KOALA_SC_UPLOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct sc;
struct sc_uploader;

struct sc_uploader *sc_uploader_new(struct sc *sc, unsigned threads,
                                    struct koala_error **err);
/* Queues a copy of the block (waits while the queue is full).  *queued:
 * false when this job queued the same block before.  -1 once an upload
 * failed (that error). */
int sc_uploader_put(struct sc_uploader *u, const char hash[65],
                    const void *data, size_t len, bool *queued,
                    struct koala_error **err);
/* Waits for every upload, stops the threads, frees u; the bytes uploaded;
 * -1 with the first failure. */
int sc_uploader_finish(struct sc_uploader *u, uint64_t *uploaded,
                       struct koala_error **err);

#endif
