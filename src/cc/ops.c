/* ops.c: the CC's operations other than RunInstances (run.c): instance
 * actions passed on to the instances' NCs, DescribeInstances,
 * DescribeResources, GetConsoleOutput, ConfigureNodes, DescribeService,
 * and NotifyInstanceState from the NCs. */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "log.h"
#include "soap.h"

/* The instanceId children of the request (borrowed texts into ids). */
static int collect_ids(const struct xml_node *op, char ids[][32], size_t *n,
                       struct koala_error **err)
{
    *n = 0;
    for (const struct xml_node *i = xml_next_child(op, NULL, "instanceId"); i;
         i = xml_next_child(op, i, "instanceId")) {
        _cleanup_free_ char *t = xml_text(i);
        const char *id = t ? str_trim(t) : "";
        if (!cc_instance_id_valid(id))
            return error_set(err, EINVAL, "InvalidInstanceID.Malformed",
                             "Invalid id: \"%s\"", id);
        if (*n == CC_MAX_INSTANCES)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "at most %d instances per request",
                             CC_MAX_INSTANCES);
        snprintf(ids[(*n)++], 32, "%s", id);
    }
    return 0;
}

static void reply_instances(struct cc_req *r, const char *name,
                            const struct cc_instance *list, size_t n)
{
    struct xml_writer *w = soap_start(name, CC_NS);
    for (size_t i = 0; i < n; i++)
        cc_instance_write(w, "instance", &list[i]);
    cc_reply(r, w);
}

void cc_op_describe_instances(struct cc_req *r)
{
    struct koala_error *err = NULL;
    char(*idv)[32] = calloc(CC_MAX_INSTANCES, 32);
    const char *ptrs[CC_MAX_INSTANCES];
    size_t n_ids = 0, n = 0;
    struct cc_instance *list = NULL;
    struct db *db;
    if (idv == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto fail;
    }
    if (collect_ids(r->op, idv, &n_ids, &err) < 0 ||
        (db = cc_req_db(r, &err)) == NULL)
        goto fail;
    for (size_t i = 0; i < n_ids; i++)
        ptrs[i] = idv[i];
    if (store_instance_list(db, n_ids ? ptrs : NULL, n_ids, &list, &n, &err) <
        0)
        goto fail;
    reply_instances(r, "DescribeInstancesResponse", list, n);
    free(list);
    free(idv);
    return;
fail:
    free(idv);
    cc_fail(r, err);
}

/* ---- instance actions ---- */

struct action {
    struct cc *cc;
    const char *op;
    struct cc_instance *list;
    struct koala_error **errs;
    bool *dirty;
};

static void action_one(size_t i, void *ctx)
{
    struct action *a = ctx;
    struct cc *cc = a->cc;
    struct cc_instance *in = &a->list[i];
    bool terminate = strcmp(a->op, "ncTerminateInstance") == 0;
    struct koala_error *e = NULL;
    struct db *db = db_pool_get(cc->db, &e);
    if (db == NULL)
        goto out;
    if (strcmp(in->state, "terminated") == 0) {
        if (!terminate)
            error_set(&e, EINVAL, "IncorrectInstanceState",
                      "The instance '%s' is terminated", in->id);
        goto out;
    }
    if (terminate && !in->terminate_requested) {
        /* Recorded first: if the node cannot be reached now, the poller
         * asks it again when it answers. */
        in->terminate_requested = true;
        if (store_instance_update(db, in, &e) < 0)
            goto out;
    }
    char endpoint[256];
    struct nc_report rep = {0};
    snprintf(rep.id, sizeof(rep.id), "%s", in->id);
    if (!nodes_endpoint(cc, in->node, endpoint)) {
        if (!terminate) {
            error_set(&e, ENOENT, "ServiceUnavailable",
                      "node %s of instance %s is no longer configured",
                      in->node, in->id);
            goto out;
        }
        /* Its node is gone: nothing is left to stop. */
        snprintf(rep.state, sizeof(rep.state), "terminated");
    } else if (nc_instance_op(cc, endpoint, a->op, in->id, &rep, &e) < 0) {
        if (!terminate)
            goto out;
        if (strcmp(error_code(e), "InvalidInstanceID.NotFound") == 0) {
            /* The node does not have it (any more): nothing to stop. */
            error_clear(&e);
            memset(&rep, 0, sizeof(rep));
            snprintf(rep.id, sizeof(rep.id), "%s", in->id);
            snprintf(rep.state, sizeof(rep.state), "terminated");
            goto apply;
        }
        log_warn("%s %s on %s: %s (will retry)", a->op, in->id, in->node,
                 error_message(e));
        error_clear(&e);
        snprintf(rep.state, sizeof(rep.state), "shutting-down");
    }
apply:
    cc_apply_report(cc, db, in->node, &rep, false, &a->dirty[i], &e);
out:
    if (e)
        log_info("%s %s: %s", a->op, in->id, error_message(e));
    a->errs[i] = e;
    if (db)
        db_pool_put(cc->db, db);
}

void cc_op_instances_action(struct cc_req *r, const char *op)
{
    struct cc *cc = r->cc;
    struct koala_error *err = NULL;
    char(*ids)[32] = calloc(CC_MAX_INSTANCES, 32);
    const char *ptrs[CC_MAX_INSTANCES];
    size_t n_ids = 0, n = 0;
    struct cc_instance *list = NULL;
    struct koala_error **errs = NULL;
    bool *dirty = NULL;
    struct db *db;
    if (ids == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    if (collect_ids(r->op, ids, &n_ids, &err) < 0 ||
        (db = cc_req_db(r, &err)) == NULL)
        goto out;
    if (n_ids == 0) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must contain the parameter instanceId");
        goto out;
    }
    for (size_t i = 0; i < n_ids; i++)
        ptrs[i] = ids[i];
    if (store_instance_list(db, ptrs, n_ids, &list, &n, &err) < 0)
        goto out;
    if (n != n_ids) {
        for (size_t i = 0; i < n_ids; i++) {
            size_t j = 0;
            while (j < n && strcmp(list[j].id, ids[i]) != 0)
                j++;
            if (j == n) {
                error_set(&err, ENOENT, "InvalidInstanceID.NotFound",
                          "The instance ID '%s' does not exist", ids[i]);
                goto out;
            }
        }
    }
    errs = calloc(n, sizeof(*errs));
    dirty = calloc(n, sizeof(*dirty));
    if (errs == NULL || dirty == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    struct action a = {cc, op, list, errs, dirty};
    cc_parallel(cc, cc->pool, n, action_one, &a);
    bool any_dirty = false;
    for (size_t i = 0; i < n; i++) {
        any_dirty |= dirty[i];
        if (errs[i] && err == NULL) {
            err = errs[i]; /* the first failure is the answer */
            errs[i] = NULL;
        }
        error_free(errs[i]);
    }
    if (any_dirty) {
        struct koala_error *e = NULL;
        if (cc_dhcp_sync(cc, db, &e) < 0)
            log_error("DHCP hosts: %s", error_message(e));
        error_free(e);
    }
    if (err == NULL) {
        free(list);
        list = NULL;
        if (store_instance_list(db, ptrs, n_ids, &list, &n, &err) == 0) {
            char name[64];
            snprintf(name, sizeof(name), "%sResponse", xml_name(r->op));
            reply_instances(r, name, list, n);
        }
    }
out:
    if (err)
        cc_fail(r, err);
    free(ids);
    free(list);
    free(errs);
    free(dirty);
}

/* ---- resources ---- */

static void write_node(struct xml_writer *w, const struct cc_node *nd,
                       const struct sched_node *v)
{
    char t[25];
    xml_start(w, "node");
    xml_text_element(w, "name", nd->name);
    xml_text_element(w, "endpoint", nd->endpoint);
    xml_text_element(w, "state", cc_node_state_name(nd->state));
    xml_text_element(w, "hypervisor", nd->hypervisor);
    if (v) {
        xml_u64_element(w, "coresMax", (uint64_t)nd->max.cores);
        xml_u64_element(w, "coresAvailable",
                        (uint64_t)(v->free.cores > 0 ? v->free.cores : 0));
        xml_u64_element(w, "memoryMbMax", (uint64_t)nd->max.memory_mb);
        xml_u64_element(
            w, "memoryMbAvailable",
            (uint64_t)(v->free.memory_mb > 0 ? v->free.memory_mb : 0));
        xml_u64_element(w, "diskGbMax", (uint64_t)nd->max.disk_gb);
        xml_u64_element(w, "diskGbAvailable",
                        (uint64_t)(v->free.disk_gb > 0 ? v->free.disk_gb : 0));
        xml_u64_element(w, "instanceCount", (uint64_t)nd->instance_count);
        if (nd->last_seen_ms > 0) {
            time_format_iso8601((time_t)(nd->last_seen_ms / 1000), t);
            xml_text_element(w, "lastSeen", t);
        }
    }
    xml_end(w);
}

void cc_op_describe_resources(struct cc_req *r)
{
    struct cc *cc = r->cc;
    struct koala_error *err = NULL;
    struct cc_itype types[64];
    size_t n_types = 0;
    for (const struct xml_node *t = xml_next_child(r->op, NULL, "instanceType");
         t; t = xml_next_child(r->op, t, "instanceType")) {
        if (n_types == ARRAY_SIZE(types)) {
            error_set(&err, EINVAL, "InvalidParameterValue",
                      "at most %zu instance types", ARRAY_SIZE(types));
            return cc_fail(r, err);
        }
        if (cc_parse_itype(t, &types[n_types++], &err) < 0)
            return cc_fail(r, err);
    }
    struct cc_node *nodes = malloc(CC_MAX_NODES * sizeof(*nodes));
    struct sched_node *view = malloc(CC_MAX_NODES * sizeof(*view));
    struct db *db = cc_req_db(r, &err);
    size_t n = SIZE_MAX;
    if (nodes == NULL || view == NULL)
        error_set(&err, ENOMEM, NULL, "out of memory");
    else if (db)
        n = cc_sched_view(cc, db, nodes, view, &err);
    if (n == SIZE_MAX) {
        free(nodes);
        free(view);
        return cc_fail(r, err);
    }
    struct xml_writer *w = soap_start("DescribeResourcesResponse", CC_NS);
    for (size_t i = 0; i < n_types; i++) {
        int64_t max, avail;
        sched_capacity(view, n, &types[i], &max, &avail);
        xml_start(w, "resource");
        xml_text_element(w, "instanceType", types[i].name);
        xml_u64_element(w, "max", (uint64_t)max);
        xml_u64_element(w, "available", (uint64_t)(avail > 0 ? avail : 0));
        xml_end(w);
    }
    for (size_t i = 0; i < n; i++)
        write_node(w, &nodes[i], &view[i]);
    cc_reply(r, w);
    free(nodes);
    free(view);
}

/* ---- console ---- */

void cc_op_get_console_output(struct cc_req *r)
{
    struct cc *cc = r->cc;
    struct koala_error *err = NULL;
    _cleanup_free_ char *id = soap_text(r->op, "instanceId", &err);
    struct db *db = id ? cc_req_db(r, &err) : NULL;
    if (db == NULL)
        return cc_fail(r, err);
    str_trim(id);
    struct cc_instance in;
    int found =
        cc_instance_id_valid(id) ? store_instance_get(db, id, &in, &err) : 2;
    if (found == 2)
        error_set(&err, EINVAL, "InvalidInstanceID.Malformed",
                  "Invalid id: \"%s\"", id);
    else if (found == 1)
        error_set(&err, ENOENT, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", id);
    if (found != 0)
        return cc_fail(r, err);
    char endpoint[256];
    if (!nodes_endpoint(cc, in.node, endpoint)) {
        error_set(&err, ENOENT, "ServiceUnavailable",
                  "node %s is no longer configured", in.node);
        return cc_fail(r, err);
    }
    struct xml_writer *w = soap_start("ncGetConsoleOutput", NC_NS);
    xml_text_element(w, "instanceId", id);
    size_t len;
    char *req = soap_finish(w, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    if (nc_call(cc, endpoint, "ncGetConsoleOutput", req, len,
                (unsigned)cc->opt.nc_timeout_ms, &doc, &body, &err) < 0)
        return cc_fail(r, err);
    _cleanup_free_ char *output = xml_child_text(body, "output");
    _cleanup_free_ char *ts = xml_child_text(body, "timestamp");
    char now[25];
    if (ts == NULL)
        time_format_iso8601(time(NULL), now);
    xml_doc_free(doc);
    w = soap_start("GetConsoleOutputResponse", CC_NS);
    xml_text_element(w, "instanceId", id);
    xml_text_element(w, "output", output ? str_trim(output) : "");
    xml_text_element(w, "timestamp", ts ? str_trim(ts) : now);
    cc_reply(r, w);
}

/* ---- nodes ---- */

void cc_op_configure_nodes(struct cc_req *r)
{
    struct cc *cc = r->cc;
    struct koala_error *err = NULL;
    struct db *db = cc_req_db(r, &err);
    if (db == NULL)
        return cc_fail(r, err);
    _cleanup_free_ char *replace_s = xml_child_text(r->op, "replace");
    bool replace = replace_s && (strcmp(str_trim(replace_s), "true") == 0 ||
                                 strcmp(replace_s, "1") == 0);
    static const size_t max = CC_MAX_NODES;
    char(*names)[64] = calloc(max, 64);
    char(*urls)[256] = calloc(max, 256);
    size_t n = 0;
    if (names == NULL || urls == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    /* All checked before anything changes. */
    for (const struct xml_node *x = xml_next_child(r->op, NULL, "node"); x;
         x = xml_next_child(r->op, x, "node")) {
        _cleanup_free_ char *name = soap_text(x, "name", &err);
        _cleanup_free_ char *url = name ? soap_text(x, "endpoint", &err) : NULL;
        if (url == NULL)
            goto out;
        if (n == max) {
            error_set(&err, EINVAL, "InvalidParameterValue",
                      "at most %zu nodes", max);
            goto out;
        }
        const char *nm = str_trim(name), *u = str_trim(url);
        if (!node_name_valid(nm) || strlen(u) >= 256 ||
            !(str_has_prefix(u, "https://") || str_has_prefix(u, "http://"))) {
            error_set(&err, EINVAL, "InvalidParameterValue",
                      "node '%s' at '%s': a name of letters, digits, '.-_' "
                      "and an https:// endpoint are needed",
                      nm, u);
            goto out;
        }
        snprintf(names[n], 64, "%s", nm);
        snprintf(urls[n], 256, "%s", u);
        n++;
    }
    for (size_t i = 0; i < n; i++)
        if (nodes_put(cc, db, names[i], urls[i], &err) < 0)
            goto out;
    if (replace) {
        struct cc_node *all = malloc(CC_MAX_NODES * sizeof(*all));
        size_t count = all ? nodes_snapshot(cc, all) : 0;
        for (size_t i = 0; i < count && err == NULL; i++) {
            size_t j = 0;
            while (j < n && strcmp(names[j], all[i].name) != 0)
                j++;
            if (j == n)
                nodes_remove(cc, db, all[i].name, &err);
        }
        free(all);
        if (err)
            goto out;
    }
    nodes_poll_soon(cc);
    struct cc_node *all = malloc(CC_MAX_NODES * sizeof(*all));
    if (all == NULL) {
        error_set(&err, ENOMEM, NULL, "out of memory");
        goto out;
    }
    size_t count = nodes_snapshot(cc, all);
    struct xml_writer *w = soap_start("ConfigureNodesResponse", CC_NS);
    for (size_t i = 0; i < count; i++)
        write_node(w, &all[i], NULL);
    cc_reply(r, w);
    free(all);
out:
    free(names);
    free(urls);
    if (err)
        cc_fail(r, err);
}

/* ---- from the NCs ---- */

void cc_op_notify_instance_state(struct cc_req *r)
{
    struct cc *cc = r->cc;
    struct koala_error *err = NULL;
    _cleanup_free_ char *node = soap_text(r->op, "node", &err);
    struct db *db = node ? cc_req_db(r, &err) : NULL;
    if (db == NULL)
        return cc_fail(r, err);
    str_trim(node);
    char endpoint[256];
    if (!nodes_endpoint(cc, node, endpoint)) {
        error_set(&err, ENOENT, "InvalidParameterValue",
                  "node '%s' is not a node of cluster %s", node, cc->opt.name);
        return cc_fail(r, err);
    }
    /* A node's certificate (koala-node-NAME, koala-nc-NAME) speaks only
     * for that node. */
    const char *peer = http_request_peer_name(r->http);
    const char *claimed = NULL;
    if (peer && str_has_prefix(peer, "koala-node-"))
        claimed = peer + strlen("koala-node-");
    else if (peer && str_has_prefix(peer, "koala-nc-"))
        claimed = peer + strlen("koala-nc-");
    if (claimed && strcmp(claimed, node) != 0) {
        error_set(&err, EPERM, "UnauthorizedOperation",
                  "%s may not report the instances of node %s", peer, node);
        return cc_fail(r, err);
    }
    bool dirty = false;
    for (const struct xml_node *x = xml_next_child(r->op, NULL, "instance"); x;
         x = xml_next_child(r->op, x, "instance")) {
        struct nc_report rep;
        if (nc_report_parse(x, &rep, &err) < 0 ||
            cc_apply_report(cc, db, node, &rep, false, &dirty, &err) < 0)
            return cc_fail(r, err);
    }
    if (dirty && cc_dhcp_sync(cc, db, &err) < 0) {
        log_error("DHCP hosts: %s", error_message(err));
        error_clear(&err);
    }
    struct xml_writer *w = soap_start("NotifyInstanceStateResponse", CC_NS);
    cc_reply(r, w);
}

void cc_op_describe_service(struct cc_req *r)
{
    struct cc *cc = r->cc;
    struct cc_node *all = malloc(CC_MAX_NODES * sizeof(*all));
    size_t n = all ? nodes_snapshot(cc, all) : 0, enabled = 0;
    for (size_t i = 0; i < n; i++)
        enabled += all[i].state == CC_NODE_ENABLED;
    free(all);
    const char *state = "ENABLED";
    char msg[200];
    snprintf(msg, sizeof(msg), "%zu of %zu nodes enabled", enabled, n);
    if (cc->net.dhcp && dhcp_pid(cc->net.dhcp) <= 0) {
        state = "BROKEN";
        snprintf(msg, sizeof(msg), "the DHCP server (dnsmasq) is not running");
    } else if (enabled == 0) {
        state = "NOTREADY";
    }
    struct xml_writer *w = soap_start("DescribeServiceResponse", CC_NS);
    xml_text_element(w, "name", cc->opt.name);
    xml_text_element(w, "state", state);
    xml_text_element(w, "message", msg);
    cc_reply(r, w);
}
