/* sg_instances.c: the security groups of instances: RunInstances'
 * SecurityGroupId.N / SecurityGroup.N, ModifyInstanceAttribute GroupId.N,
 * the groupSet of DescribeInstances and DescribeInstanceAttribute, the
 * group filters of DescribeInstances, and the group names the metadata
 * service serves (pushed with the instance's metadata, metadata_options.c).
 *
 * DESIGN: an instance has 1 to 5 groups of its own VPC, in the order given
 * (instance_groups.position); none given is the VPC's default group.  A
 * change of an instance's groups is one transaction that also bumps its
 * md_version (the metadata service's security-groups follows) and, through
 * the triggers of schema_v7, the network policy version.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secgroups.h"

/* Adds the group of id or name to s (once). */
static int set_add(struct ec2_req *r, struct clc_sg_set *s, const char *id,
                   const char *name, struct koala_error **err)
{
    struct sg_group g;
    if (id ? clc_sg_get(r->db, r->who.id, id, &g, err) < 0
           : clc_sg_by_name(r->db, r->who.id, NULL, name, &g, err) < 0)
        return -1;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ids[i], g.id) == 0)
            return 0;
    if (s->n == SG_MAX_PER_INSTANCE)
        return error_set(err, EINVAL, "SecurityGroupsPerInterfaceLimitExceeded",
                         "The maximum number of security groups per "
                         "interface (%d) has been reached",
                         SG_MAX_PER_INSTANCE);
    snprintf(s->ids[s->n++], sizeof(s->ids[0]), "%s", g.id);
    return 0;
}

/* The groups of GroupId.N-style parameters prefix.1, prefix.2 ... */
static int add_list(struct ec2_req *r, struct clc_sg_set *s, const char *prefix,
                    bool names, struct koala_error **err)
{
    const char **v = NULL;
    size_t n = ec2_param_list(r, prefix, &v);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = set_add(r, s, names ? NULL : v[i], names ? v[i] : NULL, err);
    free(v);
    return rc;
}

int clc_sg_run_parse(struct ec2_req *r, struct clc_sg_set *s,
                     struct koala_error **err)
{
    memset(s, 0, sizeof(*s));
    if (ec2_param(r, "SecurityGroup.1") &&
        clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, err) < 0)
        return -1;
    return add_list(r, s, "SecurityGroupId", false, err) < 0 ||
                   add_list(r, s, "NetworkInterface.1.SecurityGroupId", false,
                            err) < 0 ||
                   add_list(r, s, "SecurityGroup", true, err) < 0
               ? -1
               : 0;
}

/* The VPC of a group into vpc: 0 / -1. */
static int group_vpc(struct db *db, const char *id, char vpc[32],
                     struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT vpc FROM security_groups WHERE id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up security group", err);
    if (rc == 0)
        clc_col(vpc, 32, st, 0);
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidGroup.NotFound",
                         "The security group '%s' does not exist", id);
    return rc;
}

/* Replaces the instance's groups by s (checked to be in vpc). */
static int store(struct ec2_req *r, const struct clc_sg_set *s, const char *vpc,
                 const char *instance, struct koala_error **err)
{
    struct clc_sg_set def = {0};
    if (s->n == 0) {
        struct sg_group g;
        if (clc_sg_ensure_default(r->db, r->who.id, vpc, err) < 0 ||
            clc_sg_by_name(r->db, r->who.id, vpc, "default", &g, err) < 0)
            return -1;
        snprintf(def.ids[0], sizeof(def.ids[0]), "%s", g.id);
        def.n = 1;
        s = &def;
    }
    if (clc_exec(r->db, "DELETE FROM instance_groups WHERE instance = ?",
                 "changing instance groups", err, instance, NULL) < 0)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        char gv[32], pos[16];
        if (group_vpc(r->db, s->ids[i], gv, err) < 0)
            return -1;
        if (strcmp(gv, vpc) != 0)
            return error_set(err, EINVAL, "InvalidParameter",
                             "Security group %s and the instance's subnet "
                             "belong to different networks (%s, %s).",
                             s->ids[i], gv, vpc);
        snprintf(pos, sizeof(pos), CLC_INT "%zu", i);
        if (clc_exec(r->db,
                     "INSERT INTO instance_groups(instance, grp, position)"
                     " VALUES(?,?,?)",
                     "storing instance groups", err, instance, s->ids[i], pos,
                     NULL) < 0)
            return -1;
    }
    return 0;
}

int clc_sg_run_store(struct ec2_req *r, const struct clc_sg_set *s,
                     const char *vpc, const char *instance,
                     struct koala_error **err)
{
    return store(r, s, vpc, instance, err);
}

/* Calls fn(ctx, id, name) for each group of the instance, in order. */
static int each_group(struct db *db, const char *instance,
                      void (*fn)(void *ctx, const char *id, const char *name),
                      void *ctx, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT g.id, g.name FROM instance_groups ig"
                               " JOIN security_groups g ON g.id = ig.grp"
                               " WHERE ig.instance = ? ORDER BY ig.position",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ctx, (const char *)sqlite3_column_text(st, 0),
           (const char *)sqlite3_column_text(st, 1));
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(db, "listing instance groups", err);
}

static void write_item(void *ctx, const char *id, const char *name)
{
    struct xml_writer *w = ctx;
    xml_start(w, "item");
    xml_text_element(w, "groupId", id);
    xml_text_element(w, "groupName", name);
    xml_end(w);
}

int clc_sg_write_instance_groups(struct ec2_req *r, struct xml_writer *w,
                                 const char *element, const char *instance,
                                 struct koala_error **err)
{
    xml_start(w, element);
    int rc = each_group(r->db, instance, write_item, w, err);
    xml_end(w);
    return rc;
}

bool clc_sg_is_instance_filter(const char *name)
{
    return strcmp(name, "instance.group-id") == 0 ||
           strcmp(name, "instance.group-name") == 0 ||
           strcmp(name, "group-id") == 0 || strcmp(name, "group-name") == 0 ||
           strcmp(name, "network-interface.group-id") == 0 ||
           strcmp(name, "network-interface.group-name") == 0;
}

struct filter_ctx {
    const struct ec2_filter *f;
    bool by_name;
    bool hit;
};

static void filter_one(void *ctx, const char *id, const char *name)
{
    struct filter_ctx *c = ctx;
    c->hit |= ec2_filter_match(c->f, c->by_name ? name : id);
}

bool clc_sg_instance_filter(struct ec2_req *r, const char *instance,
                            const struct ec2_filter *f)
{
    size_t len = strlen(f->name);
    struct filter_ctx c = {
        f, len >= 10 && strcmp(f->name + len - 10, "group-name") == 0, false};
    struct koala_error *err = NULL;
    if (each_group(r->db, instance, filter_one, &c, &err) < 0)
        error_free(err); /* shown as no match */
    return c.hit;
}

static void name_line(void *ctx, const char *id, const char *name)
{
    (void)id;
    buf_printf(ctx, "%s\n", name);
}

int clc_sg_names(struct db *db, const char *instance, const char *reservation,
                 char **names, struct koala_error **err)
{
    char pick[32] = "";
    *names = NULL;
    if (reservation) {
        /* The launch's groups: of an instance still at its first metadata
         * version (those its answer acknowledges). */
        sqlite3_stmt *st = db_stmt(db,
                                   "SELECT id FROM instances WHERE"
                                   " reservation = ? ORDER BY md_version != 1,"
                                   " launch_index LIMIT 1",
                                   err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, reservation, -1, SQLITE_STATIC);
        if (db_step_row(db, st, "looking up reservation", err) == 0)
            clc_col(pick, sizeof(pick), st, 0);
        db_stmt_done(st);
        instance = pick;
    }
    struct buf b = {0};
    buf_append_str(&b, "");
    if (each_group(db, instance, name_line, &b, err) < 0) {
        buf_free(&b);
        return -1;
    }
    *names = b.data ? b.data : strdup("");
    return *names ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
}

/* The VPC of an instance of the caller into vpc. */
static int instance_vpc(struct ec2_req *r, const char *instance, char vpc[32],
                        struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT s.vpc FROM instances i JOIN subnets s"
                               " ON s.id = i.subnet_id WHERE i.id = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
    int rc = db_step_row(r->db, st, "looking up instance VPC", err);
    if (rc == 0)
        clc_col(vpc, 32, st, 0);
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, EINVAL, "InvalidInstanceID",
                         "The instance '%s' is in no VPC", instance);
    return rc;
}

int clc_sg_modify_instance(struct ec2_req *r, const char *instance,
                           const char *state, struct koala_error **err)
{
    struct clc_sg_set s = {0};
    char vpc[32];
    if (strcmp(state, "terminated") == 0 || strcmp(state, "shutting-down") == 0)
        return error_set(err, EINVAL, "IncorrectInstanceState",
                         "The instance '%s' is not in a state from which its "
                         "groups can be changed (%s)",
                         instance, state);
    if (clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, err) < 0 ||
        add_list(r, &s, "GroupId", false, err) < 0 ||
        instance_vpc(r, instance, vpc, err) < 0)
        return -1;
    if (s.n == 0)
        return error_set(err, EINVAL, "MissingParameter",
                         "The request must contain the parameter groupId");
    if (db_begin(r->db, err) < 0)
        return -1;
    if (store(r, &s, vpc, instance, err) < 0)
        goto fail;
    if (ec2_dry_run(r)) {
        db_rollback(r->db);
        return 1;
    }
    if (clc_exec(
            r->db,
            "UPDATE instances SET md_version = md_version + 1 WHERE id = ?",
            "changing instance groups", err, instance, NULL) < 0 ||
        db_commit(r->db, err) < 0)
        goto fail;
    clc_md_kick(r->clc);
    clc_netpolicy_kick(r->clc);
    return 0;
fail:
    db_rollback(r->db);
    return -1;
}
