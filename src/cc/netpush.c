/* netpush.c: the cluster's network policy (docs/network.md, "The policy
 * document"): SetNetworkPolicy from the CLC, kept in cc.db (net_policy),
 * and pushed to every node with ncSetNetworkPolicy.
 *
 * DESIGN.  The CC holds one document, the newest it was given (a stale
 * one is acknowledged with the version held and changes nothing; a
 * malformed one is a fault and changes nothing).  Each node has an
 * acknowledged version, learnt from its answers to ncSetNetworkPolicy and
 * from the version it reports in every ncDescribeResource; while it is
 * behind, the poller pushes the document to it every round, so a node that
 * comes back, registers or lost its state gets it, and a restarted CC
 * (which starts knowing nothing of its nodes) pushes to all of them.  A
 * new document is pushed at once to every enabled node, in parallel,
 * before SetNetworkPolicy answers.  While a node is behind the held
 * version the scheduler does not place instances on it (cc_sched_view),
 * so a new instance never runs on a node with an older policy.  With no
 * document at all (version 0: a CC run without a CLC) nothing is pushed
 * and the nodes filter nothing.
 *
 * LOCKING.  np->lock guards the document and the per-node versions; it is
 * never held across a call to a node or a database transaction.  Taken
 * after cc->lock is released (never both).
 */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "log.h"
#include "netpolicy.h"
#include "soap.h"

struct netpush_node {
    char name[64];
    int64_t acked;
};

struct netpush {
    pthread_mutex_t lock;
    int64_t version; /* 0: none */
    char *doc;       /* the held document's text */
    size_t doc_len;
    struct netpush_node nodes[CC_MAX_NODES];
    size_t n_nodes;
};

/* ---- the database ---- */

/* 0 with the held document (*doc malloc'd, NULL and version 0 when
 * none), -1 with *err. */
static int store_get(struct db *db, int64_t *version, char **doc, size_t *len,
                     struct koala_error **err)
{
    *version = 0;
    *doc = NULL;
    *len = 0;
    sqlite3_stmt *st = db_stmt(
        db, "SELECT version, document FROM net_policy WHERE id = 1", err);
    if (st == NULL)
        return -1;
    int rc = db_step_row(db, st, "reading the network policy", err);
    if (rc == 0) {
        *version = sqlite3_column_int64(st, 0);
        const void *t = sqlite3_column_text(st, 1);
        *len = (size_t)sqlite3_column_bytes(st, 1);
        *doc = malloc(*len + 1);
        if (*doc) {
            memcpy(*doc, t ? t : "", *len);
            (*doc)[*len] = '\0';
        }
    }
    db_stmt_done(st);
    if (rc == 0 && *doc == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    return rc < 0 ? -1 : 0;
}

static int store_put(struct db *db, int64_t version, const char *doc,
                     size_t len, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "INSERT OR REPLACE INTO net_policy (id, "
                               "version, document) VALUES (1, ?, ?)",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, version);
    sqlite3_bind_text(st, 2, doc, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0
                             : db_error(db, "writing the network policy", err);
}

/* ---- per-node versions ---- */

static struct netpush_node *node_locked(struct netpush *np, const char *name)
{
    for (size_t i = 0; i < np->n_nodes; i++)
        if (strcmp(np->nodes[i].name, name) == 0)
            return &np->nodes[i];
    if (np->n_nodes == CC_MAX_NODES)
        return NULL;
    struct netpush_node *n = &np->nodes[np->n_nodes++];
    snprintf(n->name, sizeof(n->name), "%s", name);
    n->acked = -1; /* unknown */
    return n;
}

/* A node's versions only grow: an answer or a report that comes late
 * never takes one back. */
static void set_acked(struct netpush *np, const char *name, int64_t v)
{
    pthread_mutex_lock(&np->lock);
    struct netpush_node *n = node_locked(np, name);
    if (n && v > n->acked)
        n->acked = v;
    pthread_mutex_unlock(&np->lock);
}

bool netpush_node_current(struct cc *cc, const char *name)
{
    struct netpush *np = cc->netpush;
    if (np == NULL)
        return true;
    pthread_mutex_lock(&np->lock);
    bool ok = np->version == 0;
    for (size_t i = 0; i < np->n_nodes && !ok; i++)
        if (strcmp(np->nodes[i].name, name) == 0)
            ok = np->nodes[i].acked > 0;
    pthread_mutex_unlock(&np->lock);
    return ok;
}

/* ---- pushing ---- */

/* Sends the held document (if any, and newer than what the node is known
 * to hold, or whatever it is known to hold with force) to one node. */
static void push(struct cc *cc, const char *name, const char *endpoint,
                 bool force)
{
    struct netpush *np = cc->netpush;
    pthread_mutex_lock(&np->lock);
    struct netpush_node *n = node_locked(np, name);
    int64_t version = np->version;
    bool behind = version > 0 && n && (force || n->acked < version);
    char *doc = behind ? strndup(np->doc, np->doc_len) : NULL;
    pthread_mutex_unlock(&np->lock);
    if (!behind)
        return;
    struct koala_error *e = NULL;
    if (doc == NULL) {
        log_error("node %s: network policy: out of memory", name);
        return;
    }
    struct xml_writer *w = soap_start("ncSetNetworkPolicy", NC_NS);
    xml_u64_element(w, "version", (uint64_t)version);
    xml_text_element(w, "policy", doc);
    free(doc);
    if (cc->net_ok && cc->opt.manage_network) {
        char router[16];
        cc_ip_format(cc->net.subnet.router, router);
        xml_text_element(w, "router", router);
    }
    size_t len;
    char *req = soap_finish(w, &len);
    struct xml_doc *xd = NULL;
    const struct xml_node *body = NULL;
    long long held = -1;
    int64_t t0 = time_mono_ms();
    if (nc_call(cc, endpoint, "ncSetNetworkPolicy", req, len,
                (unsigned)cc->opt.nc_timeout_ms, &xd, &body, &e) == 0 &&
        soap_int(body, "version", -1, &held, &e) == 0 && held >= 0) {
        set_acked(np, name, held);
        log_info("node %s: network policy version %lld held (pushed %lld in "
                 "%lld ms)",
                 name, held, (long long)version,
                 (long long)(time_mono_ms() - t0));
    } else {
        log_warn("node %s: network policy version %lld not pushed: %s", name,
                 (long long)version, error_message(e));
    }
    xml_doc_free(xd);
    error_free(e);
}

void netpush_node(struct cc *cc, const char *name, const char *endpoint,
                  int64_t reported)
{
    if (cc->netpush == NULL)
        return;
    if (reported >= 0)
        set_acked(cc->netpush, name, reported);
    /* A node that says it is behind is believed (it may have lost its
     * state): pushed even if it acknowledged more before. */
    pthread_mutex_lock(&cc->netpush->lock);
    bool force = reported >= 0 && reported < cc->netpush->version;
    pthread_mutex_unlock(&cc->netpush->lock);
    push(cc, name, endpoint, force);
}

struct push_all {
    struct cc *cc;
    struct cc_node *nodes;
};

static void push_one(size_t i, void *ctx)
{
    struct push_all *a = ctx;
    if (a->nodes[i].state == CC_NODE_ENABLED)
        push(a->cc, a->nodes[i].name, a->nodes[i].endpoint, false);
}

/* ---- the operation ---- */

void cc_op_set_network_policy(struct cc_req *r)
{
    struct cc *cc = r->cc;
    struct netpush *np = cc->netpush;
    struct koala_error *err = NULL;
    long long version;
    _cleanup_free_ char *doc = NULL;
    struct netpolicy *p = NULL;
    struct db *db = NULL;
    if (soap_int(r->op, "version", -1, &version, &err) < 0)
        goto fail;
    if (version < 1 || version > NETPOLICY_MAX_VERSION) {
        error_set(&err, EINVAL,
                  version == -1 ? "MissingParameter" : "InvalidParameterValue",
                  "version must be a positive integer");
        goto fail;
    }
    if ((doc = soap_text(r->op, "policy", &err)) == NULL)
        goto fail;
    size_t len = strlen(doc);
    if ((p = netpolicy_parse(doc, len, &err)) == NULL)
        goto fail;
    if (p->version != version) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "version %lld is not the document's (%lld)", version,
                  (long long)p->version);
        goto fail;
    }
    netpolicy_free(p);
    p = NULL;
    if ((db = cc_req_db(r, &err)) == NULL || db_begin(db, &err) < 0)
        goto fail;
    int64_t held;
    char *old = NULL;
    size_t old_len;
    if (store_get(db, &held, &old, &old_len, &err) < 0) {
        db_rollback(db);
        goto fail;
    }
    free(old);
    bool newer = version > held;
    if (newer && (store_put(db, version, doc, len, &err) < 0 ||
                  db_commit(db, &err) < 0)) {
        db_rollback(db);
        goto fail;
    }
    if (!newer)
        db_rollback(db);
    if (newer) {
        pthread_mutex_lock(&np->lock);
        if (version > np->version) {
            free(np->doc);
            np->doc = doc;
            np->doc_len = len;
            np->version = version;
            doc = NULL;
        }
        pthread_mutex_unlock(&np->lock);
        log_info("network policy version %lld held (was %lld)", version,
                 (long long)held);
        /* At once to the nodes that answer; the poller retries the rest. */
        struct cc_node *nodes = malloc(sizeof(*nodes) * CC_MAX_NODES);
        if (nodes) {
            struct push_all a = {cc, nodes};
            cc_parallel(cc, cc->pool, nodes_snapshot(cc, nodes), push_one, &a);
            free(nodes);
        }
        held = version;
    }
    pthread_mutex_lock(&np->lock);
    if (np->version > held)
        held = np->version;
    pthread_mutex_unlock(&np->lock);
    struct xml_writer *w = soap_start("SetNetworkPolicyResponse", CC_NS);
    xml_u64_element(w, "version", (uint64_t)held);
    cc_reply(r, w);
    return;
fail:
    netpolicy_free(p);
    cc_fail(r, err);
}

/* ---- the daemon ---- */

struct netpush *netpush_new(struct db *db, struct koala_error **err)
{
    struct netpush *np = calloc(1, sizeof(*np));
    if (np == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&np->lock, NULL);
    if (store_get(db, &np->version, &np->doc, &np->doc_len, err) < 0) {
        netpush_free(np);
        return NULL;
    }
    if (np->version)
        log_info("network policy version %lld held: pushed to every node",
                 (long long)np->version);
    return np;
}

void netpush_free(struct netpush *np)
{
    if (np == NULL)
        return;
    pthread_mutex_destroy(&np->lock);
    free(np->doc);
    free(np);
}
