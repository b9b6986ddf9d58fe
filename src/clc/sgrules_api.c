/* sgrules_api.c: the EC2 actions on security group rules:
 * AuthorizeSecurityGroupIngress / Egress, RevokeSecurityGroupIngress /
 * Egress, DescribeSecurityGroupRules and ModifySecurityGroupRules (the
 * rules themselves, their parsing and their XML: sgrules.c).
 *
 * DESIGN: each action is one transaction, all or nothing: a duplicate
 * (InvalidPermission.Duplicate, from the unique index over the normalized
 * rule), a rule over the quota (counted after the inserts), or a rule to
 * revoke that does not exist (InvalidPermission.NotFound) rolls back
 * everything the request did.  A committed change kicks the network
 * policy push (its version was bumped by the triggers in the transaction).
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"
#include "secgroups.h"

/* ---- Authorize ---- */

static void authorize(struct ec2_req *r, bool egress)
{
    static const char *const tag_types[] = {"security-group-rule", NULL};
    const char *action = egress ? "AuthorizeSecurityGroupEgress"
                                : "AuthorizeSecurityGroupIngress";
    struct koala_error *err = NULL;
    struct sg_group g;
    struct sg_rule *rules = NULL;
    size_t n = 0;
    if (clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, &err) < 0 ||
        ec2_check_tag_specs(r, tag_types, &err) < 0)
        return ec2_fail(r, err);
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    if (clc_sg_from_request(r, &g, &err) < 0 ||
        sg_rules_parse(r, &g, egress, &rules, &n, &err) < 0)
        goto fail;
    if (ec2_dry_run(r)) {
        db_rollback(r->db);
        free(rules);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (sg_rule_insert(r->db, &rules[i], &err) < 0 ||
            ec2_apply_tag_specs(r, "security-group-rule", rules[i].id, &err) <
                0)
            goto fail;
    if (sg_rules_check_limit(r->db, g.id, egress, &err) < 0 ||
        db_commit(r->db, &err) < 0)
        goto fail;
    clc_netpolicy_kick(r->clc);
    struct xml_writer *w = ec2_reply_start(r, action);
    xml_bool_element(w, "return", true);
    xml_start(w, "securityGroupRuleSet");
    for (size_t i = 0; i < n && err == NULL; i++)
        sg_write_rule(r, w, &rules[i], &err);
    xml_end(w);
    free(rules);
    ec2_reply_end(r, w, err);
    return;
fail:
    db_rollback(r->db);
    free(rules);
    ec2_fail(r, err);
}

void ec2_authorize_security_group_ingress(struct ec2_req *r)
{
    authorize(r, false);
}

void ec2_authorize_security_group_egress(struct ec2_req *r)
{
    authorize(r, true);
}

/* ---- Revoke ---- */

/* Rows the last statement changed. */
static int changed(struct ec2_req *r)
{
    return sqlite3_changes(db_handle(r->db));
}

static int revoke_rules(struct ec2_req *r, const struct sg_group *g,
                        bool egress, const struct sg_rule *rules, size_t n,
                        struct koala_error **err)
{
    const char *eg = egress ? CLC_INT "1" : CLC_INT "0";
    for (size_t i = 0; i < n; i++) {
        const struct sg_rule *x = &rules[i];
        char from[16], to[16];
        snprintf(from, sizeof(from), CLC_INT "%d", x->from);
        snprintf(to, sizeof(to), CLC_INT "%d", x->to);
        if (clc_exec(r->db,
                     "DELETE FROM tags WHERE resource_id IN (SELECT id FROM"
                     " sg_rules WHERE grp = ? AND egress = ? AND proto = ? AND"
                     " from_port = ? AND to_port = ? AND IFNULL(cidr, '') = ?"
                     " AND IFNULL(ref_group, '') = ?)",
                     "deleting tags", err, g->id, eg, x->proto, from, to,
                     x->cidr, x->ref_group, NULL) < 0)
            return -1;
        if (clc_exec(r->db,
                     "DELETE FROM sg_rules WHERE grp = ? AND egress = ? AND"
                     " proto = ? AND from_port = ? AND to_port = ? AND"
                     " IFNULL(cidr, '') = ? AND IFNULL(ref_group, '') = ?",
                     "revoking rule", err, g->id, eg, x->proto, from, to,
                     x->cidr, x->ref_group, NULL) < 0)
            return -1;
        if (changed(r) == 0)
            return error_set(err, ENOENT, "InvalidPermission.NotFound",
                             "The specified rule does not exist in this "
                             "security group.");
    }
    const char **ids = NULL;
    size_t n_ids = ec2_param_list(r, "SecurityGroupRuleId", &ids);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n_ids; i++) {
        if (!id_resource_valid(ids[i], "sgr-")) {
            rc = error_set(err, EINVAL, "InvalidSecurityGroupRuleId.Malformed",
                           "The security group rule ID '%.40s' is malformed",
                           ids[i]);
            break;
        }
        if (clc_exec(r->db, "DELETE FROM tags WHERE resource_id = ?",
                     "deleting tags", err, ids[i], NULL) < 0) {
            rc = -1;
            break;
        }
        if (clc_exec(r->db,
                     "DELETE FROM sg_rules WHERE id = ? AND grp = ? AND"
                     " egress = ?",
                     "revoking rule", err, ids[i], g->id, eg, NULL) < 0)
            rc = -1;
        else if (changed(r) == 0)
            rc = error_set(err, ENOENT, "InvalidSecurityGroupRuleId.NotFound",
                           "The security group rule ID '%s' does not exist "
                           "in group %s (%s)",
                           ids[i], g->id, egress ? "egress" : "ingress");
    }
    free(ids);
    return rc;
}

static void revoke_perms(struct ec2_req *r, bool egress)
{
    const char *action =
        egress ? "RevokeSecurityGroupEgress" : "RevokeSecurityGroupIngress";
    struct koala_error *err = NULL;
    struct sg_group g;
    struct sg_rule *rules = NULL;
    size_t n = 0;
    if (clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, &err) < 0 ||
        db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    bool by_ids = ec2_param(r, "SecurityGroupRuleId.1") != NULL;
    if (clc_sg_from_request(r, &g, &err) < 0 ||
        ((!by_ids || sg_any_param(r, "IpPermissions.") ||
          ec2_param(r, "IpProtocol")) &&
         sg_rules_parse(r, &g, egress, &rules, &n, &err) < 0))
        goto fail;
    if (ec2_dry_run(r)) {
        db_rollback(r->db);
        free(rules);
        return;
    }
    if (revoke_rules(r, &g, egress, rules, n, &err) < 0 ||
        db_commit(r->db, &err) < 0)
        goto fail;
    free(rules);
    clc_netpolicy_kick(r->clc);
    struct xml_writer *w = ec2_reply_start(r, action);
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
    return;
fail:
    db_rollback(r->db);
    free(rules);
    ec2_fail(r, err);
}

void ec2_revoke_security_group_ingress(struct ec2_req *r)
{
    revoke_perms(r, false);
}

void ec2_revoke_security_group_egress(struct ec2_req *r)
{
    revoke_perms(r, true);
}

/* ---- DescribeSecurityGroupRules ---- */

void ec2_describe_security_group_rules(struct ec2_req *r)
{
    static const char *const known[] = {"group-id", "security-group-rule-id",
                                        "tag-key", "tag-value", NULL};
    struct koala_error *err = NULL;
    struct ec2_filters fs;
    struct ec2_id_list ids = {0};
    struct sg_rule *rules = NULL;
    size_t n = 0;
    long long max;
    char after[32];
    struct xml_writer *w = NULL;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_id_list_get(r, "SecurityGroupRuleId", &ids, &err) < 0 ||
        clc_sg_page_args(r, "sgr-", &max, after, &err) < 0)
        goto out;
    for (size_t i = 0; i < ids.n; i++)
        if (!id_resource_valid(ids.v[i], "sgr-")) {
            error_set(&err, EINVAL, "InvalidSecurityGroupRuleId.Malformed",
                      "The security group rule ID '%.40s' is malformed",
                      ids.v[i]);
            goto out;
        }
    if (clc_vpc_ensure(r->clc, r->db, r->who.id, NULL, &err) < 0 ||
        ec2_dry_run(r) ||
        sg_rules_load(r->db, r->who.id, NULL, after, true, &rules, &n, &err) <
            0)
        goto out;
    w = ec2_reply_start(r, "DescribeSecurityGroupRules");
    xml_start(w, "securityGroupRuleSet");
    long long shown = 0;
    const char *last = NULL;
    bool more = false;
    for (size_t i = 0; i < n && err == NULL; i++) {
        const struct sg_rule *x = &rules[i];
        if (ids.n && !ec2_id_list_has(&ids, x->id))
            continue;
        bool ok = true;
        for (size_t k = 0; ok && k < fs.n; k++) {
            const struct ec2_filter *f = &fs.f[k];
            ok = ec2_is_tag_filter(f->name) ? ec2_tag_filter(r, x->id, f)
                 : strcmp(f->name, "group-id") == 0
                     ? ec2_filter_match(f, x->group)
                     : ec2_filter_match(f, x->id);
        }
        if (!ok)
            continue;
        if (max && shown == max) {
            more = true;
            break;
        }
        sg_write_rule(r, w, x, &err);
        last = x->id;
        shown++;
    }
    xml_end(w);
    if (more && last)
        clc_sg_page_token(w, last);
    const char *missing = ec2_id_list_missing(&ids);
    if (err == NULL && missing && !*after)
        error_set(&err, ENOENT, "InvalidSecurityGroupRuleId.NotFound",
                  "The security group rule ID '%s' does not exist", missing);
out:
    free(rules);
    ec2_id_list_free(&ids);
    ec2_filters_free(&fs);
    ec2_reply_end(r, w, err);
}

/* ---- ModifySecurityGroupRules ---- */

void ec2_modify_security_group_rules(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct sg_group g;
    const char *gid = ec2_required(r, "GroupId", &err);
    if (gid == NULL || db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    if (clc_sg_get(r->db, r->who.id, gid, &g, &err) < 0)
        goto fail;
    int i = 1;
    for (;; i++) {
        const char *id =
            ec2_paramf(r, "SecurityGroupRule.%d.SecurityGroupRuleId", i);
        if (id == NULL)
            break;
        struct sg_rule *cur = NULL;
        size_t n = 0;
        if (sg_rules_load(r->db, r->who.id, g.id, NULL, true, &cur, &n, &err) <
            0)
            goto fail;
        size_t k = 0;
        while (k < n && strcmp(cur[k].id, id) != 0)
            k++;
        struct sg_rule x;
        if (k < n)
            x = cur[k];
        free(cur);
        if (k == n) {
            error_set(&err, ENOENT, "InvalidSecurityGroupRuleId.NotFound",
                      "The security group rule ID '%.40s' does not exist in "
                      "group %s",
                      id, g.id);
            goto fail;
        }
        char from[16], to[16];
        if (sg_rule_modified(r, i, &x, &err) < 0)
            goto fail;
        snprintf(from, sizeof(from), CLC_INT "%d", x.from);
        snprintf(to, sizeof(to), CLC_INT "%d", x.to);
        if (clc_exec(r->db,
                     "UPDATE sg_rules SET proto = ?, from_port = ?,"
                     " to_port = ?, cidr = NULLIF(?, ''),"
                     " ref_group = NULLIF(?, ''), description = ?"
                     " WHERE id = ?",
                     "modifying rule", &err, x.proto, from, to, x.cidr,
                     x.ref_group, x.description, x.id, NULL) < 0) {
            if (err->errnum == EEXIST) {
                error_free(err);
                err = NULL;
                error_set(&err, EEXIST, "InvalidPermission.Duplicate",
                          "the rule %s would duplicate another rule", x.id);
            }
            goto fail;
        }
    }
    if (i == 1) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must contain the parameter SecurityGroupRule");
        goto fail;
    }
    if (ec2_dry_run(r)) {
        db_rollback(r->db);
        return;
    }
    if (db_commit(r->db, &err) < 0)
        goto fail;
    clc_netpolicy_kick(r->clc);
    struct xml_writer *w = ec2_reply_start(r, "ModifySecurityGroupRules");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
    return;
fail:
    db_rollback(r->db);
    ec2_fail(r, err);
}
