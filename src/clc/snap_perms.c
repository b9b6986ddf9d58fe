/* snap_perms.c: a snapshot's createVolumePermission (DescribeSnapshot-
 * Attribute, ModifySnapshotAttribute in its flat and structured forms,
 * ResetSnapshotAttribute): the accounts (or the group `all`) that may see
 * the snapshot and create volumes from it (snapshots.c).  Only its owner
 * reads or changes them. */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebs.h"

/* ---- snapshot attributes: createVolumePermission ---- */

static int attribute_name(struct ec2_req *r, const char **out,
                          struct koala_error **err)
{
    const char *a = ec2_required(r, "Attribute", err);
    if (a == NULL)
        return -1;
    if (strcmp(a, "createVolumePermission") != 0 &&
        strcmp(a, "productCodes") != 0) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", a);
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Value (%s) for parameter attribute is invalid. "
                         "Unknown attribute.",
                         shown);
    }
    *out = a;
    return 0;
}

void ec2_describe_snapshot_attribute(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *attr;
    const char *sid = ec2_param(r, "SnapshotId");
    if (attribute_name(r, &attr, &err) < 0 ||
        clc_snapshot_own(r->db, r->who.id, sid, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r))
        return;
    struct xml_writer *w = ec2_reply_start(r, "DescribeSnapshotAttribute");
    xml_text_element(w, "snapshotId", sid);
    xml_start(w, attr);
    if (strcmp(attr, "createVolumePermission") == 0) {
        sqlite3_stmt *st = db_stmt(r->db,
                                   "SELECT grantee FROM snapshot_perms WHERE"
                                   " snapshot_id = ? ORDER BY grantee",
                                   &err);
        if (st) {
            sqlite3_bind_text(st, 1, sid, -1, SQLITE_STATIC);
            while (sqlite3_step(st) == SQLITE_ROW) {
                const char *g = (const char *)sqlite3_column_text(st, 0);
                xml_start(w, "item");
                xml_text_element(w, strcmp(g, "all") == 0 ? "group" : "userId",
                                 g);
                xml_end(w);
            }
            db_stmt_done(st);
        }
    }
    xml_end(w);
    ec2_reply_end(r, w, err);
}

/* One grantee: an account number, or the group "all". */
static int check_grantee(const char *g, bool group, struct koala_error **err)
{
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", g);
    if (group ? strcmp(g, "all") == 0
              : strlen(g) == 12 && strspn(g, "0123456789") == 12)
        return 0;
    return error_set(err, EINVAL,
                     group ? "InvalidParameterValue" : "InvalidUserID.Malformed",
                     group ? "The group '%s' is not 'all'"
                           : "The user ID '%s' is not an account number",
                     shown);
}

/* Adds (add) or removes the grantees named by prefix ("UserId",
 * "CreateVolumePermission.Add.%zu.UserId" ...). */
static int change_perms(struct ec2_req *r, const char *snap, bool add,
                        const char *const *v, size_t n, bool group,
                        struct koala_error **err)
{
    for (size_t i = 0; i < n; i++) {
        if (check_grantee(v[i], group, err) < 0 ||
            clc_exec(r->db,
                     add ? "INSERT OR IGNORE INTO snapshot_perms (snapshot_id,"
                           " grantee) VALUES (?, ?)"
                         : "DELETE FROM snapshot_perms WHERE snapshot_id = ?"
                           " AND grantee = ?",
                     "changing permissions", err, snap, v[i], NULL) < 0)
            return -1;
    }
    return 0;
}

/* The structured form's members (CreateVolumePermission.Add.N.UserId). */
static size_t structured(struct ec2_req *r, const char *op, const char *field,
                         const char ***out)
{
    const char **v = NULL;
    size_t n = 0;
    for (int i = 1; i <= EC2_MAX_MEMBERS; i++) {
        const char *x = ec2_paramf(r, "CreateVolumePermission.%s.%d.%s", op,
                                   i, field);
        if (x == NULL) {
            if (ec2_paramf(r, "CreateVolumePermission.%s.%d.%s", op, i,
                           strcmp(field, "UserId") == 0 ? "Group"
                                                        : "UserId") == NULL)
                break;
            continue;
        }
        const char **nv = realloc(v, (n + 1) * sizeof(*v));
        if (nv == NULL)
            break;
        v = nv;
        v[n++] = x;
    }
    *out = v;
    return n;
}

void ec2_modify_snapshot_attribute(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *attr = ec2_param(r, "Attribute");
    const char *op = ec2_param(r, "OperationType");
    const char **users = NULL, **groups = NULL, **add_u = NULL,
               **add_g = NULL, **rm_u = NULL, **rm_g = NULL;
    size_t n_users = ec2_param_list(r, "UserId", &users);
    size_t n_groups = ec2_param_list(r, "UserGroup", &groups);
    size_t n_add_u = structured(r, "Add", "UserId", &add_u);
    size_t n_add_g = structured(r, "Add", "Group", &add_g);
    size_t n_rm_u = structured(r, "Remove", "UserId", &rm_u);
    size_t n_rm_g = structured(r, "Remove", "Group", &rm_g);
    const char *sid = ec2_param(r, "SnapshotId");
    if (clc_snapshot_own(r->db, r->who.id, sid, &err) < 0)
        goto out;
    if (attr && strcmp(attr, "createVolumePermission") != 0) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", attr);
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Value (%s) for parameter attribute is invalid. Only "
                  "createVolumePermission can be modified.",
                  shown);
        goto out;
    }
    if ((n_users || n_groups) &&
        (op == NULL || (strcmp(op, "add") != 0 && strcmp(op, "remove") != 0))) {
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "OperationType is 'add' or 'remove'");
        goto out;
    }
    if (!n_users && !n_groups && !n_add_u && !n_add_g && !n_rm_u && !n_rm_g) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must name users or groups to add or remove");
        goto out;
    }
    if (ec2_dry_run(r) || db_begin(r->db, &err) < 0)
        goto out;
    bool add = op && strcmp(op, "add") == 0;
    if (change_perms(r, sid, add, users, n_users, false, &err) < 0 ||
        change_perms(r, sid, add, groups, n_groups, true, &err) < 0 ||
        change_perms(r, sid, true, add_u, n_add_u, false, &err) < 0 ||
        change_perms(r, sid, true, add_g, n_add_g, true, &err) < 0 ||
        change_perms(r, sid, false, rm_u, n_rm_u, false, &err) < 0 ||
        change_perms(r, sid, false, rm_g, n_rm_g, true, &err) < 0 ||
        db_commit(r->db, &err) < 0) {
        db_rollback(r->db);
        goto out;
    }
    struct xml_writer *w = ec2_reply_start(r, "ModifySnapshotAttribute");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
out:
    free(users);
    free(groups);
    free(add_u);
    free(add_g);
    free(rm_u);
    free(rm_g);
    if (err)
        ec2_fail(r, err);
}

void ec2_reset_snapshot_attribute(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    const char *attr;
    const char *sid = ec2_param(r, "SnapshotId");
    if (attribute_name(r, &attr, &err) < 0 ||
        clc_snapshot_own(r->db, r->who.id, sid, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r))
        return;
    if (clc_exec(r->db, "DELETE FROM snapshot_perms WHERE snapshot_id = ?",
                 "resetting permissions", &err, sid, NULL) < 0)
        return ec2_fail(r, err);
    struct xml_writer *w = ec2_reply_start(r, "ResetSnapshotAttribute");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
}
