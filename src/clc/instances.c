/* instances.c: RunInstances (validation, capacity, the reservation),
 * TerminateInstances, RebootInstances, StopInstances, StartInstances and
 * GetConsoleOutput.
 *
 * DESIGN: the CLC answers RunInstances as soon as the reservation and its
 * `pending` instances are committed; the launch continues after the reply
 * (launch.c).  From then on the instances move as their cluster reports
 * (NotifyInstanceState, polling: see cluster.c).  Terminate/Stop/Start/
 * Reboot likewise change the state here first and send the CC the order
 * from a job; the poller sends it again while the cluster disagrees, so a
 * lost message only delays.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "ebs.h"
#include "id.h"
#include "log.h"
#include "secgroups.h"
#include "soap.h"

#define MAX_PER_REQUEST 100

/* ---- capacity ---- */

struct cluster_choice {
    struct ec2_req *r;
    const struct instance_type *type;
    const char *zone; /* Placement.AvailabilityZone, or NULL */
    bool need_sc;     /* EBS volumes: only zones with a storage controller */
    bool sc_missing;  /* a zone was passed over for that */
    char best[64];
    long long best_available;
    bool any;
    struct koala_error *last_err;
};

void clc_write_type(struct xml_writer *w, const struct instance_type *t)
{
    xml_start(w, "instanceType");
    xml_text_element(w, "name", t->name);
    xml_u64_element(w, "cores", (uint64_t)t->cores);
    xml_u64_element(w, "memoryMb", (uint64_t)t->memory_mb);
    xml_u64_element(w, "diskGb", (uint64_t)t->disk_gb);
    xml_end(w);
}

int clc_cluster_capacity(struct clc *clc, struct db *db, const char *cluster,
                         const struct instance_type *types, size_t n,
                         long long *max, long long *avail,
                         struct koala_error **err)
{
    struct soap_client *c = clc_cc_client(clc, db, cluster, err);
    if (c == NULL)
        return -1;
    struct xml_writer *w = soap_start("DescribeResources", CC_NS);
    for (size_t i = 0; i < n; i++)
        clc_write_type(w, &types[i]);
    size_t len;
    char *rq = soap_finish(w, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body;
    int rc = soap_call(c, "DescribeResources", rq, len, &doc, &body, err);
    soap_client_free(c);
    if (rc < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        max[i] = avail[i] = 0;
    for (const struct xml_node *x = xml_next_child(body, NULL, "resource"); x;
         x = xml_next_child(body, x, "resource")) {
        _cleanup_free_ char *name = xml_child_text(x, "instanceType");
        for (size_t i = 0; name && i < n; i++) {
            if (strcmp(str_trim(name), types[i].name) != 0)
                continue;
            if (soap_int(x, "max", 0, &max[i], err) < 0 ||
                soap_int(x, "available", 0, &avail[i], err) < 0) {
                xml_doc_free(doc);
                return -1;
            }
        }
    }
    xml_doc_free(doc);
    return 0;
}

static int consider_cluster(void *ctx, const struct service *s)
{
    struct cluster_choice *c = ctx;
    if (c->zone && strcmp(c->zone, s->name) != 0)
        return 0;
    c->any = true;
    if (c->need_sc) {
        bool known, has_sc;
        if (clc_zone_known(c->r->db, s->name, &known, &has_sc, NULL) < 0 ||
            !has_sc) {
            c->sc_missing = true;
            return 0;
        }
    }
    long long avail = 0;
    struct koala_error *e = NULL;
    long long max = 0;
    if (clc_cluster_capacity(c->r->clc, c->r->db, s->name, c->type, 1, &max,
                             &avail, &e) < 0) {
        log_warn("cluster %s: %s", s->name, error_message(e));
        error_free(c->last_err);
        c->last_err = e;
        return 0;
    }
    if (avail > c->best_available) {
        c->best_available = avail;
        snprintf(c->best, sizeof(c->best), "%s", s->name);
    }
    return 0;
}

/* ---- RunInstances ---- */

struct run_args {
    const char *image_id;
    struct clc_image_ref image;
    const char *kernel_id, *ramdisk_id;
    struct instance_type type;
    const char *key_name;
    const char *user_data;
    const char *token;
    const char *zone;
    const char *shutdown_behavior; /* stop, terminate */
    bool disable_api_termination;
    long long min, max;
    struct clc_md_options md; /* MetadataOptions */
    struct clc_subnet subnet; /* SubnetId's, or the zone's default (vpc.c) */
    bool subnet_given;
    struct clc_sg_set groups; /* SecurityGroupId.N, SecurityGroup.N */
    /* NetworkInterface.1.AssociatePublicIpAddress, else the subnet's
     * MapPublicIpOnLaunch (addresses.c assigns it once placed) */
    bool public_ip_given, public_ip;
    struct clc_bdms volumes; /* EBS volumes of each instance (ebs_images.c) */
};

static int check_run_args(struct ec2_req *r, struct run_args *a,
                          struct koala_error **err)
{
    /* "volume": the tags of the instance's EBS volumes (Ansible's
     * ec2_instance always sends them; an instance-store instance without
     * EBS devices has none, so they tag nothing, as EC2's). */
    static const char *const tag_types[] = {"instance", "volume", NULL};
    const char *type = ec2_param(r, "InstanceType");
    memset(a, 0, sizeof(*a));
    a->image_id = ec2_required(r, "ImageId", err);
    if (a->image_id == NULL ||
        ec2_param_int(r, "MinCount", -1, 1, MAX_PER_REQUEST, &a->min, err) <
            0 ||
        ec2_param_int(r, "MaxCount", -1, 1, LLONG_MAX, &a->max, err) < 0)
        return -1;
    if (a->min < 0 || a->max < 0)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameters MinCount "
                         "and MaxCount");
    if (a->min > a->max)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "MinCount (%lld) may not exceed MaxCount (%lld)",
                         a->min, a->max);
    if (a->min > MAX_PER_REQUEST)
        return error_set(err, EINVAL, "InstanceLimitExceeded",
                         "Your quota allows for at most %d instances in one "
                         "request",
                         MAX_PER_REQUEST);
    if (a->max > MAX_PER_REQUEST)
        a->max = MAX_PER_REQUEST;
    int rc = clc_instance_type(r->db, type ? type : "m1.small", &a->type, err);
    if (rc == 1)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Invalid value '%s' for InstanceType.", type);
    if (rc < 0 ||
        clc_image_get(r->db, a->image_id, r->who.id, &a->image, err) < 0)
        return -1;
    if (strcmp(a->image.kind, "machine") != 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s is a %s image, not a machine image", a->image_id,
                         a->image.kind);
    if (strcmp(a->image.root_device_type, "ebs") == 0 &&
        (ec2_param(r, "KernelId") || ec2_param(r, "RamdiskId")))
        return error_set(err, EINVAL, "InvalidParameterCombination",
                         "%s boots from its root volume: it takes no KernelId "
                         "or RamdiskId",
                         a->image_id);
    a->kernel_id = ec2_param(r, "KernelId");
    a->ramdisk_id = ec2_param(r, "RamdiskId");
    if (a->kernel_id == NULL && *a->image.kernel_id)
        a->kernel_id = a->image.kernel_id;
    if (a->ramdisk_id == NULL && *a->image.ramdisk_id)
        a->ramdisk_id = a->image.ramdisk_id;
    if ((a->kernel_id && clc_check_boot_image(r->db, a->kernel_id, "kernel",
                                              r->who.id, err) < 0) ||
        (a->ramdisk_id && clc_check_boot_image(r->db, a->ramdisk_id, "ramdisk",
                                               r->who.id, err) < 0))
        return -1;
    if (a->ramdisk_id && a->kernel_id == NULL)
        return error_set(err, EINVAL, "InvalidParameterCombination",
                         "A RamdiskId needs a KernelId");
    a->key_name = ec2_param(r, "KeyName");
    if (a->key_name) {
        sqlite3_stmt *st = db_stmt(
            r->db, "SELECT 1 FROM keypairs WHERE owner = ? AND name = ?", err);
        if (st == NULL)
            return -1;
        sqlite3_bind_int64(st, 1, r->who.id);
        sqlite3_bind_text(st, 2, a->key_name, -1, SQLITE_STATIC);
        rc = db_step_row(r->db, st, "looking up key pair", err);
        db_stmt_done(st);
        if (rc == 1)
            return error_set(err, ENOENT, "InvalidKeyPair.NotFound",
                             "The key pair '%s' does not exist", a->key_name);
        if (rc < 0)
            return -1;
    }
    a->user_data = ec2_param(r, "UserData");
    if ((a->user_data && clc_check_user_data(a->user_data, err) < 0) ||
        clc_md_parse_run(r, &a->md, err) < 0)
        return -1;
    a->token = ec2_param(r, "ClientToken");
    if (a->token && (strlen(a->token) > 64 || *a->token == '\0'))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "ClientToken must be 1 to 64 ASCII characters");
    a->zone = ec2_param(r, "Placement.AvailabilityZone");
    if (clc_run_subnet(r, &a->zone, &a->subnet, &a->subnet_given, err) < 0 ||
        clc_sg_run_parse(r, &a->groups, err) < 0)
        return -1;
    a->public_ip_given =
        ec2_param(r, "NetworkInterface.1.AssociatePublicIpAddress") != NULL;
    if (ec2_param_bool(r, "NetworkInterface.1.AssociatePublicIpAddress", false,
                       &a->public_ip, err) < 0)
        return -1;
    a->shutdown_behavior = ec2_param(r, "InstanceInitiatedShutdownBehavior");
    if (a->shutdown_behavior == NULL)
        a->shutdown_behavior = "stop";
    if (clc_check_shutdown_behavior(a->shutdown_behavior, err) < 0 ||
        ec2_param_bool(r, "DisableApiTermination", false,
                       &a->disable_api_termination, err) < 0)
        return -1;
    if (ec2_check_tag_specs(r, tag_types, err) < 0)
        return -1;
    return clc_run_bdms_plan(r, &a->image, &a->volumes, err);
}

static void reply_reservation(struct ec2_req *r, const char *reservation)
{
    struct koala_error *err = NULL;
    struct instance_row *rows = NULL;
    size_t n = 0;
    if (clc_load_instances(r->db, r->who.id, reservation, &rows, &n, &err) < 0)
        return ec2_fail(r, err);
    struct xml_writer *w = ec2_reply_start(r, "RunInstances");
    if (n > 0)
        ec2_write_reservation(r, w, rows, n, &err);
    free(rows);
    ec2_reply_end(r, w, err);
}

/* The reservation a ClientToken already made, if any: 0 found, 1 none. */
static int token_reservation(struct ec2_req *r, const char *token, char *out,
                             size_t size, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT id FROM reservations WHERE owner = ? AND"
                               " client_token = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, r->who.id);
    sqlite3_bind_text(st, 2, token, -1, SQLITE_STATIC);
    int rc = db_step_row(r->db, st, "looking up client token", err);
    if (rc == 0)
        clc_col(out, size, st, 0);
    db_stmt_done(st);
    return rc;
}

static int insert_reservation(struct ec2_req *r, const struct run_args *a,
                              const char *cluster, long long count,
                              char reservation[32], struct koala_error **err)
{
    char owner[24], now[24], idx[24];
    int64_t t = time_now_ms();
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)r->who.id);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)t);
    if (id_resource(reservation, 32, "r") < 0)
        return error_set_errno(err, "getrandom");
    if (db_begin(r->db, err) < 0)
        return -1;
    if (clc_exec(r->db,
                 "INSERT INTO reservations(id, owner, client_token, created)"
                 " VALUES(?,?,NULLIF(?, ''),?)",
                 "storing reservation", err, reservation, owner,
                 a->token ? a->token : "", now, NULL) < 0)
        goto fail;
    for (long long i = 0; i < count; i++) {
        char id[32];
        if (id_resource(id, sizeof(id), "i") < 0) {
            error_set_errno(err, "getrandom");
            goto fail;
        }
        snprintf(idx, sizeof(idx), CLC_INT "%lld", i);
        if (clc_exec(r->db,
                     "INSERT INTO instances(id, reservation, owner,"
                     " launch_index, image_id, kernel_id, ramdisk_id,"
                     " instance_type, key_name, user_data, cluster, state,"
                     " client_token, launch_time, updated, shutdown_behavior,"
                     " disable_api_termination, subnet_id, root_device_type,"
                     " root_device_name) VALUES(?,?,?,?,?, NULLIF(?, ''),"
                     " NULLIF(?, ''),?,NULLIF(?, ''), NULLIF(?, ''),?,"
                     "'pending',NULLIF(?, ''),?,?,?,?,?,?,?)",
                     "storing instance", err, id, reservation, owner, idx,
                     a->image_id, a->kernel_id ? a->kernel_id : "",
                     a->ramdisk_id ? a->ramdisk_id : "", a->type.name,
                     a->key_name ? a->key_name : "",
                     a->user_data ? a->user_data : "", cluster,
                     a->token ? a->token : "", now, now, a->shutdown_behavior,
                     a->disable_api_termination ? CLC_INT "1" : CLC_INT "0",
                     a->subnet.id, a->image.root_device_type,
                     a->image.root_device_name, NULL) < 0 ||
            clc_run_bdms_store(r, &a->volumes, id, cluster, err) < 0 ||
            clc_md_store_new(r->db, id, &a->md, err) < 0 ||
            clc_sg_run_store(r, &a->groups, a->subnet.vpc, id, err) < 0 ||
            ec2_apply_tag_specs(r, "instance", id, err) < 0)
            goto fail;
    }
    if (a->public_ip &&
        clc_exec(r->db,
                 "UPDATE instances SET public_ip_wanted = 1 WHERE"
                 " reservation = ?",
                 "storing instance", err, reservation, NULL) < 0)
        goto fail;
    return db_commit(r->db, err);
fail:
    db_rollback(r->db);
    return -1;
}

static void run_instances(struct ec2_req *r, struct run_args *a)
{
    struct koala_error *err = NULL;
    /* DryRun answers whether the caller may do it; capacity is not a
     * permission. */
    if (ec2_dry_run(r))
        return;
    char reservation[32];
    if (a->token) {
        int rc = token_reservation(r, a->token, reservation,
                                   sizeof(reservation), &err);
        if (rc < 0)
            return ec2_fail(r, err);
        if (rc == 0) /* the same request again: the same answer */
            return reply_reservation(r, reservation);
    }
    struct cluster_choice c = {.r = r,
                               .type = &a->type,
                               .zone = a->zone,
                               .need_sc = a->volumes.n > 0,
                               .best_available = -1};
    if (clc_services_each(r->db, "cluster", consider_cluster, &c, &err) < 0)
        return ec2_fail(r, err);
    if (c.best_available < 0 && c.sc_missing && c.last_err == NULL) {
        error_set(&err, EINVAL, "UnsupportedOperation",
                  "EBS volumes need a zone with a storage controller%s%s",
                  a->zone ? ": none in " : "", a->zone ? a->zone : "");
        return ec2_fail(r, err);
    }
    if (a->zone && !c.any) {
        error_free(c.last_err);
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Invalid availability zone: [%s]", a->zone);
        return ec2_fail(r, err);
    }
    if (c.best_available < a->min) {
        if (c.best_available < 0 && c.last_err)
            error_set(&err, EIO, "InsufficientInstanceCapacity",
                      "There is not enough capacity to fulfill your request: "
                      "no cluster answered (%s)",
                      error_message(c.last_err));
        else
            error_set(&err, ENOSPC, "InsufficientInstanceCapacity",
                      "There is not enough capacity to fulfill your request: "
                      "%lld %s at most",
                      c.best_available < 0 ? 0 : c.best_available,
                      a->type.name);
        error_free(c.last_err);
        return ec2_fail(r, err);
    }
    error_free(c.last_err);
    long long count = c.best_available < a->max ? c.best_available : a->max;
    if (!a->subnet_given && clc_default_subnet(r->clc, r->db, r->who.id, c.best,
                                               &a->subnet, &err) < 0)
        return ec2_fail(r, err);
    if (!a->public_ip_given &&
        clc_subnet_maps_public_ip(r->db, a->subnet.id, &a->public_ip, &err) < 0)
        return ec2_fail(r, err);
    if (insert_reservation(r, a, c.best, count, reservation, &err) < 0) {
        /* A concurrent request with the same ClientToken won the race. */
        if (a->token && err && err->errnum == EEXIST &&
            token_reservation(r, a->token, reservation, sizeof(reservation),
                              NULL) == 0) {
            error_free(err);
            return reply_reservation(r, reservation);
        }
        return ec2_fail(r, err);
    }
    clc_queue_launch(r->clc, reservation);
    clc_netpolicy_kick(r->clc);
    if (a->volumes.n > 0)
        clc_ebs_kick(r->clc); /* the SC makes the volumes meanwhile */
    reply_reservation(r, reservation);
}

void ec2_run_instances(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct run_args a;
    if (check_run_args(r, &a, &err) < 0) {
        clc_bdms_free(&a.volumes);
        return ec2_fail(r, err);
    }
    run_instances(r, &a);
    clc_bdms_free(&a.volumes);
}

/* ---- Terminate / Stop / Start / Reboot ---- */

struct change {
    char id[32];
    char cluster[64];
    char node[64];
    char previous[16];
    char current[16];
    bool protected; /* disableApiTermination */
};

/* Loads the listed instances of the caller; all must exist. */
static int load_listed(struct ec2_req *r, struct change **out, size_t *n_out,
                       struct koala_error **err)
{
    const char **ids = NULL;
    size_t n = ec2_param_list(r, "InstanceId", &ids);
    *out = NULL;
    *n_out = 0;
    if (n == 0) {
        free(ids);
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter InstanceId");
    }
    struct change *ch = calloc(n, sizeof(*ch));
    struct buf missing = {0};
    int rc = ch ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_stmt *st =
            db_stmt(r->db,
                    "SELECT cluster, node, state, disable_api_termination"
                    " FROM instances WHERE id = ? AND owner = ?",
                    err);
        if (st == NULL) {
            rc = -1;
            break;
        }
        sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, r->who.id);
        int found = db_step_row(r->db, st, "looking up instance", err);
        if (found == 0) {
            snprintf(ch[i].id, sizeof(ch[i].id), "%s", ids[i]);
            clc_col(ch[i].cluster, sizeof(ch[i].cluster), st, 0);
            clc_col(ch[i].node, sizeof(ch[i].node), st, 1);
            clc_col(ch[i].previous, sizeof(ch[i].previous), st, 2);
            ch[i].protected = sqlite3_column_int(st, 3) != 0;
        } else if (found == 1) {
            buf_printf(&missing, "%s%s", missing.len ? ", " : "", ids[i]);
        } else {
            rc = -1;
        }
        db_stmt_done(st);
    }
    if (rc == 0 && missing.len)
        rc = error_set(err, ENOENT, "InvalidInstanceID.NotFound",
                       "The instance ID%s '%s' do%s not exist",
                       strchr(missing.data, ',') ? "s" : "", missing.data,
                       strchr(missing.data, ',') ? "" : "es");
    buf_free(&missing);
    free(ids);
    if (rc < 0) {
        free(ch);
        return -1;
    }
    *out = ch;
    *n_out = n;
    return 0;
}

static void reply_changes(struct ec2_req *r, const char *action,
                          const struct change *ch, size_t n)
{
    struct xml_writer *w = ec2_reply_start(r, action);
    xml_start(w, "instancesSet");
    for (size_t i = 0; i < n; i++) {
        xml_start(w, "item");
        xml_text_element(w, "instanceId", ch[i].id);
        ec2_write_state(w, "currentState", ch[i].current);
        ec2_write_state(w, "previousState", ch[i].previous);
        xml_end(w);
    }
    xml_end(w);
    ec2_reply_finish(r, w);
}

struct order_job {
    struct clc *clc;
};

static void orders(void *arg)
{
    struct order_job *job = arg;
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(job->clc->db, &err);
    if (db)
        clc_resend_orders(job->clc, db);
    error_free(err);
    db_pool_put(job->clc->db, db);
    free(job);
}

void clc_resend_orders_kick(struct clc *clc)
{
    struct order_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return;
    job->clc = clc;
    if (workpool_submit(clc->launcher, orders, job) < 0)
        free(job);
}

/* An EBS-backed instance whose root volume was detached (while stopped). */
static bool root_missing(struct db *db, const char *id)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT 1 FROM instances i WHERE i.id = ? AND"
                               " i.root_device_type = 'ebs' AND NOT EXISTS"
                               " (SELECT 1 FROM attachments a WHERE"
                               " a.instance_id = i.id AND a.boot = 1 AND"
                               " a.state != 'detaching')",
                               NULL);
    if (st == NULL)
        return false;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    bool missing = sqlite3_step(st) == SQLITE_ROW;
    db_stmt_done(st);
    return missing;
}

/* Applies a state change to the listed instances: `to` for those in one of
 * the `from` states (NULL-terminated); others must be in an `ok` state
 * (which they keep) or the request fails with IncorrectInstanceState. */
static void change_states(struct ec2_req *r, const char *action,
                          const char *const *from, const char *to,
                          const char *desired, const char *const *ok,
                          const char *reason)
{
    struct koala_error *err = NULL;
    struct change *ch = NULL;
    size_t n = 0;
    if (load_listed(r, &ch, &n, &err) < 0)
        return ec2_fail(r, err);
    for (size_t i = 0; i < n && err == NULL; i++) {
        bool moves = false, stays = false;
        for (const char *const *f = from; *f; f++)
            moves |= strcmp(ch[i].previous, *f) == 0;
        for (const char *const *o = ok; o && *o; o++)
            stays |= strcmp(ch[i].previous, *o) == 0;
        snprintf(ch[i].current, sizeof(ch[i].current), "%s",
                 moves ? to : ch[i].previous);
        if (!moves && !stays)
            error_set(&err, EINVAL, "IncorrectInstanceState",
                      "The instance '%s' is not in a state from which it "
                      "can be %s (%s).",
                      ch[i].id, reason, ch[i].previous);
        else if (moves && strcmp(desired, "running") == 0 &&
                 root_missing(r->db, ch[i].id))
            error_set(&err, EINVAL, "IncorrectInstanceState",
                      "The instance '%s' does not have an 'AMI root device' "
                      "volume attached.",
                      ch[i].id);
        else if (moves && ch[i].protected && strcmp(desired, "terminated") == 0)
            error_set(&err, EPERM, "OperationNotPermitted",
                      "The instance '%s' may not be terminated. Modify its "
                      "'disableApiTermination' instance attribute and try "
                      "again.",
                      ch[i].id);
    }
    if (err || ec2_dry_run(r)) {
        free(ch);
        if (err)
            ec2_fail(r, err);
        return;
    }
    char now[24];
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (db_begin(r->db, &err) < 0) {
        free(ch);
        return ec2_fail(r, err);
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ch[i].current, ch[i].previous) == 0)
            continue;
        /* Not on a node yet: over at once.  (If its launch is on the way,
         * the cluster's answer records the node, and clc_resend_orders
         * terminates it there.) */
        if (strcmp(to, "shutting-down") == 0 && *ch[i].node == '\0')
            snprintf(ch[i].current, sizeof(ch[i].current), "terminated");
        const char *state = ch[i].current;
        if (clc_exec(r->db,
                     "UPDATE instances SET state = ?, desired = ?,"
                     " transition_reason = ?, updated = ? WHERE id = ?",
                     "changing instance state", &err, state, desired, reason,
                     now, ch[i].id, NULL) < 0) {
            db_rollback(r->db);
            free(ch);
            return ec2_fail(r, err);
        }
    }
    if (db_commit(r->db, &err) < 0) {
        free(ch);
        return ec2_fail(r, err);
    }
    clc_resend_orders_kick(r->clc);
    reply_changes(r, action, ch, n);
    free(ch);
}

void ec2_terminate_instances(struct ec2_req *r)
{
    static const char *const from[] = {"pending", "running", "stopping",
                                       "stopped", NULL};
    static const char *const ok[] = {"shutting-down", "terminated", NULL};
    change_states(r, "TerminateInstances", from, "shutting-down", "terminated",
                  ok, "User initiated");
}

void ec2_stop_instances(struct ec2_req *r)
{
    static const char *const from[] = {"running", NULL};
    static const char *const ok[] = {"stopping", "stopped", NULL};
    change_states(r, "StopInstances", from, "stopping", "stopped", ok,
                  "User initiated");
}

void ec2_start_instances(struct ec2_req *r)
{
    static const char *const from[] = {"stopped", NULL};
    static const char *const ok[] = {"pending", "running", NULL};
    change_states(r, "StartInstances", from, "pending", "running", ok,
                  "User initiated");
}

void ec2_reboot_instances(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct change *ch = NULL;
    size_t n = 0;
    if (load_listed(r, &ch, &n, &err) < 0)
        return ec2_fail(r, err);
    for (size_t i = 0; i < n && err == NULL; i++)
        if (strcmp(ch[i].previous, "running") != 0)
            error_set(&err, EINVAL, "IncorrectInstanceState",
                      "The instance '%s' is not running (%s).", ch[i].id,
                      ch[i].previous);
    if (err || ec2_dry_run(r)) {
        free(ch);
        if (err)
            ec2_fail(r, err);
        return;
    }
    /* A reboot is no state: it is sent at once. */
    for (size_t i = 0; i < n && err == NULL; i++) {
        struct soap_client *c =
            clc_cc_client(r->clc, r->db, ch[i].cluster, &err);
        if (c == NULL)
            break;
        struct xml_writer *w = soap_start("RebootInstances", CC_NS);
        xml_text_element(w, "instanceId", ch[i].id);
        size_t len;
        char *rq = soap_finish(w, &len);
        struct xml_doc *doc = NULL;
        const struct xml_node *body;
        soap_call(c, "RebootInstances", rq, len, &doc, &body, &err);
        xml_doc_free(doc);
        soap_client_free(c);
    }
    free(ch);
    if (err)
        return ec2_fail(r, err);
    struct xml_writer *w = ec2_reply_start(r, "RebootInstances");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
}

void ec2_get_console_output(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *id = ec2_required(r, "InstanceId", &err);
    if (id == NULL)
        return ec2_fail(r, err);
    sqlite3_stmt *st =
        db_stmt(r->db,
                "SELECT cluster, node, state FROM instances WHERE id = ? AND"
                " owner = ?",
                &err);
    if (st == NULL)
        return ec2_fail(r, err);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->who.id);
    char cluster[64] = "", node[64] = "";
    int rc = db_step_row(r->db, st, "looking up instance", &err);
    if (rc == 0) {
        clc_col(cluster, sizeof(cluster), st, 0);
        clc_col(node, sizeof(node), st, 1);
    }
    db_stmt_done(st);
    if (rc == 1)
        error_set(&err, ENOENT, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", id);
    if (err || ec2_dry_run(r)) {
        if (err)
            ec2_fail(r, err);
        return;
    }
    char *output = NULL, *timestamp = NULL;
    struct xml_doc *doc = NULL;
    if (*node) {
        struct soap_client *c = clc_cc_client(r->clc, r->db, cluster, &err);
        if (c == NULL)
            return ec2_fail(r, err);
        struct xml_writer *w = soap_start("GetConsoleOutput", CC_NS);
        xml_text_element(w, "instanceId", id);
        size_t len;
        char *rq = soap_finish(w, &len);
        const struct xml_node *body;
        rc = soap_call(c, "GetConsoleOutput", rq, len, &doc, &body, &err);
        soap_client_free(c);
        if (rc < 0)
            return ec2_fail(r, err);
        output = xml_child_text(body, "output");
        timestamp = xml_child_text(body, "timestamp");
    }
    char t[25];
    struct xml_writer *w = ec2_reply_start(r, "GetConsoleOutput");
    xml_text_element(w, "instanceId", id);
    xml_text_element(w, "timestamp",
                     timestamp ? timestamp : ec2_time(time_now_ms(), t));
    xml_text_element(w, "output", output ? output : "");
    free(output);
    free(timestamp);
    xml_doc_free(doc);
    ec2_reply_finish(r, w);
}
