/* notify.c: pushing instance state changes up to the CLC
 * (NotifyInstanceState in urn:koala:clc: cluster, instance*), best effort.
 *
 * Changes are queued (the latest record per instance replaces an older
 * one still queued) and sent in batches by one thread, so a slow or absent
 * CLC never holds up a request or the poller.  A batch that cannot be
 * delivered is tried three times and then dropped: the CLC also polls
 * DescribeInstances, so a lost notification only delays.
 */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cc.h"
#include "log.h"
#include "soap.h"

#define NOTIFY_MAX_QUEUE 10000
#define NOTIFY_BATCH 100

struct notifier {
    struct cc *cc;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct cc_instance *q;
    size_t n, cap;
    bool stopping;
    pthread_t thread;
    bool started;
    uint64_t sent, failed;
};

void notifier_push(struct notifier *n, const struct cc_instance *in)
{
    if (n == NULL || !n->started)
        return;
    pthread_mutex_lock(&n->mu);
    size_t i = 0;
    while (i < n->n && strcmp(n->q[i].id, in->id) != 0)
        i++;
    if (i == n->n) {
        if (n->n == n->cap) {
            size_t cap = n->cap ? n->cap * 2 : 64;
            struct cc_instance *g = cap <= NOTIFY_MAX_QUEUE
                                        ? realloc(n->q, cap * sizeof(*g))
                                        : NULL;
            if (g == NULL) {
                n->failed++;
                pthread_mutex_unlock(&n->mu);
                log_warn("CLC notification for %s dropped: queue full", in->id);
                return;
            }
            n->q = g;
            n->cap = cap;
        }
        n->n++;
    }
    n->q[i] = *in;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

static int send_batch(struct notifier *n, const struct cc_instance *b,
                      size_t count, struct koala_error **err)
{
    struct cc *cc = n->cc;
    struct xml_writer *w = soap_start("NotifyInstanceState", CLC_NS);
    xml_text_element(w, "cluster", cc->opt.name);
    for (size_t i = 0; i < count; i++)
        cc_instance_write(w, "instance", &b[i]);
    size_t len;
    char *req = soap_finish(w, &len);
    struct soap_client *c =
        soap_client_new(cc->opt.clc_endpoint, &cc->tls, 10000, err);
    if (c == NULL) {
        free(req);
        return -1;
    }
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    int rc = soap_call(c, "NotifyInstanceState", req, len, &doc, &body, err);
    xml_doc_free(doc);
    soap_client_free(c);
    return rc;
}

/* Waits ms unless stopping; n->mu held.  False when stopping. */
static bool pause_locked(struct notifier *n, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    int64_t ns = until.tv_nsec + (ms % 1000) * 1000000;
    until.tv_sec += ms / 1000 + ns / 1000000000;
    until.tv_nsec = ns % 1000000000;
    while (!n->stopping && pthread_cond_timedwait(&n->cv, &n->mu, &until) == 0)
        ;
    return !n->stopping;
}

static void *notifier_main(void *arg)
{
    struct notifier *n = arg;
    pthread_setname_np(pthread_self(), "ccnotify");
    struct cc_instance *batch = malloc(NOTIFY_BATCH * sizeof(*batch));
    pthread_mutex_lock(&n->mu);
    while (batch && !n->stopping) {
        if (n->n == 0) {
            pthread_cond_wait(&n->cv, &n->mu);
            continue;
        }
        size_t count = n->n < NOTIFY_BATCH ? n->n : NOTIFY_BATCH;
        memcpy(batch, n->q, count * sizeof(*batch));
        memmove(n->q, n->q + count, (n->n - count) * sizeof(*batch));
        n->n -= count;
        bool ok = false;
        for (int attempt = 0; attempt < 3 && !ok; attempt++) {
            if (attempt > 0 && !pause_locked(n, 500LL << attempt))
                break;
            pthread_mutex_unlock(&n->mu);
            struct koala_error *e = NULL;
            ok = send_batch(n, batch, count, &e) == 0;
            if (!ok)
                log_warn("NotifyInstanceState to %s: %s",
                         n->cc->opt.clc_endpoint, error_message(e));
            error_free(e);
            pthread_mutex_lock(&n->mu);
        }
        if (ok)
            n->sent += count;
        else
            n->failed += count;
    }
    pthread_mutex_unlock(&n->mu);
    free(batch);
    return NULL;
}

struct notifier *notifier_new(struct cc *cc, struct koala_error **err)
{
    struct notifier *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    n->cc = cc;
    pthread_mutex_init(&n->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (cc->opt.clc_endpoint == NULL)
        return n; /* nobody to tell: pushes are dropped */
    int rc = pthread_create(&n->thread, NULL, notifier_main, n);
    if (rc != 0) {
        errno = rc;
        error_set_errno(err, "starting the notifier");
        notifier_free(n);
        return NULL;
    }
    n->started = true;
    return n;
}

void notifier_free(struct notifier *n)
{
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->mu);
    n->stopping = true;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    if (n->started)
        pthread_join(n->thread, NULL);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n->q);
    free(n);
}

void notifier_counts(struct notifier *n, uint64_t *sent, uint64_t *failed)
{
    pthread_mutex_lock(&n->mu);
    *sent = n->sent;
    *failed = n->failed;
    pthread_mutex_unlock(&n->mu);
}
