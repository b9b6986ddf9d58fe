/* kicker.c: one-round-at-a-time background work (kicker.h). */
#define LOG_MODULE "clc"
#include <stdlib.h>

#include "clc.h"
#include "kicker.h"
#include "log.h"

void clc_kicker_init(struct clc_kicker *k, const char *what,
                     void (*round)(struct clc *clc, struct db *db))
{
    k->what = what;
    k->round = round;
    pthread_mutex_init(&k->mu, NULL);
    atomic_init(&k->job, false);
    atomic_init(&k->again, false);
}

void clc_kicker_destroy(struct clc_kicker *k)
{
    if (k->round)
        pthread_mutex_destroy(&k->mu);
}

void clc_kicker_poll(struct clc_kicker *k, struct clc *clc, struct db *db)
{
    if (pthread_mutex_trylock(&k->mu) != 0)
        return;
    k->round(clc, db);
    pthread_mutex_unlock(&k->mu);
}

struct kick_arg {
    struct clc_kicker *k;
    struct clc *clc;
};

static void kick_job(void *arg)
{
    struct kick_arg *a = arg;
    struct clc_kicker *k = a->k;
    struct clc *clc = a->clc;
    free(a);
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(clc->db, &err);
    if (db == NULL) {
        log_error("%s: %s", k->what, error_message(err));
        error_free(err);
        atomic_store(&k->job, false);
        return; /* the poller does it */
    }
    do {
        do {
            atomic_store(&k->again, false);
            pthread_mutex_lock(&k->mu);
            k->round(clc, db);
            pthread_mutex_unlock(&k->mu);
        } while (atomic_load(&k->again));
        atomic_store(&k->job, false);
        /* a kick between the last round and the flag's reset */
    } while (atomic_load(&k->again) && !atomic_exchange(&k->job, true));
    db_pool_put(clc->db, db);
}

void clc_kicker_kick(struct clc_kicker *k, struct clc *clc)
{
    atomic_store(&k->again, true);
    if (atomic_exchange(&k->job, true))
        return; /* the round under way goes round again */
    struct kick_arg *a = malloc(sizeof(*a));
    if (a == NULL) {
        atomic_store(&k->job, false);
        return;
    }
    *a = (struct kick_arg){k, clc};
    if (workpool_submit(clc->launcher, kick_job, a) < 0) {
        free(a);
        atomic_store(&k->job, false); /* the poller does it */
    }
}
