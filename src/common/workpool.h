/* workpool.h: a fixed pool of threads running jobs from a queue, for work
 * that may block (disk, fsync, another server) and so must not run on an
 * event loop thread.
 *
 * Jobs run in the order queued, each on one of the pool's threads; a job
 * owns whatever its context points to until it returns.
 */
#ifndef KOALA_WORKPOOL_H
#define KOALA_WORKPOOL_H

#include <stddef.h>

#include "error.h"

struct workpool;

typedef void (*workpool_fn)(void *ctx);

/* Starts n threads (0: 16); name shows in ps/top (at most 15 bytes). */
struct workpool *workpool_new(unsigned n, const char *name,
                              struct koala_error **err);
/* Runs the jobs still queued, then stops the threads and frees the pool.
 * NULL-safe.  No job may be submitted once it was called. */
void workpool_free(struct workpool *p);
/* Queues fn(ctx).  0, or -1 when memory runs out (fn is then not run). */
int workpool_submit(struct workpool *p, workpool_fn fn, void *ctx);

#endif
