/* db_group.c: group commit (see db_group_run in db.h).
 *
 * DESIGN: SQLite has one writer at a time, and with synchronous=FULL every
 * COMMIT waits for an fsync of the WAL.  Requests that each commit their own
 * small transaction therefore queue behind one another's fsyncs, and the
 * server's write rate is one transaction per fsync, however many clients
 * there are.  Group commit runs the changes of every request waiting at that
 * moment in one transaction, paying one fsync for all of them.
 *
 * There is no committer thread: a caller queues its job and, if nobody is
 * committing, becomes the leader.  The leader takes every queued job, runs
 * each in its own SAVEPOINT (a failing job is rolled back alone), commits,
 * wakes the callers of that batch, and steps down once its own job is
 * done: a waiter whose job is still queued leads next.  Jobs that come in
 * during a commit's fsync form the next batch.  A caller
 * returns only once its job is durable (or has failed).
 *
 * Locking: `mu` guards the queue, `leader` and every job's `done`; jobs run
 * outside it, on the leader's thread and database connection.
 */
#define LOG_MODULE "db"
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"

struct group_job {
    db_group_fn fn;
    void *ctx;
    struct koala_error *err; /* the job's own failure, or the batch's */
    bool done;
    struct group_job *next;
};

struct db_group {
    struct db_pool *pool;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool leader;
    struct group_job *head, **tail;
    unsigned max_batch;
};

struct db_group *db_group_new(struct db_pool *pool, unsigned max_batch)
{
    struct db_group *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->pool = pool;
    g->tail = &g->head;
    g->max_batch = max_batch ? max_batch : 256;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    return g;
}

void db_group_free(struct db_group *g)
{
    if (g == NULL)
        return;
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* Takes up to max_batch queued jobs; called locked. */
static struct group_job *take_batch(struct db_group *g)
{
    struct group_job *batch = g->head, **end = &g->head;
    for (unsigned n = 0; *end && n < g->max_batch; n++)
        end = &(*end)->next;
    g->head = *end;
    *end = NULL;
    if (g->head == NULL)
        g->tail = &g->head;
    return batch;
}

/* Runs one job inside the open transaction, in a savepoint of its own. */
static void run_job(struct db *db, struct group_job *j)
{
    if (db_exec(db, "SAVEPOINT job", &j->err) < 0)
        return;
    if (j->fn(db, j->ctx, &j->err) < 0) {
        if (j->err == NULL)
            error_set(&j->err, EIO, NULL, "group commit job failed");
        sqlite3_exec(db_handle(db), "ROLLBACK TO job; RELEASE job", NULL, NULL,
                     NULL);
        return;
    }
    db_exec(db, "RELEASE job", &j->err);
}

/* Runs a batch in one transaction; fills each job's err on failure. */
static void commit_batch(struct db_group *g, struct group_job *batch)
{
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(g->pool, &err);
    if (db && db_begin(db, &err) == 0) {
        for (struct group_job *j = batch; j; j = j->next)
            run_job(db, j);
        db_commit(db, &err);
    }
    if (err) {
        /* Nothing of the batch is durable: every job reports it. */
        for (struct group_job *j = batch; j; j = j->next)
            if (j->err == NULL)
                error_set(&j->err, err->errnum, err->code, "%s",
                          error_message(err));
        error_free(err);
    }
    db_pool_put(g->pool, db);
}

int db_group_run(struct db_group *g, db_group_fn fn, void *ctx,
                 struct koala_error **err)
{
    struct group_job job = {.fn = fn, .ctx = ctx};
    pthread_mutex_lock(&g->mu);
    *g->tail = &job;
    g->tail = &job.next;
    while (!job.done && g->leader)
        pthread_cond_wait(&g->cv, &g->mu);
    if (!job.done) {
        /* Nobody is committing: lead until our own job is done, then hand
         * over to a waiter (whose request should not wait for ours). */
        g->leader = true;
        struct group_job *batch;
        while (!job.done && (batch = take_batch(g)) != NULL) {
            pthread_mutex_unlock(&g->mu);
            commit_batch(g, batch);
            pthread_mutex_lock(&g->mu);
            for (struct group_job *j = batch, *next; j; j = next) {
                next = j->next; /* j may be gone once done is seen */
                j->done = true;
            }
            pthread_cond_broadcast(&g->cv);
        }
        g->leader = false;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    if (job.err) {
        if (err && *err == NULL)
            *err = job.err;
        else
            error_free(job.err);
        return -1;
    }
    return 0;
}
