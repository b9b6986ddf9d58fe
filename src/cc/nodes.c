/* nodes.c: the cluster's nodes: the table (in memory under cc->lock,
 * written through to the database), node configuration (static list,
 * ConfigureNodes), and the poller.
 *
 * DESIGN: every poll_interval the poller asks every node, in parallel,
 * for ncDescribeInstances and then ncDescribeResource.  An answer makes
 * the node ENABLED and refreshes its resources and its instances' states.
 * The scheduler counts this CC's own instances on a node exactly (from the
 * database, at once when they are placed), so it does not depend on when
 * the NC last reported; what the NC reports in use beyond the instances of
 * ours it listed is "foreign" use (instances this CC does not know), and is
 * subtracted only when two polls in a row saw it, so an instance started
 * between a poll's two calls is not counted twice.  A node
 * that failed fail_threshold polls in a row becomes BROKEN: the scheduler
 * skips it and its instances keep their last known state, until it
 * answers again.  Instances the node listed before and no longer lists are
 * gone (terminated); instances asked to terminate while the node could
 * not be reached are asked again; instances placed on it that it never
 * listed have their launch (stored with them) sent again.  Each round also
 * reaps terminated instances older than terminated_keep, watches dnsmasq and
 * rewrites the DHCP hosts when addresses were freed.
 */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cc.h"
#include "log.h"
#include "soap.h"

const char *cc_node_state_name(enum cc_node_state s)
{
    switch (s) {
    case CC_NODE_ENABLED:
        return "ENABLED";
    case CC_NODE_BROKEN:
        return "BROKEN";
    default:
        return "NOTREADY";
    }
}

bool node_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static bool endpoint_valid(const char *url)
{
    return strlen(url) < 256 &&
           (str_has_prefix(url, "https://") ||
            str_has_prefix(url, "http://")) &&
           strchr(url, ' ') == NULL;
}

/* Index of name, or where it would go (*found false); cc->lock held. */
static size_t find_locked(struct cc *cc, const char *name, bool *found)
{
    size_t i = 0;
    for (; i < cc->n_nodes; i++) {
        int c = strcmp(cc->nodes[i].name, name);
        if (c == 0) {
            *found = true;
            return i;
        }
        if (c > 0)
            break;
    }
    *found = false;
    return i;
}

int nodes_load(struct cc *cc, struct db *db, struct koala_error **err)
{
    struct cc_node *list = NULL;
    size_t n = 0;
    if (store_node_list(db, &list, &n, err) < 0)
        return -1;
    pthread_mutex_lock(&cc->lock);
    cc->n_nodes = n < CC_MAX_NODES ? n : CC_MAX_NODES;
    if (cc->n_nodes)
        memcpy(cc->nodes, list, cc->n_nodes * sizeof(*list));
    pthread_mutex_unlock(&cc->lock);
    free(list);
    return 0;
}

int nodes_put(struct cc *cc, struct db *db, const char *name,
              const char *endpoint, struct koala_error **err)
{
    if (!node_name_valid(name))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "node name '%s' is not valid", name);
    if (!endpoint_valid(endpoint))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "node %s: endpoint '%s' is not an https:// URL", name,
                         endpoint);
    struct cc_node copy;
    bool found;
    pthread_mutex_lock(&cc->lock);
    size_t i = find_locked(cc, name, &found);
    if (!found) {
        if (cc->n_nodes == CC_MAX_NODES) {
            pthread_mutex_unlock(&cc->lock);
            return error_set(err, ENOSPC, "InvalidParameterValue",
                             "at most %d nodes", CC_MAX_NODES);
        }
        memmove(&cc->nodes[i + 1], &cc->nodes[i],
                (cc->n_nodes - i) * sizeof(cc->nodes[0]));
        cc->n_nodes++;
        memset(&cc->nodes[i], 0, sizeof(cc->nodes[i]));
        snprintf(cc->nodes[i].name, sizeof(cc->nodes[i].name), "%s", name);
    }
    struct cc_node *nd = &cc->nodes[i];
    if (!found || strcmp(nd->endpoint, endpoint) != 0) {
        snprintf(nd->endpoint, sizeof(nd->endpoint), "%s", endpoint);
        nd->state = CC_NODE_NOTREADY;
        nd->fails = 0;
        nd->foreign = nd->foreign_last = (struct cc_res){0};
        log_info("node %s at %s %s", name, endpoint, found ? "moved" : "added");
    }
    copy = *nd;
    pthread_mutex_unlock(&cc->lock);
    return store_node_put(db, &copy, err);
}

int nodes_remove(struct cc *cc, struct db *db, const char *name,
                 struct koala_error **err)
{
    bool found;
    pthread_mutex_lock(&cc->lock);
    size_t i = find_locked(cc, name, &found);
    if (found) {
        memmove(&cc->nodes[i], &cc->nodes[i + 1],
                (cc->n_nodes - i - 1) * sizeof(cc->nodes[0]));
        cc->n_nodes--;
    }
    pthread_mutex_unlock(&cc->lock);
    if (found)
        log_info("node %s removed", name);
    return store_node_delete(db, name, err);
}

int nodes_configure_static(struct cc *cc, struct db *db, const char *spec,
                           struct koala_error **err)
{
    _cleanup_free_ char *copy = strdup(spec);
    if (copy == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        item = str_trim(item);
        if (*item == '\0')
            continue;
        char *eq = strchr(item, '=');
        if (eq == NULL)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "nodes: '%s' is not name=https://host:port/",
                             item);
        *eq = '\0';
        if (nodes_put(cc, db, str_trim(item), str_trim(eq + 1), err) < 0)
            return -1;
    }
    return 0;
}

size_t nodes_snapshot(struct cc *cc, struct cc_node *out)
{
    pthread_mutex_lock(&cc->lock);
    size_t n = cc->n_nodes;
    if (n)
        memcpy(out, cc->nodes, n * sizeof(*out));
    pthread_mutex_unlock(&cc->lock);
    return n;
}

bool nodes_endpoint(struct cc *cc, const char *name, char out[256])
{
    bool found;
    pthread_mutex_lock(&cc->lock);
    size_t i = find_locked(cc, name, &found);
    if (found)
        snprintf(out, 256, "%s", cc->nodes[i].endpoint);
    pthread_mutex_unlock(&cc->lock);
    return found;
}

/* ---- polling ---- */

struct poll_result {
    struct nc_report *reports;
    size_t n_reports;
    struct cc_res max, avail;
    int64_t count;
    char hypervisor[16];
    int64_t policy_version; /* the network policy it holds; -1: unsaid */
};

static int poll_describe_instances(struct cc *cc, const char *endpoint,
                                   struct poll_result *pr,
                                   struct koala_error **err)
{
    struct xml_writer *w = soap_start("ncDescribeInstances", NC_NS);
    size_t len;
    char *req = soap_finish(w, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    if (nc_call(cc, endpoint, "ncDescribeInstances", req, len,
                (unsigned)cc->opt.nc_timeout_ms, &doc, &body, err) < 0)
        return -1;
    size_t cap = 0;
    for (const struct xml_node *i = xml_next_child(body, NULL, "instance"); i;
         i = xml_next_child(body, i, "instance")) {
        if (pr->n_reports == cap) {
            cap = cap ? cap * 2 : 16;
            struct nc_report *g = realloc(pr->reports, cap * sizeof(*g));
            if (g == NULL) {
                xml_doc_free(doc);
                return error_set(err, ENOMEM, NULL, "out of memory");
            }
            pr->reports = g;
        }
        struct koala_error *e = NULL;
        if (nc_report_parse(i, &pr->reports[pr->n_reports], &e) < 0) {
            log_warn("%s: ncDescribeInstances: %s", endpoint, error_message(e));
            error_free(e);
            continue;
        }
        pr->n_reports++;
    }
    xml_doc_free(doc);
    return 0;
}

static int poll_describe_resource(struct cc *cc, const char *endpoint,
                                  struct poll_result *pr,
                                  struct koala_error **err)
{
    struct xml_writer *w = soap_start("ncDescribeResource", NC_NS);
    size_t len;
    char *req = soap_finish(w, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    if (nc_call(cc, endpoint, "ncDescribeResource", req, len,
                (unsigned)cc->opt.nc_timeout_ms, &doc, &body, err) < 0)
        return -1;
    long long v[7];
    static const char *const names[7] = {
        "coresMax",  "coresAvailable",  "memoryMbMax",  "memoryMbAvailable",
        "diskGbMax", "diskGbAvailable", "instanceCount"};
    int rc = 0;
    for (int i = 0; i < 7 && rc == 0; i++)
        rc = soap_int(body, names[i], 0, &v[i], err);
    if (rc == 0) {
        pr->max = (struct cc_res){v[0], v[2], v[4]};
        pr->avail = (struct cc_res){v[1], v[3], v[5]};
        pr->count = v[6];
        long long pv = -1;
        if (soap_int(body, "networkPolicyVersion", -1, &pv, NULL) == 0)
            pr->policy_version = pv;
        _cleanup_free_ char *hv = xml_child_text(body, "hypervisor");
        snprintf(pr->hypervisor, sizeof(pr->hypervisor), "%s",
                 hv ? str_trim(hv) : "");
    }
    xml_doc_free(doc);
    return rc;
}

/* Records a poll's outcome in the node table; returns the node's copy. */
static bool record_poll(struct cc *cc, const char *name, const char *endpoint,
                        const struct poll_result *pr,
                        const struct koala_error *e, struct cc_node *out)
{
    bool found;
    pthread_mutex_lock(&cc->lock);
    size_t i = find_locked(cc, name, &found);
    /* Removed or moved meanwhile: this poll is stale. */
    if (!found || strcmp(cc->nodes[i].endpoint, endpoint) != 0) {
        pthread_mutex_unlock(&cc->lock);
        return false;
    }
    struct cc_node *nd = &cc->nodes[i];
    enum cc_node_state was = nd->state;
    if (e == NULL) {
        nd->state = CC_NODE_ENABLED;
        nd->fails = 0;
        nd->last_seen_ms = time_now_ms();
        nd->max = pr->max;
        nd->avail = pr->avail;
        nd->instance_count = pr->count;
        snprintf(nd->hypervisor, sizeof(nd->hypervisor), "%s", pr->hypervisor);
        nd->last_error[0] = '\0';
        if (was != CC_NODE_ENABLED)
            log_info("node %s is %s", name,
                     was == CC_NODE_BROKEN ? "back" : "enabled");
    } else {
        nd->fails++;
        snprintf(nd->last_error, sizeof(nd->last_error), "%s",
                 error_message(e));
        if (nd->fails >= cc->opt.fail_threshold &&
            nd->state != CC_NODE_BROKEN) {
            nd->state = CC_NODE_BROKEN;
            log_warn("node %s failed %d polls in a row: BROKEN (%s)", name,
                     nd->fails, error_message(e));
        }
    }
    *out = *nd;
    pthread_mutex_unlock(&cc->lock);
    return true;
}

static bool listed(const struct poll_result *pr, const char *id,
                   const char **state)
{
    for (size_t i = 0; i < pr->n_reports; i++)
        if (strcmp(pr->reports[i].id, id) == 0) {
            *state = pr->reports[i].state;
            return true;
        }
    return false;
}

static int64_t clamp0(int64_t v)
{
    return v > 0 ? v : 0;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Use the node reports beyond our (live) instances it listed. */
static void update_foreign(struct cc *cc, const struct cc_node *polled,
                           const struct poll_result *pr,
                           const struct cc_instance *live, size_t n)
{
    struct cc_res ours = {0};
    for (size_t i = 0; i < n; i++) {
        const char *state = NULL;
        if (listed(pr, live[i].id, &state) &&
            strcmp(state, "terminated") != 0) {
            ours.cores += live[i].type.cores;
            ours.memory_mb += live[i].type.memory_mb;
            ours.disk_gb += live[i].type.disk_gb;
        }
    }
    struct cc_res f = {
        clamp0(pr->max.cores - pr->avail.cores - ours.cores),
        clamp0(pr->max.memory_mb - pr->avail.memory_mb - ours.memory_mb),
        clamp0(pr->max.disk_gb - pr->avail.disk_gb - ours.disk_gb)};
    bool found;
    pthread_mutex_lock(&cc->lock);
    size_t i = find_locked(cc, polled->name, &found);
    if (found && strcmp(cc->nodes[i].endpoint, polled->endpoint) == 0) {
        struct cc_node *nd = &cc->nodes[i];
        struct cc_res was = nd->foreign;
        nd->foreign =
            (struct cc_res){min64(f.cores, nd->foreign_last.cores),
                            min64(f.memory_mb, nd->foreign_last.memory_mb),
                            min64(f.disk_gb, nd->foreign_last.disk_gb)};
        nd->foreign_last = f;
        if (memcmp(&was, &nd->foreign, sizeof(was)) != 0)
            log_info("node %s: in use by others: %lld cores, %lld MB, "
                     "%lld GB",
                     nd->name, (long long)nd->foreign.cores,
                     (long long)nd->foreign.memory_mb,
                     (long long)nd->foreign.disk_gb);
    }
    pthread_mutex_unlock(&cc->lock);
}

/* The node's instances against its listing: vanished ones end, ones asked
 * to terminate are asked again; and its foreign use. */
static void reconcile(struct cc *cc, struct db *db, const struct cc_node *nd,
                      const struct poll_result *pr, bool *dirty)
{
    struct cc_instance *live = NULL;
    size_t n = 0;
    struct koala_error *e = NULL;
    if (store_instances_on_node(db, nd->name, &live, &n, &e) < 0) {
        log_error("node %s: %s", nd->name, error_message(e));
        error_free(e);
        return;
    }
    update_foreign(cc, nd, pr, live, n);
    for (size_t i = 0; i < n; i++) {
        struct cc_instance *in = &live[i];
        const char *state = NULL;
        bool on_node = listed(pr, in->id, &state);
        /* Gone from the node: listed before, or asked to go. */
        if (!on_node && (in->seen || in->terminate_requested)) {
            struct nc_report r = {0};
            snprintf(r.id, sizeof(r.id), "%s", in->id);
            snprintf(r.state, sizeof(r.state), "terminated");
            if (!in->terminate_requested) {
                snprintf(r.reason_code, sizeof(r.reason_code),
                         "Server.InternalError");
                snprintf(r.reason_message, sizeof(r.reason_message),
                         "the instance is gone from node %s", nd->name);
            }
            if (cc_apply_report(cc, db, nd->name, &r, false, dirty, &e) < 0)
                goto fail;
        } else if (!on_node && !in->seen && !in->terminate_requested &&
                   strcmp(in->state, "pending") == 0) {
            /* Placed, but its node never acknowledged it (this CC died,
             * or the call was lost, before the node had it): send it
             * again, unless that is under way. */
            size_t len = 0;
            char *req = store_launch_get(db, in->id, &len, &e);
            if (req == NULL && e)
                goto fail;
            if (req && cc_launch_send(cc, db, in, req, len, dirty))
                log_info("instance %s: node %s did not have it: its launch "
                         "was sent again",
                         in->id, nd->name);
        } else if (on_node && in->terminate_requested &&
                   strcmp(state, "shutting-down") != 0 &&
                   strcmp(state, "terminated") != 0) {
            struct nc_report r;
            if (nc_instance_op(cc, nd->endpoint, "ncTerminateInstance", in->id,
                               &r, &e) < 0 ||
                cc_apply_report(cc, db, nd->name, &r, false, dirty, &e) < 0)
                goto fail;
        }
        continue;
    fail:
        log_warn("node %s: instance %s: %s", nd->name, in->id,
                 error_message(e));
        error_clear(&e);
    }
    free(live);
}

struct poll_round {
    struct cc *cc;
    struct cc_node *nodes;
    bool *dirty;
};

static void poll_one(size_t idx, void *ctx)
{
    struct poll_round *round = ctx;
    struct cc *cc = round->cc;
    const struct cc_node *nd = &round->nodes[idx];
    struct poll_result pr = {.policy_version = -1};
    struct koala_error *e = NULL;
    if (poll_describe_instances(cc, nd->endpoint, &pr, &e) == 0)
        poll_describe_resource(cc, nd->endpoint, &pr, &e);
    if (e)
        log_debug("node %s: poll failed: %s", nd->name, error_message(e));
    struct cc_node now;
    bool current = record_poll(cc, nd->name, nd->endpoint, &pr, e, &now);
    struct koala_error *dbe = NULL;
    struct db *db = current ? db_pool_get(cc->db, &dbe) : NULL;
    if (db) {
        if (store_node_put(db, &now, &dbe) < 0)
            log_error("node %s: %s", nd->name, error_message(dbe));
        error_clear(&dbe);
        if (e == NULL) {
            for (size_t i = 0; i < pr.n_reports; i++)
                if (cc_apply_report(cc, db, nd->name, &pr.reports[i], true,
                                    &round->dirty[idx], &dbe) < 0) {
                    log_error("node %s: %s", nd->name, error_message(dbe));
                    error_clear(&dbe);
                }
            reconcile(cc, db, nd, &pr, &round->dirty[idx]);
        }
        if (e == NULL) /* behind the network policy: pushed (netpush.c) */
            netpush_node(cc, nd->name, nd->endpoint, pr.policy_version);
        db_pool_put(cc->db, db);
    } else if (dbe) {
        log_error("node %s: %s", nd->name, error_message(dbe));
    }
    error_free(dbe);
    error_free(e);
    free(pr.reports);
}

static void poll_round(struct cc *cc)
{
    struct cc_node *nodes = malloc(sizeof(struct cc_node) * CC_MAX_NODES);
    bool *dirty = calloc(CC_MAX_NODES, sizeof(bool));
    if (nodes == NULL || dirty == NULL) {
        free(nodes);
        free(dirty);
        return;
    }
    size_t n = nodes_snapshot(cc, nodes);
    struct poll_round round = {cc, nodes, dirty};
    cc_parallel(cc, cc->poll_pool, n, poll_one, &round);
    bool any_dirty = false;
    for (size_t i = 0; i < n; i++)
        any_dirty |= dirty[i];
    free(nodes);
    free(dirty);
    struct koala_error *e = NULL;
    struct db *db = db_pool_get(cc->db, &e);
    if (db) {
        int purged = 0;
        int64_t keep = cc->opt.terminated_keep_s * 1000;
        if (store_purge_terminated(db, time_now_ms() - keep, &purged, &e) < 0)
            log_error("%s", error_message(e));
        else if (purged)
            log_info("forgot %d terminated instances", purged);
        error_clear(&e);
        if (any_dirty && cc_dhcp_sync(cc, db, &e) < 0)
            log_error("DHCP hosts: %s", error_message(e));
        leases_notice(cc, db);
        eipnat_check(cc, db);
        db_pool_put(cc->db, db);
    }
    error_free(e);
    if (cc->net.dhcp)
        dhcp_check(cc->net.dhcp);
}

static void *poller_main(void *arg)
{
    struct cc *cc = arg;
    pthread_setname_np(pthread_self(), "ccpoller");
    pthread_mutex_lock(&cc->poll_mu);
    while (!cc->stopping) {
        cc->poll_now = false;
        pthread_mutex_unlock(&cc->poll_mu);
        poll_round(cc);
        pthread_mutex_lock(&cc->poll_mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns =
            until.tv_nsec + (cc->opt.poll_interval_ms % 1000) * 1000000;
        until.tv_sec += cc->opt.poll_interval_ms / 1000 + ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        while (!cc->stopping && !cc->poll_now &&
               pthread_cond_timedwait(&cc->poll_cv, &cc->poll_mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&cc->poll_mu);
    return NULL;
}

int nodes_poller_start(struct cc *cc, struct koala_error **err)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cc->poll_cv, &attr);
    pthread_condattr_destroy(&attr);
    int rc = pthread_create(&cc->poller, NULL, poller_main, cc);
    if (rc != 0) {
        errno = rc;
        return error_set_errno(err, "starting the poller");
    }
    cc->poller_started = true;
    return 0;
}

void nodes_poller_stop(struct cc *cc)
{
    if (!cc->poller_started)
        return;
    pthread_mutex_lock(&cc->poll_mu);
    cc->stopping = true;
    pthread_cond_broadcast(&cc->poll_cv);
    pthread_mutex_unlock(&cc->poll_mu);
    pthread_join(cc->poller, NULL);
    cc->poller_started = false;
    pthread_cond_destroy(&cc->poll_cv);
}

void nodes_poll_soon(struct cc *cc)
{
    pthread_mutex_lock(&cc->poll_mu);
    cc->poll_now = true;
    pthread_cond_signal(&cc->poll_cv);
    pthread_mutex_unlock(&cc->poll_mu);
}
