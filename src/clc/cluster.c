/* cluster.c: the CLC and its clusters: SOAP clients for the CCs, applying
 * the instance states they report (pushed with NotifyInstanceState or
 * polled), resending orders a cluster has not carried out, ending instances
 * that never start, and the poller that keeps every registered component's
 * state (ENABLED, NOTREADY, BROKEN) and each CC's node list current.
 *
 * DESIGN: each instance row keeps what the user wants (`desired`: running,
 * stopped, terminated) and what its cluster last reported (`reported`).
 * The state users see is the reported one, except that an order in flight
 * shows as its transition (shutting-down, stopping, pending) until the
 * cluster confirms it.  clc_resend_orders() sends every order whose
 * desired and reported states disagree; it runs after each change and on
 * every poll, so orders lost on the way are sent again.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clc.h"
#include "ebs.h"
#include "log.h"
#include "secgroups.h"
#include "soap.h"

#define CC_TIMEOUT_MS 30000

struct find_ep {
    const char *name;
    char endpoint[256];
    bool found;
};

static int find_endpoint(void *ctx, const struct service *s)
{
    struct find_ep *f = ctx;
    if (strcmp(s->name, f->name) != 0)
        return 0;
    snprintf(f->endpoint, sizeof(f->endpoint), "%s", s->endpoint);
    f->found = true;
    return 1;
}

struct soap_client *clc_cc_client(struct clc *clc, struct db *db,
                                  const char *cluster, struct koala_error **err)
{
    struct find_ep f = {.name = cluster};
    if (clc_services_each(db, "cluster", find_endpoint, &f, err) < 0)
        return NULL;
    if (!f.found) {
        error_set(err, ENOENT, "InternalError",
                  "cluster '%s' is not registered", cluster);
        return NULL;
    }
    return soap_client_new(f.endpoint, &clc->tls, CC_TIMEOUT_MS, err);
}

/* ---- applying reported states ---- */

static bool known_state(const char *s)
{
    return ec2_state_code(s) != 0 || strcmp(s, "pending") == 0;
}

/* The state users see, given what is wanted and what was reported. */
static const char *shown_state(const char *desired, const char *reported,
                               const char *current)
{
    if (strcmp(reported, "terminated") == 0)
        return "terminated";
    if (strcmp(desired, "terminated") == 0)
        return "shutting-down";
    if (strcmp(desired, "stopped") == 0 &&
        (strcmp(reported, "running") == 0 || strcmp(reported, "pending") == 0))
        return "stopping";
    /* Start in flight: the node has not begun booting it yet. */
    if (strcmp(desired, "running") == 0 && strcmp(reported, "stopped") == 0 &&
        strcmp(current, "pending") == 0)
        return "pending";
    return reported;
}

#define INSTANCE_INITIATED "Client.InstanceInitiatedShutdown"

static int apply_one(struct db *db, const char *cluster,
                     const struct xml_node *n, struct koala_error **err)
{
    _cleanup_free_ char *id = xml_child_text(n, "instanceId");
    _cleanup_free_ char *state = xml_child_text(n, "state");
    if (id == NULL || state == NULL || !known_state(str_trim(state)))
        return 0; /* not ours to judge; ignore the item */
    str_trim(id);
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT state, desired, cluster, shutdown_behavior, reason_code"
                " FROM instances WHERE id = ?",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    char cur[16] = "", desired[16] = "", where[64] = "", on_shutdown[16] = "",
         cur_reason[64] = "";
    int rc = db_step_row(db, st, "looking up instance", err);
    if (rc == 0) {
        clc_col(cur, sizeof(cur), st, 0);
        clc_col(desired, sizeof(desired), st, 1);
        clc_col(where, sizeof(where), st, 2);
        clc_col(on_shutdown, sizeof(on_shutdown), st, 3);
        clc_col(cur_reason, sizeof(cur_reason), st, 4);
    }
    db_stmt_done(st);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (strcmp(where, cluster) != 0)
        return 0; /* another cluster's */
    _cleanup_free_ char *node = xml_child_text(n, "node");
    if (strcmp(cur, "terminated") == 0) {
        /* Over for the user; but one terminated while its launch was on
         * the way to the cluster is still on a node: remember where, so
         * that clc_resend_orders terminates it there. */
        return clc_exec(db,
                        "UPDATE instances SET reported = ?,"
                        " node = COALESCE(NULLIF(?, ''), node) WHERE id = ?"
                        " AND desired = 'terminated'",
                        "updating instance", err, state,
                        node ? str_trim(node) : "", id, NULL);
    }
    /* A guest that powered itself off stopped, or is terminated if its
     * instance-initiated shutdown behaviour says so (then
     * clc_resend_orders tells the cluster). */
    if (strcmp(state, "stopped") == 0 && strcmp(desired, "running") == 0 &&
        strcmp(cur, "pending") != 0)
        snprintf(desired, sizeof(desired), "%s",
                 strcmp(on_shutdown, "terminate") == 0 ? "terminated"
                                                       : "stopped");
    const char *shown = shown_state(desired, state, cur);
    _cleanup_free_ char *ip = xml_child_text(n, "privateIp");
    _cleanup_free_ char *mac = xml_child_text(n, "macAddress");
    _cleanup_free_ char *hv = xml_child_text(n, "hypervisor");
    _cleanup_free_ char *rcode = xml_child_text(n, "stateReasonCode");
    _cleanup_free_ char *rmsg = xml_child_text(n, "stateReasonMessage");
    _cleanup_free_ char *reach = xml_child_text(n, "reachability");
    /* Ended because its guest powered off (shutdown behaviour terminate):
     * that stays the reason, not the terminate this CLC then sent. */
    bool keep_reason = strcmp(desired, "terminated") == 0 &&
                       strcmp(cur_reason, INSTANCE_INITIATED) == 0;
    char now[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    int rc2 = clc_exec(
        db,
        "UPDATE instances SET state = ?, reported = ?, desired = ?,"
        " node = COALESCE(NULLIF(?, ''), node),"
        " private_ip = COALESCE(NULLIF(?, ''), private_ip),"
        " mac = COALESCE(NULLIF(?, ''), mac),"
        " hypervisor = COALESCE(NULLIF(?, ''), hypervisor),"
        " reason_code = CASE WHEN ?8 != '' THEN ?8 ELSE reason_code END,"
        " reason_message = CASE WHEN ?8 != '' THEN ?9 ELSE reason_message END,"
        " updated = CASE WHEN state != ?1 THEN ?10 ELSE updated END,"
        " reachability = ?12 WHERE id = ?11",
        "updating instance", err, shown, state, desired,
        node ? str_trim(node) : "", ip ? str_trim(ip) : "",
        mac ? str_trim(mac) : "", hv ? str_trim(hv) : "",
        rcode && !keep_reason ? str_trim(rcode) : "", rmsg ? rmsg : "", now, id,
        reach ? str_trim(reach) : "", NULL);
    /* (after the instance's new state: a terminated one's volumes that
     * were to go with it go) */
    return rc2 < 0 ? -1 : clc_ebs_apply_instance(NULL, db, id, shown, n, err);
}

/* After a complete report: instances the cluster no longer knows. */
static int reap_missing(struct clc *clc, struct db *db, const char *cluster,
                        const struct xml_node *parent, struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT id, desired, state, updated FROM instances WHERE"
                " cluster = ? AND node != '' AND state != 'terminated'",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, cluster, -1, SQLITE_STATIC);
    struct gone {
        char id[32];
        bool wanted_gone;
    } *gone = NULL;
    size_t n = 0;
    int64_t now = time_now_ms();
    while (sqlite3_step(st) == SQLITE_ROW) {
        char id[32], desired[16], state[16];
        clc_col(id, sizeof(id), st, 0);
        clc_col(desired, sizeof(desired), st, 1);
        clc_col(state, sizeof(state), st, 2);
        int64_t updated = sqlite3_column_int64(st, 3);
        bool listed = false;
        for (const struct xml_node *x =
                 xml_next_child(parent, NULL, "instance");
             x && !listed; x = xml_next_child(parent, x, "instance")) {
            _cleanup_free_ char *xid = xml_child_text(x, "instanceId");
            listed = xid && strcmp(str_trim(xid), id) == 0;
        }
        /* A launch may still be on its way to the cluster's database. */
        if (listed ||
            (strcmp(state, "pending") == 0 &&
             now - updated < (int64_t)clc->opt.pending_timeout_s * 1000))
            continue;
        struct gone *ng = realloc(gone, (n + 1) * sizeof(*ng));
        if (ng == NULL)
            break;
        gone = ng;
        snprintf(gone[n].id, sizeof(gone[n].id), "%s", id);
        gone[n++].wanted_gone = strcmp(desired, "terminated") == 0;
    }
    db_stmt_done(st);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (gone[i].wanted_gone) {
            char t[24];
            snprintf(t, sizeof(t), CLC_INT "%lld", (long long)now);
            rc = clc_exec(db,
                          "UPDATE instances SET state = 'terminated',"
                          " reported = 'terminated', updated = ? WHERE id = ?",
                          "reaping instance", err, t, gone[i].id, NULL);
        } else {
            struct koala_error *why = NULL;
            error_set(&why, EIO, "InternalError",
                      "the cluster no longer knows this instance");
            log_warn("%s: lost by cluster %s", gone[i].id, cluster);
            clc_fail_instances(db, NULL, gone[i].id, why);
            error_free(why);
        }
    }
    free(gone);
    return rc;
}

int clc_apply_instance_states(struct clc *clc, struct db *db,
                              const char *cluster,
                              const struct xml_node *parent, bool complete,
                              struct koala_error **err)
{
    if (db_begin(db, err) < 0)
        return -1;
    int rc = 0;
    for (const struct xml_node *n = xml_next_child(parent, NULL, "instance");
         n && rc == 0; n = xml_next_child(parent, n, "instance"))
        rc = apply_one(db, cluster, n, err);
    if (rc == 0 && complete)
        rc = reap_missing(clc, db, cluster, parent, err);
    if (rc < 0) {
        db_rollback(db);
        return -1;
    }
    return db_commit(db, err);
}

/* ---- orders ---- */

struct order {
    char cluster[64];
    const char *op;
    struct buf ids; /* "i-a\ni-b\n" */
};

static void send_order(struct clc *clc, struct db *db, struct order *o)
{
    struct koala_error *err = NULL;
    struct soap_client *c = clc_cc_client(clc, db, o->cluster, &err);
    struct xml_writer *w = soap_start(o->op, CC_NS);
    for (char *id = o->ids.data, *save = NULL;
         (id = strtok_r(id, "\n", &save)) != NULL; id = NULL)
        xml_text_element(w, "instanceId", id);
    size_t len;
    char *rq = soap_finish(w, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body;
    if (c && soap_call(c, o->op, rq, len, &doc, &body, &err) == 0)
        clc_apply_instance_states(clc, db, o->cluster, body, false, &err);
    else if (c == NULL)
        free(rq);
    if (err) {
        log_warn("%s to cluster %s: %s", o->op, o->cluster, error_message(err));
        error_free(err);
    }
    xml_doc_free(doc);
    soap_client_free(c);
}

void clc_resend_orders(struct clc *clc, struct db *db)
{
    static const char sql[] =
        "SELECT cluster, id, CASE"
        " WHEN desired = 'terminated' THEN 'TerminateInstances'"
        " WHEN desired = 'stopped' THEN 'StopInstances'"
        " ELSE 'StartInstances' END FROM instances WHERE node != '' AND"
        " reported != 'terminated' AND"
        " (state != 'terminated' OR desired = 'terminated') AND ("
        "  desired = 'terminated' OR"
        "  (desired = 'stopped' AND reported IN ('running', 'pending')) OR"
        "  (desired = 'running' AND reported = 'stopped'))"
        " ORDER BY cluster, 3";
    struct koala_error *err = NULL;
    sqlite3_stmt *st = db_stmt(db, sql, &err);
    if (st == NULL) {
        log_error("orders: %s", error_message(err));
        error_free(err);
        return;
    }
    struct order *orders = NULL;
    size_t n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *cluster = (const char *)sqlite3_column_text(st, 0);
        const char *op = (const char *)sqlite3_column_text(st, 2);
        const char *name =
            strcmp(op, "TerminateInstances") == 0 ? "TerminateInstances"
            : strcmp(op, "StopInstances") == 0    ? "StopInstances"
                                                  : "StartInstances";
        if (n == 0 || strcmp(orders[n - 1].cluster, cluster) != 0 ||
            strcmp(orders[n - 1].op, name) != 0) {
            struct order *no = realloc(orders, (n + 1) * sizeof(*no));
            if (no == NULL)
                break;
            orders = no;
            memset(&orders[n], 0, sizeof(orders[n]));
            snprintf(orders[n].cluster, sizeof(orders[n].cluster), "%s",
                     cluster);
            orders[n++].op = name;
        }
        buf_printf(&orders[n - 1].ids, "%s\n", sqlite3_column_text(st, 1));
    }
    db_stmt_done(st);
    /* Sent after the statement is done: applying the answers writes. */
    for (size_t i = 0; i < n; i++) {
        send_order(clc, db, &orders[i]);
        buf_free(&orders[i].ids);
    }
    free(orders);
}

/* ---- the poller ---- */

struct poll_ctx {
    struct clc *clc;
    struct db *db;
};

/* One cluster: its state, its node list, and its instances. */
static int poll_cluster(void *ctx, const struct service *s)
{
    struct poll_ctx *p = ctx;
    struct koala_error *err = NULL;
    struct soap_client *c = clc_cc_client(p->clc, p->db, s->name, &err);
    struct xml_doc *doc = NULL;
    const struct xml_node *body;
    const char *state = "BROKEN";
    if (c) {
        /* The nodes registered in this cluster: the CLC's registry is
         * the truth, once it has any (a CC may start with nodes of its
         * own configuration). */
        struct buf nodes = {0};
        size_t n_nodes = 0;
        sqlite3_stmt *st =
            db_stmt(p->db,
                    "SELECT name, endpoint FROM services WHERE kind = 'node'"
                    " AND partition = ? ORDER BY name",
                    &err);
        if (st) {
            sqlite3_bind_text(st, 1, s->name, -1, SQLITE_STATIC);
            while (sqlite3_step(st) == SQLITE_ROW) {
                buf_printf(&nodes, "%s\t%s\n", sqlite3_column_text(st, 0),
                           sqlite3_column_text(st, 1));
                n_nodes++;
            }
            db_stmt_done(st);
        }
        struct xml_writer *w = soap_start("ConfigureNodes", CC_NS);
        if (n_nodes)
            xml_text_element(w, "replace", "true");
        /* (no rows: no buffer, and strtok_r must not see a NULL start) */
        for (char *line = nodes.data, *save = NULL;
             nodes.data && (line = strtok_r(line, "\n", &save)) != NULL;
             line = NULL) {
            char *tab = strchr(line, '\t');
            if (tab == NULL)
                continue;
            *tab = '\0';
            xml_start(w, "node");
            xml_text_element(w, "name", line);
            xml_text_element(w, "endpoint", tab + 1);
            xml_end(w);
        }
        buf_free(&nodes);
        size_t len;
        char *rq = soap_finish(w, &len);
        if (soap_call(c, "ConfigureNodes", rq, len, &doc, &body, &err) == 0) {
            /* Its nodes' states, as the CC sees them. */
            for (const struct xml_node *n = xml_next_child(body, NULL, "node");
                 n; n = xml_next_child(body, n, "node")) {
                _cleanup_free_ char *name = xml_child_text(n, "name");
                _cleanup_free_ char *ns = xml_child_text(n, "state");
                if (name && ns)
                    clc_service_set_state(p->db, "node", str_trim(name),
                                          str_trim(ns), "", NULL);
            }
            xml_doc_free(doc);
            doc = NULL;
            w = soap_start("DescribeInstances", CC_NS);
            rq = soap_finish(w, &len);
            if (soap_call(c, "DescribeInstances", rq, len, &doc, &body, &err) ==
                    0 &&
                clc_apply_instance_states(p->clc, p->db, s->name, body, true,
                                          &err) == 0) {
                state = "ENABLED";
                clc_eip_poll(p->clc, p->db, s->name, c);
            }
        }
    }
    clc_service_set_state(p->db, "cluster", s->name, state,
                          err ? error_message(err) : "", NULL);
    if (err && strcmp(s->state, state) != 0)
        log_warn("cluster %s: %s", s->name, error_message(err));
    error_free(err);
    xml_doc_free(doc);
    soap_client_free(c);
    return 0;
}

/* Walrus: up if it answers HTTP at all. */
static int poll_walrus(void *ctx, const struct service *s)
{
    struct poll_ctx *p = ctx;
    struct http_client_request rq = {
        .method = "HEAD",
        .url = s->endpoint,
        .sink = {.kind = HTTP_CLIENT_SINK_DISCARD},
        .tls = &p->clc->tls,
        .timeout_ms = 5000,
    };
    struct http_client_response resp = {0};
    struct koala_error *err = NULL;
    int rc = http_client_do(NULL, &rq, &resp, &err);
    clc_service_set_state(p->db, "walrus", s->name,
                          rc == 0 ? "ENABLED" : "BROKEN",
                          rc == 0 ? "" : error_message(err), NULL);
    error_free(err);
    http_client_response_free(&resp);
    return 0;
}

/* A storage controller: up if it answers DescribeResources. */
static int poll_sc(void *ctx, const struct service *s)
{
    struct poll_ctx *p = ctx;
    struct koala_error *err = NULL;
    struct soap_client *c = clc_sc_client(p->clc, p->db, s->partition, &err);
    int rc = -1;
    if (c) {
        struct xml_writer *w = soap_start("DescribeResources", "urn:koala:sc");
        size_t len;
        char *rq = soap_finish(w, &len);
        _cleanup_xml_doc_ struct xml_doc *doc = NULL;
        const struct xml_node *body;
        rc = soap_call(c, "DescribeResources", rq, len, &doc, &body, &err);
        soap_client_free(c);
    }
    const char *state = rc == 0 ? "ENABLED" : "BROKEN";
    if (err && strcmp(s->state, state) != 0)
        log_warn("storage controller %s: %s", s->name, error_message(err));
    clc_service_set_state(p->db, "sc", s->name, state,
                          rc == 0 ? "" : error_message(err), NULL);
    error_free(err);
    return 0;
}

/* Instances pending too long never started: EC2 would not leave them. */
static void expire_pending(struct clc *clc, struct db *db)
{
    char before[24], now[24];
    int64_t t = time_now_ms();
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)t);
    snprintf(before, sizeof(before), CLC_INT "%lld",
             (long long)(t - (int64_t)clc->opt.pending_timeout_s * 1000));
    char msg[128];
    snprintf(msg, sizeof(msg), "the instance did not start within %u seconds",
             clc->opt.pending_timeout_s);
    struct koala_error *err = NULL;
    if (clc_exec(db,
                 "UPDATE instances SET state = 'terminated', desired ="
                 " 'terminated', reason_code = 'Server.InternalError',"
                 " reason_message = ?, transition_reason = 'Server error',"
                 " updated = ? WHERE state = 'pending' AND updated < ?",
                 "expiring pending instances", &err, msg, now, before,
                 NULL) < 0) {
        log_error("%s", error_message(err));
        error_free(err);
    }
}

static void poll_once(struct clc *clc)
{
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(clc->db, &err);
    if (db == NULL) {
        log_error("poller: %s", error_message(err));
        error_free(err);
        return;
    }
    struct poll_ctx p = {clc, db};
    clc_services_each(db, "cluster", poll_cluster, &p, &err);
    clc_services_each(db, "walrus", poll_walrus, &p, &err);
    clc_services_each(db, "sc", poll_sc, &p, &err);
    expire_pending(clc, db);
    clc_resume_launches(clc, db);
    clc_resend_orders(clc, db);
    clc_md_push(clc, db);
    clc_tunnels_push(clc, db);
    clc_netpolicy_push(clc, db); /* secgroups.h */
    clc_eip_push(clc, db);
    clc_kicker_poll(&clc->ebs, clc, db);
    if (err) {
        log_error("poller: %s", error_message(err));
        error_free(err);
    }
    db_pool_put(clc->db, db);
}

static void *poller_main(void *arg)
{
    struct clc *clc = arg;
    pthread_mutex_lock(&clc->poll_mu);
    while (!clc->stopping) {
        pthread_mutex_unlock(&clc->poll_mu);
        poll_once(clc);
        pthread_mutex_lock(&clc->poll_mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec +
                     (int64_t)(clc->opt.poll_interval_ms % 1000) * 1000000;
        until.tv_sec += clc->opt.poll_interval_ms / 1000 + ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        if (!clc->stopping)
            pthread_cond_timedwait(&clc->poll_cv, &clc->poll_mu, &until);
    }
    pthread_mutex_unlock(&clc->poll_mu);
    return NULL;
}

int clc_poller_start(struct clc *clc, struct koala_error **err)
{
    pthread_mutex_init(&clc->poll_mu, NULL);
    pthread_cond_init(&clc->poll_cv, NULL);
    clc->poll_mu_ready = true;
    if (pthread_create(&clc->poller, NULL, poller_main, clc) != 0)
        return error_set(err, EAGAIN, NULL, "cannot start the poller");
    clc->poller_started = true;
    return 0;
}

void clc_poller_stop(struct clc *clc)
{
    if (!clc->poller_started)
        return;
    pthread_mutex_lock(&clc->poll_mu);
    clc->stopping = true;
    pthread_cond_broadcast(&clc->poll_cv);
    pthread_mutex_unlock(&clc->poll_mu);
    pthread_join(clc->poller, NULL);
    clc->poller_started = false;
}
