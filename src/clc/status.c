/* status.c: DescribeInstanceStatus, EC2's status checks (what `aws ec2
 * wait instance-status-ok` and system-status-ok poll).
 *
 * Both checks come from what the cloud really knows:
 * - system status, the host: the instance's node as its cluster last saw
 *   it (the services table, refreshed by the poller): ENABLED is ok,
 *   BROKEN impaired (since its last good answer), anything else, or a
 *   cluster that does not answer, insufficient-data.
 * - instance status, the guest: whether its operating system brought its
 *   network up since it started, which the cluster's DHCP server sees
 *   (reachability from the CC, src/cc/leases.c): passed is ok, not yet is
 *   initializing, unknown is insufficient-data.
 * Instances that do not run have not-applicable for both; they are listed
 * only with IncludeAllInstances, as on EC2. */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"

struct node_state {
    char kind[16]; /* node, cluster */
    char name[64];
    char state[16];
    int64_t last_seen_ms;
};

struct nodes {
    struct node_state *v;
    size_t n;
};

static int collect_node(void *ctx, const struct service *s)
{
    struct nodes *ns = ctx;
    struct node_state *more = realloc(ns->v, (ns->n + 1) * sizeof(*more));
    if (more == NULL)
        return -1;
    ns->v = more;
    struct node_state *x = &ns->v[ns->n++];
    snprintf(x->kind, sizeof(x->kind), "%s", s->kind);
    snprintf(x->name, sizeof(x->name), "%s", s->name);
    snprintf(x->state, sizeof(x->state), "%s", s->state);
    x->last_seen_ms = s->last_seen_ms;
    return 0;
}

/* One check's summary: status, and its reachability detail. */
struct check {
    const char *status;       /* ok, impaired, initializing ... */
    const char *reachability; /* passed, failed ...; NULL: no details */
    int64_t impaired_since;   /* ms; 0: none */
};

static const struct node_state *find(const struct nodes *ns, const char *kind,
                                     const char *name)
{
    for (size_t i = 0; i < ns->n; i++)
        if (strcmp(ns->v[i].kind, kind) == 0 &&
            strcmp(ns->v[i].name, name) == 0)
            return &ns->v[i];
    return NULL;
}

static struct check system_check(const struct instance_row *x,
                                 const struct nodes *ns)
{
    static const struct check unknown = {"insufficient-data",
                                         "insufficient-data", 0};
    if (strcmp(x->state, "running") != 0)
        return (struct check){"not-applicable", NULL, 0};
    /* What a cluster that does not answer says of its nodes is stale. */
    const struct node_state *c = find(ns, "cluster", x->cluster);
    const struct node_state *nd = find(ns, "node", x->node);
    if (c == NULL || strcmp(c->state, "ENABLED") != 0 || nd == NULL)
        return unknown;
    if (strcmp(nd->state, "ENABLED") == 0)
        return (struct check){"ok", "passed", 0};
    if (strcmp(nd->state, "BROKEN") == 0)
        return (struct check){"impaired", "failed", nd->last_seen_ms};
    return unknown;
}

static struct check instance_check(const struct instance_row *x)
{
    if (strcmp(x->state, "running") != 0)
        return (struct check){"not-applicable", NULL, 0};
    if (strcmp(x->reachability, "passed") == 0)
        return (struct check){"ok", "passed", 0};
    if (strcmp(x->reachability, "initializing") == 0)
        return (struct check){"initializing", "initializing", 0};
    return (struct check){"insufficient-data", "insufficient-data", 0};
}

static void write_check(struct xml_writer *w, const char *element,
                        const struct check *c)
{
    xml_start(w, element);
    xml_text_element(w, "status", c->status);
    if (c->reachability) {
        xml_start(w, "details");
        xml_start(w, "item");
        xml_text_element(w, "name", "reachability");
        xml_text_element(w, "status", c->reachability);
        if (c->impaired_since > 0) {
            char t[25];
            xml_text_element(w, "impairedSince",
                             ec2_time(c->impaired_since, t));
        }
        xml_end(w);
        xml_end(w);
    }
    xml_end(w);
}

static const char *status_filter_value(const struct instance_row *x,
                                       const struct check *sys,
                                       const struct check *inst, const char *f,
                                       char *tmp, size_t size)
{
    if (strcmp(f, "availability-zone") == 0)
        return x->cluster;
    if (strcmp(f, "instance-state-name") == 0)
        return x->state;
    if (strcmp(f, "instance-state-code") == 0) {
        snprintf(tmp, size, "%d", ec2_state_code(x->state));
        return tmp;
    }
    if (strcmp(f, "system-status.status") == 0)
        return sys->status;
    if (strcmp(f, "system-status.reachability") == 0)
        return sys->reachability ? sys->reachability : "";
    if (strcmp(f, "instance-status.status") == 0)
        return inst->status;
    if (strcmp(f, "instance-status.reachability") == 0)
        return inst->reachability ? inst->reachability : "";
    return NULL; /* event.*: there are no scheduled events */
}

static bool status_wanted(const struct ec2_filters *fs,
                          const struct instance_row *x, const struct check *sys,
                          const struct check *inst)
{
    for (size_t i = 0; i < fs->n; i++) {
        char tmp[16];
        const char *v =
            status_filter_value(x, sys, inst, fs->f[i].name, tmp, sizeof(tmp));
        if (v == NULL || !ec2_filter_match(&fs->f[i], v))
            return false;
    }
    return true;
}

void ec2_describe_instance_status(struct ec2_req *r)
{
    static const char *const known[] = {"availability-zone",
                                        "instance-state-name",
                                        "instance-state-code",
                                        "system-status.status",
                                        "system-status.reachability",
                                        "instance-status.status",
                                        "instance-status.reachability",
                                        "event.code",
                                        "event.description",
                                        "event.instance-event-id",
                                        "event.not-after",
                                        "event.not-before",
                                        NULL};
    struct koala_error *err = NULL;
    struct ec2_filters fs;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    struct ec2_id_list ids = {0};
    struct instance_row *rows = NULL;
    size_t n = 0;
    struct nodes ns = {0};
    struct xml_writer *w = NULL;
    long long max = 0;
    bool all = false;
    int64_t after_time;
    char after_id[32];
    if (ec2_instance_listing(r, &ids, &max, &err) < 0 ||
        ec2_param_bool(r, "IncludeAllInstances", false, &all, &err) < 0 ||
        ec2_instance_token_parse(ec2_param(r, "NextToken"), &after_time,
                                 after_id, &err) < 0 ||
        ec2_dry_run(r))
        goto out;
    if (clc_load_instances(r->db, r->who.id, NULL, &rows, &n, &err) < 0 ||
        clc_services_each(r->db, NULL, collect_node, &ns, &err) < 0)
        goto out;
    w = ec2_reply_start(r, "DescribeInstanceStatus");
    xml_start(w, "instanceStatusSet");
    int64_t now = time_now_ms();
    long long shown = 0;
    const struct instance_row *last = NULL;
    bool more = false;
    for (size_t i = 0; i < n; i++) {
        const struct instance_row *x = &rows[i];
        if ((ids.n ? !ec2_id_list_has(&ids, x->id)
                   : !ec2_instance_visible(x, now)) ||
            (!all && strcmp(x->state, "running") != 0) ||
            !ec2_instance_after(x, after_time, after_id))
            continue;
        struct check sys = system_check(x, &ns), inst = instance_check(x);
        if (!status_wanted(&fs, x, &sys, &inst))
            continue;
        if (max && shown == max) {
            more = true;
            break;
        }
        xml_start(w, "item");
        xml_text_element(w, "instanceId", x->id);
        xml_text_element(w, "availabilityZone", x->cluster);
        ec2_write_state(w, "instanceState", x->state);
        write_check(w, "systemStatus", &sys);
        write_check(w, "instanceStatus", &inst);
        xml_end(w);
        last = x;
        shown++;
    }
    xml_end(w);
    ec2_instances_found(&ids, &err);
    if (more && last)
        ec2_instance_token_write(w, last);
out:
    free(ns.v);
    free(rows);
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}
