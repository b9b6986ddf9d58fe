/* netpolicy_push.c: the network policy document of each cluster
 * (docs/network.md, "The policy document") and its push to the clusters'
 * CCs (SetNetworkPolicy, docs/wsdl/cc.wsdl).
 *
 * DESIGN: one cloud-wide counter, netpolicy.version, bumped by the
 * triggers of schema_v7 in the very transaction of every change that can
 * alter some cluster's document (a rule added, changed or removed, a group
 * deleted, an instance's groups changed, an instance's private address,
 * cluster or end recorded), and per cluster the last version its CC
 * acknowledged (netpolicy_clusters.applied).  A push (the poller's every
 * round, and clc_netpolicy_kick after an API change) computes the document
 * of each cluster behind from one read snapshot, whose version is the
 * counter read in that snapshot, sends it whole, and records the version
 * the CC answers.  A CC that is down, or without the operation yet (a
 * fault), stays behind and is sent the then current document next round:
 * the counters are the queue, so a restart of the CLC loses nothing, and
 * the last document wins.  One push per cluster at a time (a claim in
 * clc->md_pushing), so an older document never overtakes a newer one.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "secgroups.h"
#include "soap.h"

/* Failures expected while a CC lacks the operation are logged this often. */
#define QUIET_LOG_MS (60 * 1000)

static int64_t read_version(struct db *db, struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT version FROM netpolicy WHERE id = 1", err);
    if (st == NULL)
        return -1;
    int rc = db_step_row(db, st, "reading network policy version", err);
    int64_t v = rc == 0 ? sqlite3_column_int64(st, 0) : -1;
    db_stmt_done(st);
    if (rc == 1)
        error_set(err, ENOENT, NULL, "no network policy version");
    return v;
}

static json_t *rule_json(sqlite3_stmt *st)
{
    const char *proto = (const char *)sqlite3_column_text(st, 1);
    json_t *r = json_object();
    if (strcmp(proto, "-1") == 0)
        json_object_set_new(r, "proto", json_string("all"));
    else if (strcmp(proto, "tcp") == 0 || strcmp(proto, "udp") == 0 ||
             strcmp(proto, "icmp") == 0) {
        json_object_set_new(r, "proto", json_string(proto));
        json_object_set_new(r, "from", json_integer(sqlite3_column_int(st, 2)));
        json_object_set_new(r, "to", json_integer(sqlite3_column_int(st, 3)));
    } else
        json_object_set_new(r, "proto", json_integer(atoi(proto)));
    const char *cidr = (const char *)sqlite3_column_text(st, 4);
    const char *ref = (const char *)sqlite3_column_text(st, 5);
    if (cidr)
        json_object_set_new(r, "cidr", json_string(cidr));
    else if (ref)
        json_object_set_new(r, "group", json_string(ref));
    return r;
}

/* The rules of the groups in `groups` (keys), and the groups they name
 * into `named` (keys). */
static int add_rules(struct db *db, json_t *groups, json_t *named,
                     struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT egress, proto, from_port, to_port,"
                               " cidr, ref_group FROM sg_rules WHERE grp = ?"
                               " ORDER BY egress, proto, from_port, to_port,"
                               " cidr, ref_group",
                               err);
    if (st == NULL)
        return -1;
    const char *g;
    json_t *v;
    int rc = SQLITE_DONE;
    json_object_foreach(groups, g, v)
    {
        json_t *in = json_array(), *out = json_array();
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, g, -1, SQLITE_TRANSIENT);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            json_array_append_new(sqlite3_column_int(st, 0) ? out : in,
                                  rule_json(st));
            const char *ref = (const char *)sqlite3_column_text(st, 5);
            if (ref)
                json_object_set_new(named, ref, json_true());
        }
        json_object_set_new(v, "ingress", in);
        json_object_set_new(v, "egress", out);
        if (rc != SQLITE_DONE)
            break;
    }
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, "reading rules", err);
}

/* The members (private addresses of instances not terminated, of every
 * cluster) of each group of `named` into members. */
static int add_members(struct db *db, json_t *named, json_t *members,
                       struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT DISTINCT i.private_ip FROM"
                               " instance_groups ig JOIN instances i ON"
                               " i.id = ig.instance WHERE ig.grp = ? AND"
                               " i.state != 'terminated' AND"
                               " i.private_ip != '' ORDER BY i.private_ip",
                               err);
    if (st == NULL)
        return -1;
    const char *g;
    json_t *v;
    int rc = SQLITE_DONE;
    json_object_foreach(named, g, v)
    {
        json_t *ips = json_array();
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, g, -1, SQLITE_TRANSIENT);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            json_array_append_new(
                ips, json_string((const char *)sqlite3_column_text(st, 0)));
        json_object_set_new(members, g, ips);
        if (rc != SQLITE_DONE)
            break;
    }
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, "reading members", err);
}

/* The cluster's instances that are not terminated and their groups. */
static int add_instances(struct db *db, const char *cluster, json_t *instances,
                         json_t *groups, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT ig.instance, ig.grp FROM"
                               " instance_groups ig JOIN instances i ON"
                               " i.id = ig.instance WHERE i.cluster = ? AND"
                               " i.state != 'terminated'"
                               " ORDER BY ig.instance, ig.position",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, cluster, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *i = (const char *)sqlite3_column_text(st, 0);
        const char *g = (const char *)sqlite3_column_text(st, 1);
        json_t *list = json_object_get(instances, i);
        if (list == NULL) {
            list = json_array();
            json_object_set_new(instances, i, list);
        }
        json_array_append_new(list, json_string(g));
        if (json_object_get(groups, g) == NULL)
            json_object_set_new(groups, g, json_object());
    }
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, "reading instances", err);
}

json_t *clc_netpolicy_document(struct db *db, const char *cluster,
                               struct koala_error **err)
{
    if (db_begin_read(db, err) < 0)
        return NULL;
    json_t *doc = json_object(), *groups = json_object(),
           *members = json_object(), *instances = json_object(),
           *named = json_object();
    int64_t version = read_version(db, err);
    int rc = version < 0 ||
                     add_instances(db, cluster, instances, groups, err) < 0 ||
                     add_rules(db, groups, named, err) < 0
                 ? -1
                 : 0;
    if (rc == 0) {
        /* Members of the groups used here and of those their rules name. */
        json_object_update_missing(named, groups);
        rc = add_members(db, named, members, err);
    }
    db_rollback(db); /* only read */
    json_decref(named);
    json_object_set_new(doc, "version", json_integer(version));
    json_object_set_new(doc, "groups", groups);
    json_object_set_new(doc, "members", members);
    json_object_set_new(doc, "instances", instances);
    if (rc < 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* ---- the push ---- */

struct np_target {
    char cluster[64];
    int64_t applied, version;
};

static int list_behind(struct db *db, struct np_target **out, size_t *n,
                       struct koala_error **err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = db_stmt(
        db,
        "SELECT s.name, IFNULL(n.applied, 0), (SELECT version FROM netpolicy)"
        " FROM services s LEFT JOIN netpolicy_clusters n ON n.cluster ="
        " s.name WHERE s.kind = 'cluster' AND IFNULL(n.applied, 0) <"
        " (SELECT version FROM netpolicy) ORDER BY s.name",
        err);
    if (st == NULL)
        return -1;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 4;
            struct np_target *nt = realloc(*out, cap * sizeof(*nt));
            if (nt == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = nt;
        }
        struct np_target *t = &(*out)[(*n)++];
        clc_col(t->cluster, sizeof(t->cluster), st, 0);
        t->applied = sqlite3_column_int64(st, 1);
        t->version = sqlite3_column_int64(st, 2);
    }
    db_stmt_done(st);
    if (rc == SQLITE_DONE)
        return 0;
    free(*out);
    *out = NULL;
    *n = 0;
    return rc == SQLITE_NOMEM ? error_set(err, ENOMEM, NULL, "out of memory")
                              : db_error(db, "listing clusters", err);
}

/* One cluster's SetNetworkPolicy: 0 acknowledged and recorded, -1 not. */
static int push_one(struct clc *clc, struct db *db, const char *cluster,
                    struct koala_error **err)
{
    json_t *doc = clc_netpolicy_document(db, cluster, err);
    if (doc == NULL)
        return -1;
    long long version = json_integer_value(json_object_get(doc, "version"));
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    if (text == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    struct xml_writer *w = soap_start("SetNetworkPolicy", CC_NS);
    xml_text_elementf(w, "version", "%lld", version);
    xml_text_element(w, "policy", text);
    free(text);
    size_t len;
    char *rq = soap_finish(w, &len);
    struct soap_client *c = clc_cc_client(clc, db, cluster, err);
    if (c == NULL) {
        free(rq);
        return -1;
    }
    struct xml_doc *answer = NULL;
    const struct xml_node *body;
    long long acked = -1;
    int rc = soap_call(c, "SetNetworkPolicy", rq, len, &answer, &body, err);
    soap_client_free(c);
    if (rc == 0 && soap_int(body, "version", -1, &acked, err) == 0 && acked < 0)
        rc = error_set(err, EPROTO, "InternalError",
                       "SetNetworkPolicy answered no version");
    xml_doc_free(answer);
    if (rc < 0 || acked < 0)
        return -1;
    /* The CC holds what it answers; never more than was sent. */
    char v[24];
    snprintf(v, sizeof(v), CLC_INT "%lld", acked < version ? acked : version);
    if (clc_exec(db,
                 "INSERT INTO netpolicy_clusters(cluster, applied)"
                 " VALUES(?1, ?2) ON CONFLICT(cluster) DO UPDATE SET"
                 " applied = MAX(applied, excluded.applied)",
                 "recording network policy applied", err, cluster, v, NULL) < 0)
        return -1;
    log_debug("cluster %s: network policy version %lld applied", cluster,
              acked < version ? acked : version);
    return 0;
}

void clc_netpolicy_push(struct clc *clc, struct db *db)
{
    static int64_t last_quiet_log; /* of the expected failures */
    struct koala_error *err = NULL;
    struct np_target *t = NULL;
    size_t n = 0;
    if (list_behind(db, &t, &n, &err) < 0) {
        log_error("network policy push: %s", error_message(err));
        error_free(err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char claim[80];
        snprintf(claim, sizeof(claim), "netpolicy/%s", t[i].cluster);
        if (!claims_take(clc->md_pushing, claim))
            continue; /* under way: that push sends the latest */
        int rc = push_one(clc, db, t[i].cluster, &err);
        claims_drop(clc->md_pushing, claim);
        if (rc == 0)
            continue;
        /* Not acknowledged: sent again next round.  A CC that is down or
         * does not have the operation yet is expected: said once a minute
         * (a benign race on the stamp only says it twice). */
        int64_t now = time_now_ms();
        int64_t last = __atomic_load_n(&last_quiet_log, __ATOMIC_RELAXED);
        if (now - last >= QUIET_LOG_MS) {
            __atomic_store_n(&last_quiet_log, now, __ATOMIC_RELAXED);
            log_warn("cluster %s: network policy version %lld not applied "
                     "yet (applied %lld): %s: %s (retrying quietly)",
                     t[i].cluster, (long long)t[i].version,
                     (long long)t[i].applied, error_code(err),
                     error_message(err));
        } else {
            log_debug("cluster %s: network policy: %s: %s", t[i].cluster,
                      error_code(err), error_message(err));
        }
        error_free(err);
        err = NULL;
    }
    free(t);
}

struct np_job {
    struct clc *clc;
};

static void push_job(void *arg)
{
    struct np_job *job = arg;
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(job->clc->db, &err);
    if (db)
        clc_netpolicy_push(job->clc, db);
    else
        log_error("network policy push: %s", error_message(err));
    error_free(err);
    db_pool_put(job->clc->db, db);
    free(job);
}

void clc_netpolicy_kick(struct clc *clc)
{
    struct np_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return; /* the poller pushes it */
    job->clc = clc;
    if (workpool_submit(clc->launcher, push_job, job) < 0)
        free(job);
}
