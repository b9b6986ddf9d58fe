/* workpool.c: the blocking-work thread pool (see workpool.h).  One mutex
 * and condition variable guard a FIFO of jobs; threads sleep on it when
 * it is empty. */
#include "workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct job {
    workpool_fn fn;
    void *ctx;
    struct job *next;
};

struct workpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, **tail;
    bool stopping;
    unsigned n;
    pthread_t *threads;
    char name[16];
};

static void *worker_main(void *arg)
{
    struct workpool *p = arg;
    pthread_setname_np(pthread_self(), p->name);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        struct job *j = p->head;
        if (j == NULL)
            break; /* stopping, and nothing left to run */
        p->head = j->next;
        if (p->head == NULL)
            p->tail = &p->head;
        pthread_mutex_unlock(&p->mu);
        j->fn(j->ctx);
        free(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct workpool *workpool_new(unsigned n, const char *name,
                              struct koala_error **err)
{
    struct workpool *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    p->n = n ? n : 16;
    p->tail = &p->head;
    snprintf(p->name, sizeof(p->name), "%s", name ? name : "worker");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc(p->n, sizeof(*p->threads));
    if (p->threads == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        p->n = 0;
        workpool_free(p);
        return NULL;
    }
    for (unsigned i = 0; i < p->n; i++) {
        int rc = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (rc != 0) {
            error_set(err, rc, NULL, "cannot start %s thread: %s", p->name,
                      strerror(rc));
            p->n = i;
            workpool_free(p);
            return NULL;
        }
    }
    return p;
}

void workpool_free(struct workpool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    /* With no thread (a failed start), queued jobs cannot have been
     * submitted: workpool_new never returned the pool. */
    free(p->threads);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int workpool_submit(struct workpool *p, workpool_fn fn, void *ctx)
{
    struct job *j = malloc(sizeof(*j));
    if (j == NULL)
        return -1;
    j->fn = fn;
    j->ctx = ctx;
    j->next = NULL;
    pthread_mutex_lock(&p->mu);
    *p->tail = j;
    p->tail = &j->next;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}
