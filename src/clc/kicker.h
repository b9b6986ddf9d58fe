/* kicker.h: background work that runs one round at a time, either from
 * the poller or kicked after a change (on the launch pool).
 *
 * A kick while a round is queued or running only asks it to go round
 * again, so a burst of changes (or a peer that does not answer) takes one
 * launch-pool thread, not one per change; the poller's round is skipped
 * while a kicked one runs (that one, or the next poll, does the work).
 */
#ifndef KOALA_CLC_KICKER_H
#define KOALA_CLC_KICKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct clc;
struct db;

struct clc_kicker {
    const char *what; /* for the log */
    void (*round)(struct clc *clc, struct db *db);
    pthread_mutex_t mu;
    atomic_bool job;   /* a kicked round is queued or running */
    atomic_bool again; /* a change since that round began */
};

void clc_kicker_init(struct clc_kicker *k, const char *what,
                     void (*round)(struct clc *clc, struct db *db));
void clc_kicker_destroy(struct clc_kicker *k);
/* The poller's round (skipped while a kicked one runs). */
void clc_kicker_poll(struct clc_kicker *k, struct clc *clc, struct db *db);
/* A round soon, on the launch pool. */
void clc_kicker_kick(struct clc_kicker *k, struct clc *clc);

#endif
