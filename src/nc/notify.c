/* notify.c: pushing instance state changes to the CC (NotifyInstanceState
 * in urn:koala:cc: node, instance*), over mutual TLS with the node's own
 * certificate.  Best effort: the CC polls ncDescribeInstances as well, so
 * a lost notification only delays.
 *
 * State changes queue the instance's id (once, however often it changes);
 * the notifier thread sends every queued instance's state as it is when
 * sending, in one message.  On failure the ids stay queued and the send is
 * retried after RETRY_MS.
 *
 * Locking: nc->lock is taken before n->lock (nc_notify_locked runs with
 * nc->lock held); the thread never holds n->lock while taking nc->lock.
 */
#define LOG_MODULE "nc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nc.h"
#include "soap.h"

#define RETRY_MS 5000
#define MAX_QUEUED 4096

struct nc_notifier {
    struct nc *nc;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char (*ids)[32];
    size_t n;
    bool stop;
    struct soap_client *client;
    unsigned failures;
};

void nc_notify_locked(struct nc *nc, const struct nc_instance *inst)
{
    struct nc_notifier *n = nc->notifier;
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->lock);
    bool queued = false;
    for (size_t i = 0; i < n->n && !queued; i++)
        queued = strcmp(n->ids[i], inst->id) == 0;
    if (!queued && n->n < MAX_QUEUED) {
        snprintf(n->ids[n->n++], 32, "%s", inst->id);
        pthread_cond_signal(&n->cond);
    }
    pthread_mutex_unlock(&n->lock);
}

static int send_batch(struct nc_notifier *n, char (*ids)[32], size_t count,
                      struct koala_error **err)
{
    struct nc *nc = n->nc;
    struct xml_writer *w = soap_start("NotifyInstanceState", CC_XMLNS);
    pthread_mutex_lock(&nc->lock);
    xml_text_element(w, "node", nc->name);
    size_t sent = 0;
    for (size_t i = 0; i < count; i++) {
        struct nc_instance *inst = nc_find_locked(nc, ids[i]);
        if (inst) {
            nc_instance_describe(nc, inst, w, "instance");
            sent++;
        }
    }
    pthread_mutex_unlock(&nc->lock);
    size_t len;
    char *req = soap_finish(w, &len);
    if (sent == 0) {
        free(req);
        return 0;
    }
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    int rc =
        soap_call(n->client, "NotifyInstanceState", req, len, &doc, &body, err);
    xml_doc_free(doc);
    if (rc == 0)
        log_debug("NotifyInstanceState: %zu instance(s)", sent);
    return rc;
}

static void *notifier_main(void *arg)
{
    struct nc_notifier *n = arg;
    char(*batch)[32] = malloc(MAX_QUEUED * sizeof(*batch));
    pthread_mutex_lock(&n->lock);
    while (!n->stop && batch) {
        if (n->n == 0) {
            pthread_cond_wait(&n->cond, &n->lock);
            continue;
        }
        size_t count = n->n;
        memcpy(batch, n->ids, count * sizeof(*batch));
        n->n = 0;
        pthread_mutex_unlock(&n->lock);
        struct koala_error *err = NULL;
        int rc = send_batch(n, batch, count, &err);
        pthread_mutex_lock(&n->lock);
        if (rc == 0) {
            n->failures = 0;
            continue;
        }
        if (n->failures++ == 0 || n->failures % 60 == 0)
            log_warn("NotifyInstanceState to %s: %s (will retry)",
                     soap_client_endpoint(n->client), error_message(err));
        error_free(err);
        /* Back in the queue (ahead of newer ones, without duplicates). */
        for (size_t i = 0; i < count && n->n < MAX_QUEUED; i++) {
            bool dup = false;
            for (size_t j = 0; j < n->n && !dup; j++)
                dup = strcmp(n->ids[j], batch[i]) == 0;
            if (!dup)
                memcpy(n->ids[n->n++], batch[i], sizeof(*batch));
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += RETRY_MS / 1000;
        while (!n->stop &&
               pthread_cond_timedwait(&n->cond, &n->lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&n->lock);
    free(batch);
    return NULL;
}

struct nc_notifier *nc_notifier_new(struct nc *nc, struct koala_error **err)
{
    struct nc_notifier *n = calloc(1, sizeof(*n));
    if (n == NULL || (n->ids = calloc(MAX_QUEUED, sizeof(*n->ids))) == NULL) {
        free(n);
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    n->nc = nc;
    pthread_mutex_init(&n->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cond, &ca);
    pthread_condattr_destroy(&ca);
    struct http_client_tls tls = {nc->opt.ca, nc->opt.tls_cert, nc->opt.tls_key,
                                  false};
    n->client = soap_client_new(nc->opt.cc_endpoint, &tls, 10000, err);
    if (n->client == NULL ||
        pthread_create(&n->thread, NULL, notifier_main, n) != 0) {
        if (n->client)
            error_set(err, EAGAIN, NULL, "cannot start a thread");
        soap_client_free(n->client);
        free(n->ids);
        free(n);
        return NULL;
    }
    return n;
}

void nc_notifier_free(struct nc_notifier *n)
{
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->lock);
    n->stop = true;
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
    pthread_join(n->thread, NULL);
    soap_client_free(n->client);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->cond);
    free(n->ids);
    free(n);
}
