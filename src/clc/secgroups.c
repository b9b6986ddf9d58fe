/* secgroups.c: security groups and their EC2 API: CreateSecurityGroup,
 * DeleteSecurityGroup, DescribeSecurityGroups, the default group of each
 * VPC, and the lookups the other files use (secgroups.h).
 *
 * DESIGN: a group belongs to a VPC (today each account's default VPC,
 * vpc.c); names are unique per VPC, "default" is the VPC's own group, made
 * with the VPC in its transaction (and by schema_v7 for VPCs made before).
 * Every action is one transaction: what it refuses changes nothing.  A
 * group is deleted only when no instance that is not terminated is in it
 * and no other group's rule names it (DependencyViolation, as EC2); its
 * rules, their tags and the memberships of terminated instances go with
 * it.  Deleting a group changes the policy documents (a trigger bumps
 * netpolicy.version), pushed by netpolicy_push.c.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"
#include "secgroups.h"

#define GROUP_COLS "g.id, g.owner, a.number, g.vpc, g.name, g.description"

static void read_group(sqlite3_stmt *st, int col, struct sg_group *g)
{
    memset(g, 0, sizeof(*g));
    clc_col(g->id, sizeof(g->id), st, col);
    g->owner = sqlite3_column_int64(st, col + 1);
    clc_col(g->owner_number, sizeof(g->owner_number), st, col + 2);
    clc_col(g->vpc, sizeof(g->vpc), st, col + 3);
    clc_col(g->name, sizeof(g->name), st, col + 4);
    clc_col(g->description, sizeof(g->description), st, col + 5);
}

static int insert_rule(struct db *db, const char *group, bool egress,
                       const char *cidr, const char *ref, const char *now,
                       struct koala_error **err)
{
    char id[32];
    if (id_resource(id, sizeof(id), "sgr") < 0)
        return error_set_errno(err, "getrandom");
    return clc_exec(db,
                    "INSERT INTO sg_rules(id, grp, egress, proto, from_port,"
                    " to_port, cidr, ref_group, created) VALUES(?,?,?,'-1',"
                    " -1, -1, NULLIF(?, ''), NULLIF(?, ''), ?)",
                    "storing rule", err, id, group,
                    egress ? CLC_INT "1" : CLC_INT "0", cidr ? cidr : "",
                    ref ? ref : "", now, NULL);
}

int clc_sg_ensure_default(struct db *db, int64_t owner, const char *vpc,
                          struct koala_error **err)
{
    char id[32], o[24], now[24];
    if (id_resource(id, sizeof(id), "sg") < 0)
        return error_set_errno(err, "getrandom");
    snprintf(o, sizeof(o), CLC_INT "%lld", (long long)owner);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    if (clc_exec(db,
                 "INSERT OR IGNORE INTO security_groups(id, owner, vpc, name,"
                 " description, created) VALUES(?,?,?,'default',"
                 " 'default VPC security group',?)",
                 "storing default security group", err, id, o, vpc, now,
                 NULL) < 0)
        return -1;
    if (sqlite3_changes(db_handle(db)) == 1 &&
        (insert_rule(db, id, false, NULL, id, now, err) < 0 ||
         insert_rule(db, id, true, "0.0.0.0/0", NULL, now, err) < 0))
        return -1;
    return clc_exec(db,
                    "INSERT OR IGNORE INTO instance_groups(instance, grp,"
                    " position) SELECT i.id, g.id, 0 FROM instances i JOIN"
                    " subnets s ON s.id = i.subnet_id JOIN security_groups g"
                    " ON g.vpc = s.vpc AND g.name = 'default' WHERE"
                    " i.owner = ? AND s.vpc = ? AND NOT EXISTS (SELECT 1 FROM"
                    " instance_groups x WHERE x.instance = i.id)",
                    "joining the default group", err, o, vpc, NULL);
}

static int group_not_found(const char *what, struct koala_error **err)
{
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", what);
    return error_set(err, ENOENT, "InvalidGroup.NotFound",
                     "The security group '%s' does not exist", shown);
}

int clc_sg_get(struct db *db, int64_t owner, const char *id, struct sg_group *g,
               struct koala_error **err)
{
    if (!id_resource_valid(id, "sg-")) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", id);
        return error_set(err, EINVAL, "InvalidGroupId.Malformed",
                         "Invalid id: \"%s\" (expecting \"sg-...\")", shown);
    }
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT " GROUP_COLS " FROM security_groups g"
                               " JOIN accounts a ON a.id = g.owner WHERE"
                               " g.id = ?1 AND (?2 < 0 OR g.owner = ?2)",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, owner);
    int rc = db_step_row(db, st, "looking up security group", err);
    if (rc == 0)
        read_group(st, 0, g);
    db_stmt_done(st);
    if (rc == 1)
        return group_not_found(id, err);
    return rc;
}

int clc_sg_by_name(struct db *db, int64_t owner, const char *vpc,
                   const char *name, struct sg_group *g,
                   struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT " GROUP_COLS " FROM security_groups g JOIN accounts a"
                " ON a.id = g.owner JOIN vpcs v ON v.id = g.vpc WHERE"
                " g.owner = ?1 AND g.name = ?2 AND (v.id = ?3 OR"
                " (?3 IS NULL AND v.is_default = 1))",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, owner);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    if (vpc)
        sqlite3_bind_text(st, 3, vpc, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up security group", err);
    if (rc == 0)
        read_group(st, 0, g);
    db_stmt_done(st);
    if (rc == 1)
        return group_not_found(name, err);
    return rc;
}

int clc_sg_from_request(struct ec2_req *r, struct sg_group *g,
                        struct koala_error **err)
{
    const char *id = ec2_param(r, "GroupId");
    const char *name = ec2_param(r, "GroupName");
    if (id)
        return clc_sg_get(r->db, r->who.id, id, g, err);
    if (name)
        return clc_sg_by_name(r->db, r->who.id, NULL, name, g, err);
    return error_set(err, EINVAL, "MissingParameter",
                     "The request must contain the parameter groupName or "
                     "groupId");
}

int clc_sg_page_args(struct ec2_req *r, const char *prefix, long long *max,
                     char after[32], struct koala_error **err)
{
    after[0] = '\0';
    if (ec2_param_int(r, "MaxResults", 0, 5, 1000, max, err) < 0)
        return -1;
    const char *token = ec2_param(r, "NextToken");
    if (token == NULL)
        return 0;
    _cleanup_free_ char *t = str_base64_decode_text(token, 40);
    if (t == NULL || !id_resource_valid(t, prefix)) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", token);
        return error_set(err, EINVAL, "InvalidNextToken",
                         "The token '%s' is invalid", shown);
    }
    snprintf(after, 32, "%s", t);
    return 0;
}

void clc_sg_page_token(struct xml_writer *w, const char *last)
{
    _cleanup_free_ char *b =
        str_base64_encode((const unsigned char *)last, strlen(last));
    xml_text_element(w, "nextToken", b);
}

/* ---- CreateSecurityGroup ---- */

/* EC2's characters for VPC group names and descriptions. */
static int check_text(const char *param, const char *v, bool empty_ok,
                      struct koala_error **err)
{
    static const char ok[] = " ._-:/()#,@[]+=&;{}!$*";
    size_t len = strlen(v);
    if ((len == 0 && !empty_ok) || len > SG_MAX_TEXT)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Value for parameter %s is invalid: 1 to %d "
                         "characters",
                         param, SG_MAX_TEXT);
    for (const char *p = v; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || strchr(ok, *p))) {
            char shown[80];
            snprintf(shown, sizeof(shown), "%s", v);
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "Value (%s) for parameter %s is invalid. "
                             "Valid characters are a-z, A-Z, 0-9, spaces "
                             "and ._-:/()#,@[]+=&;{}!$*",
                             shown, param);
        }
    return 0;
}

static int count_groups(struct db *db, const char *vpc, int64_t *n,
                        struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT count(*) FROM security_groups WHERE vpc = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, vpc, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "counting security groups", err);
    *n = rc == 0 ? sqlite3_column_int64(st, 0) : 0;
    db_stmt_done(st);
    return rc < 0 ? -1 : 0;
}

/* The caller's VPC of that id (NULL: the default one) into vpc. */
static int caller_vpc(struct ec2_req *r, const char *id, char vpc[32],
                      struct koala_error **err)
{
    char def[32];
    if (clc_vpc_ensure(r->clc, r->db, r->who.id, def, err) < 0)
        return -1;
    if (id == NULL) {
        snprintf(vpc, 32, "%s", def);
        return 0;
    }
    sqlite3_stmt *st =
        db_stmt(r->db, "SELECT 1 FROM vpcs WHERE id = ? AND owner = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->who.id);
    int rc = db_step_row(r->db, st, "looking up VPC", err);
    db_stmt_done(st);
    if (rc == 1) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", id);
        return error_set(err, ENOENT, "InvalidVpcID.NotFound",
                         "The vpc ID '%s' does not exist", shown);
    }
    if (rc == 0)
        snprintf(vpc, 32, "%s", id);
    return rc;
}

void ec2_create_security_group(struct ec2_req *r)
{
    static const char *const tag_types[] = {"security-group", NULL};
    struct koala_error *err = NULL;
    char vpc[32], id[32], o[24], now[24];
    const char *name = ec2_required(r, "GroupName", &err);
    const char *desc = name ? ec2_required(r, "GroupDescription", &err) : NULL;
    if (desc == NULL || check_text("GroupName", name, false, &err) < 0 ||
        check_text("GroupDescription", desc, false, &err) < 0)
        return ec2_fail(r, err);
    if (str_has_prefix(name, "sg-")) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Group names may not be in the format sg-*");
        return ec2_fail(r, err);
    }
    if (strcmp(name, "default") == 0) {
        error_set(&err, EINVAL, "InvalidGroup.Reserved",
                  "The security group 'default' is reserved");
        return ec2_fail(r, err);
    }
    if (ec2_check_tag_specs(r, tag_types, &err) < 0 ||
        caller_vpc(r, ec2_param(r, "VpcId"), vpc, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r))
        return;
    if (id_resource(id, sizeof(id), "sg") < 0) {
        error_set_errno(&err, "getrandom");
        return ec2_fail(r, err);
    }
    snprintf(o, sizeof(o), CLC_INT "%lld", (long long)r->who.id);
    snprintf(now, sizeof(now), CLC_INT "%lld", (long long)time_now_ms());
    int64_t n = 0;
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    if (count_groups(r->db, vpc, &n, &err) < 0)
        goto fail;
    if (n >= SG_MAX_GROUPS) {
        error_set(&err, ENOSPC, "SecurityGroupLimitExceeded",
                  "The maximum number of security groups (%d) for VPC "
                  "'%s' has been reached",
                  SG_MAX_GROUPS, vpc);
        goto fail;
    }
    if (clc_exec(r->db,
                 "INSERT INTO security_groups(id, owner, vpc, name,"
                 " description, created) VALUES(?,?,?,?,?,?)",
                 "storing security group", &err, id, o, vpc, name, desc, now,
                 NULL) < 0) {
        if (err->errnum == EEXIST) {
            error_free(err);
            err = NULL;
            error_set(&err, EEXIST, "InvalidGroup.Duplicate",
                      "The security group '%s' already exists for VPC '%s'",
                      name, vpc);
        }
        goto fail;
    }
    /* A new group allows all egress (clients wait for that rule). */
    if (insert_rule(r->db, id, true, "0.0.0.0/0", NULL, now, &err) < 0 ||
        ec2_apply_tag_specs(r, "security-group", id, &err) < 0 ||
        db_commit(r->db, &err) < 0)
        goto fail;
    clc_netpolicy_kick(r->clc);
    struct xml_writer *w = ec2_reply_start(r, "CreateSecurityGroup");
    xml_bool_element(w, "return", true);
    xml_text_element(w, "groupId", id);
    ec2_write_tag_set(r, w, id, &err);
    ec2_reply_end(r, w, err);
    return;
fail:
    db_rollback(r->db);
    ec2_fail(r, err);
}

/* ---- DeleteSecurityGroup ---- */

/* 0 unused, 1 in use (err says how), -1 error. */
static int group_in_use(struct db *db, const struct sg_group *g,
                        struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db,
        "SELECT (SELECT ig.instance FROM instance_groups ig JOIN instances i"
        " ON i.id = ig.instance WHERE ig.grp = ?1 AND i.state != 'terminated'"
        " LIMIT 1), (SELECT r.grp FROM sg_rules r WHERE r.ref_group = ?1 AND"
        " r.grp != ?1 LIMIT 1)",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, g->id, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "checking security group use", err);
    char inst[32] = "", grp[32] = "";
    if (rc == 0) {
        clc_col(inst, sizeof(inst), st, 0);
        clc_col(grp, sizeof(grp), st, 1);
    }
    db_stmt_done(st);
    if (rc < 0)
        return -1;
    if (*inst || *grp) {
        error_set(err, EBUSY, "DependencyViolation",
                  "resource %s has a dependent object (%s %s)", g->id,
                  *inst ? "instance" : "security group", *inst ? inst : grp);
        return 1;
    }
    return 0;
}

void ec2_delete_security_group(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct sg_group g;
    if (clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, &err) < 0 ||
        db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    if (clc_sg_from_request(r, &g, &err) < 0)
        goto fail;
    if (strcmp(g.name, "default") == 0) {
        error_set(&err, EINVAL, "CannotDelete",
                  "the specified group: \"%s\" name: \"default\" cannot be "
                  "deleted by a user",
                  g.id);
        goto fail;
    }
    if (group_in_use(r->db, &g, &err) != 0)
        goto fail;
    if (ec2_dry_run(r)) {
        db_rollback(r->db);
        return;
    }
    if (clc_exec(r->db,
                 "DELETE FROM tags WHERE resource_id = ?1 OR resource_id IN"
                 " (SELECT id FROM sg_rules WHERE grp = ?1)",
                 "deleting tags", &err, g.id, NULL) < 0 ||
        clc_exec(r->db, "DELETE FROM sg_rules WHERE grp = ?", "deleting rules",
                 &err, g.id, NULL) < 0 ||
        clc_exec(r->db, "DELETE FROM instance_groups WHERE grp = ?",
                 "deleting memberships", &err, g.id, NULL) < 0 ||
        clc_exec(r->db, "DELETE FROM security_groups WHERE id = ?",
                 "deleting security group", &err, g.id, NULL) < 0 ||
        db_commit(r->db, &err) < 0)
        goto fail;
    clc_netpolicy_kick(r->clc);
    struct xml_writer *w = ec2_reply_start(r, "DeleteSecurityGroup");
    xml_bool_element(w, "return", true);
    xml_text_element(w, "groupId", g.id);
    ec2_reply_finish(r, w);
    return;
fail:
    db_rollback(r->db);
    ec2_fail(r, err);
}

/* ---- DescribeSecurityGroups ---- */

static bool group_wanted(struct ec2_req *r, const struct sg_group *g,
                         const struct sg_rule *rules, size_t n,
                         const struct ec2_filters *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        const struct ec2_filter *f = &fs->f[i];
        const char *name = f->name;
        bool ok = false;
        if (ec2_is_tag_filter(name)) {
            ok = ec2_tag_filter(r, g->id, f);
        } else if (str_has_prefix(name, "ip-permission.") ||
                   str_has_prefix(name, "egress.ip-permission.")) {
            bool egress = str_has_prefix(name, "egress.");
            const char *what = strchr(name, '.') + 1;
            if (egress)
                what = strchr(what, '.') + 1;
            for (size_t k = 0; k < n && !ok; k++)
                ok = rules[k].egress == egress &&
                     sg_rule_filter(&rules[k], what, f);
        } else {
            const char *v = strcmp(name, "group-name") == 0    ? g->name
                            : strcmp(name, "group-id") == 0    ? g->id
                            : strcmp(name, "owner-id") == 0    ? g->owner_number
                            : strcmp(name, "description") == 0 ? g->description
                            : strcmp(name, "vpc-id") == 0      ? g->vpc
                                                               : "";
            ok = ec2_filter_match(f, v);
        }
        if (!ok)
            return false;
    }
    return true;
}

static int write_group(struct ec2_req *r, struct xml_writer *w,
                       const struct sg_group *g, const struct sg_rule *rules,
                       size_t n, struct koala_error **err)
{
    xml_start(w, "item");
    xml_text_element(w, "ownerId", g->owner_number);
    xml_text_element(w, "groupId", g->id);
    xml_text_element(w, "groupName", g->name);
    xml_text_element(w, "groupDescription", g->description);
    xml_text_element(w, "vpcId", g->vpc);
    sg_write_permissions(w, "ipPermissions", rules, n, false);
    sg_write_permissions(w, "ipPermissionsEgress", rules, n, true);
    int rc = ec2_write_tag_set(r, w, g->id, err);
    xml_end(w);
    return rc;
}

/* The named groups (GroupId.N, GroupName.N) must all be the caller's. */
static int check_named(struct ec2_req *r, const struct ec2_id_list *ids,
                       const char **names, size_t n_names,
                       struct koala_error **err)
{
    struct sg_group g;
    for (size_t i = 0; i < ids->n; i++)
        if (clc_sg_get(r->db, r->who.id, ids->v[i], &g, err) < 0)
            return -1;
    for (size_t i = 0; i < n_names; i++)
        if (clc_sg_by_name(r->db, r->who.id, NULL, names[i], &g, err) < 0)
            return -1;
    return 0;
}

void ec2_describe_security_groups(struct ec2_req *r)
{
    static const char *const known[] = {
        "group-name",
        "group-id",
        "owner-id",
        "description",
        "vpc-id",
        "ip-permission.protocol",
        "ip-permission.from-port",
        "ip-permission.to-port",
        "ip-permission.cidr",
        "ip-permission.group-id",
        "ip-permission.group-name",
        "ip-permission.user-id",
        "egress.ip-permission.protocol",
        "egress.ip-permission.from-port",
        "egress.ip-permission.to-port",
        "egress.ip-permission.cidr",
        "egress.ip-permission.group-id",
        "egress.ip-permission.group-name",
        "egress.ip-permission.user-id",
        "tag-key",
        "tag-value",
        NULL,
    };
    struct koala_error *err = NULL;
    struct ec2_filters fs;
    struct ec2_id_list ids = {0};
    const char **names = NULL;
    size_t n_names = 0;
    long long max;
    char after[32];
    struct xml_writer *w = NULL;
    sqlite3_stmt *st = NULL;
    struct sg_group *groups = NULL;
    size_t n = 0, cap = 0;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    n_names = ec2_param_list(r, "GroupName", &names);
    if (ec2_id_list_get(r, "GroupId", &ids, &err) < 0 ||
        clc_sg_page_args(r, "sg-", &max, after, &err) < 0 ||
        clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, &err) < 0 ||
        check_named(r, &ids, names, n_names, &err) < 0 || ec2_dry_run(r))
        goto out;
    st = db_stmt(r->db,
                 "SELECT " GROUP_COLS " FROM security_groups g JOIN accounts a"
                 " ON a.id = g.owner WHERE g.owner = ? AND g.id > ?"
                 " ORDER BY g.id",
                 &err);
    if (st == NULL)
        goto out;
    sqlite3_bind_int64(st, 1, r->who.id);
    sqlite3_bind_text(st, 2, after, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct sg_group *ng = realloc(groups, cap * sizeof(*ng));
            if (ng == NULL) {
                error_set(&err, ENOMEM, NULL, "out of memory");
                goto out;
            }
            groups = ng;
        }
        read_group(st, 0, &groups[n++]);
    }
    db_stmt_done(st);
    st = NULL;
    w = ec2_reply_start(r, "DescribeSecurityGroups");
    xml_start(w, "securityGroupInfo");
    long long shown = 0;
    const char *last = NULL;
    bool more = false;
    for (size_t i = 0; i < n && err == NULL; i++) {
        const struct sg_group *g = &groups[i];
        if (ids.n || n_names) {
            bool named = ec2_id_list_has(&ids, g->id);
            for (size_t k = 0; k < n_names; k++)
                named |= strcmp(names[k], g->name) == 0;
            if (!named)
                continue;
        }
        struct sg_rule *rules = NULL;
        size_t n_rules = 0;
        if (sg_rules_load(r->db, -1, g->id, NULL, false, &rules, &n_rules,
                          &err) < 0)
            break;
        if (group_wanted(r, g, rules, n_rules, &fs)) {
            if (max && shown == max) {
                more = true;
                free(rules);
                break;
            }
            write_group(r, w, g, rules, n_rules, &err);
            last = g->id;
            shown++;
        }
        free(rules);
    }
    xml_end(w);
    if (more && last)
        clc_sg_page_token(w, last);
out:
    if (st)
        db_stmt_done(st);
    free(groups);
    free(names);
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}
