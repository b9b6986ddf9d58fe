/* image_attrs.c: an image's attributes (DescribeImageAttribute,
 * ModifyImageAttribute in its structured and legacy forms,
 * ResetImageAttribute) and its launch permissions: the group `all`
 * (images.public) and the accounts it is shared with (image_launch_perms,
 * by account number, as snapshot_perms: an account that does not exist
 * yet may be named).  Whoever may see an image reads its attributes; only
 * its owner reads or changes its launch permissions (AuthFailure for the
 * others, as EC2).  An image the caller may not see, or deregistered, is
 * InvalidAMIID.NotFound.  The accounts an image is shared with see it in
 * DescribeImages and launch it (images.c: clc_image_get). */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clc.h"
#include "ebs.h"
#include "id.h"

struct attr_image {
    char id[32];
    int64_t owner;
    bool public_;
    char kernel_id[32];
    char ramdisk_id[32];
    char description[4 * 255 + 1];
    char root_device_type[16];
};

/* The image id the caller may see (own: that it owns): 0 or -1. */
static int find_image(struct ec2_req *r, const char *id, bool own,
                      struct attr_image *out, struct koala_error **err)
{
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", id);
    if (!id_resource_valid(id, "ami-") && !id_resource_valid(id, "aki-") &&
        !id_resource_valid(id, "ari-"))
        return error_set(err, EINVAL, "InvalidAMIID.Malformed",
                         "Invalid id: \"%s\" (expecting \"ami-...\")", shown);
    sqlite3_stmt *st = db_stmt(
        r->db,
        "SELECT i.owner, i.public, i.kernel_id, i.ramdisk_id, i.description,"
        " i.root_device_type, i.state, EXISTS (SELECT 1 FROM"
        " image_launch_perms p WHERE p.image_id = i.id AND p.account ="
        " (SELECT number FROM accounts WHERE id = ?1)) FROM images i"
        " WHERE i.id = ?2",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, r->who.id);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc = db_step_row(r->db, st, "looking up image", err);
    if (rc == 0) {
        memset(out, 0, sizeof(*out));
        snprintf(out->id, sizeof(out->id), "%s", id);
        out->owner = sqlite3_column_int64(st, 0);
        out->public_ = sqlite3_column_int(st, 1) != 0;
        clc_col(out->kernel_id, sizeof(out->kernel_id), st, 2);
        clc_col(out->ramdisk_id, sizeof(out->ramdisk_id), st, 3);
        clc_col(out->description, sizeof(out->description), st, 4);
        clc_col(out->root_device_type, sizeof(out->root_device_type), st, 5);
        const char *state = (const char *)sqlite3_column_text(st, 6);
        bool mine = out->owner == r->who.id;
        if ((state && strcmp(state, "deregistered") == 0) ||
            !(mine || out->public_ || sqlite3_column_int(st, 7)))
            rc = 1;
        else if (own && !mine)
            rc = error_set(err, EACCES, "AuthFailure",
                           "Not authorized for image:%s", shown);
    }
    db_stmt_done(st);
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidAMIID.NotFound",
                         "The image id '[%s]' does not exist", shown);
    return rc;
}

int clc_image_shared_with(struct db *db, const char *image_id,
                          const char *number, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT 1 FROM image_launch_perms WHERE"
                               " image_id = ? AND account = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, image_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, number, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "looking up launch permissions", err);
    db_stmt_done(st);
    return rc < 0 ? -1 : rc == 0;
}

/* ---- DescribeImageAttribute ---- */

/* EC2's attribute names (ImageAttributeName), as answered. */
static const char *const attr_names[] = {
    "description",      "kernel",           "ramdisk",
    "launchPermission", "productCodes",     "blockDeviceMapping",
    "sriovNetSupport",  "bootMode",         "tpmSupport",
    "uefiData",         "lastLaunchedTime", "imdsSupport",
};

static int unknown_attribute(const char *a, struct koala_error **err)
{
    char shown[80];
    snprintf(shown, sizeof(shown), "%s", a);
    return error_set(err, EINVAL, "InvalidParameterValue",
                     "Value (%s) for parameter attribute is invalid. "
                     "Unknown attribute.",
                     shown);
}

/* An AttributeValue: <name><value>v</value></name>, or <name/> unset. */
static void attr_value(struct xml_writer *w, const char *name, const char *v)
{
    xml_start(w, name);
    if (v && *v)
        xml_text_element(w, "value", v);
    xml_end(w);
}

static int write_launch_permissions(struct ec2_req *r, struct xml_writer *w,
                                    const struct attr_image *im,
                                    struct koala_error **err)
{
    xml_start(w, "launchPermission");
    if (im->public_) {
        xml_start(w, "item");
        xml_text_element(w, "group", "all");
        xml_end(w);
    }
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT account FROM image_launch_perms"
                               " WHERE image_id = ? ORDER BY account",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, im->id, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        xml_start(w, "item");
        xml_text_element(w, "userId", (const char *)sqlite3_column_text(st, 0));
        xml_end(w);
    }
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return error_set(err, EIO, NULL, "reading launch permissions");
    xml_end(w);
    return 0;
}

/* The last launch of the image, for its owner only: when others launch a
 * public or shared image is theirs to know. */
static int write_last_launched(struct ec2_req *r, struct xml_writer *w,
                               const struct attr_image *im,
                               struct koala_error **err)
{
    char t[25] = "";
    if (im->owner == r->who.id) {
        sqlite3_stmt *st = db_stmt(r->db,
                                   "SELECT MAX(launch_time) FROM instances"
                                   " WHERE image_id = ?",
                                   err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, im->id, -1, SQLITE_STATIC);
        int rc = db_step_row(r->db, st, "reading launches", err);
        if (rc == 0 && sqlite3_column_type(st, 0) != SQLITE_NULL)
            ec2_time(sqlite3_column_int64(st, 0), t);
        db_stmt_done(st);
        if (rc < 0)
            return -1;
    }
    attr_value(w, "lastLaunchedTime", t);
    return 0;
}

void ec2_describe_image_attribute(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct xml_writer *w = NULL;
    struct clc_bdms bdms = {0};
    struct attr_image im;
    const char *attr = ec2_required(r, "Attribute", &err);
    const char *id = attr ? ec2_required(r, "ImageId", &err) : NULL;
    const char *name = NULL;
    if (id == NULL)
        goto out;
    for (size_t i = 0; i < ARRAY_SIZE(attr_names) && !name; i++)
        if (strcasecmp(attr, attr_names[i]) == 0)
            name = attr_names[i];
    if (name == NULL) {
        unknown_attribute(attr, &err);
        goto out;
    }
    bool perms = strcmp(name, "launchPermission") == 0;
    if (find_image(r, id, perms, &im, &err) < 0 || ec2_dry_run(r))
        goto out;
    bool ebs = strcmp(im.root_device_type, "ebs") == 0;
    if (strcmp(name, "blockDeviceMapping") == 0 && ebs &&
        clc_image_bdms_load(r->db, im.id, &bdms, &err) < 0)
        goto out;
    w = ec2_reply_start(r, "DescribeImageAttribute");
    xml_text_element(w, "imageId", im.id);
    if (perms) {
        if (write_launch_permissions(r, w, &im, &err) < 0)
            goto out;
    } else if (strcmp(name, "description") == 0)
        attr_value(w, name, im.description);
    else if (strcmp(name, "kernel") == 0)
        attr_value(w, name, im.kernel_id);
    else if (strcmp(name, "ramdisk") == 0)
        attr_value(w, name, im.ramdisk_id);
    else if (strcmp(name, "productCodes") == 0) {
        xml_start(w, name); /* none: there is no marketplace */
        xml_end(w);
    } else if (strcmp(name, "blockDeviceMapping") == 0)
        clc_write_image_bdms(w, &bdms);
    else if (strcmp(name, "lastLaunchedTime") == 0) {
        if (write_last_launched(r, w, &im, &err) < 0)
            goto out;
    } else /* sriovNetSupport, bootMode ...: never set here */
        attr_value(w, name, NULL);
out:
    clc_bdms_free(&bdms);
    ec2_reply_end(r, w, err);
}

/* ---- ModifyImageAttribute ---- */

struct grant {
    const char *who; /* an account number, or a group */
    bool group;
    bool add;
};

struct grants {
    struct grant *v;
    size_t n;
};

static int grant_push(struct grants *g, const char *who, bool group, bool add,
                      struct koala_error **err)
{
    struct grant *nv = realloc(g->v, (g->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    g->v = nv;
    g->v[g->n++] = (struct grant){who, group, add};
    return 0;
}

/* LaunchPermission.Add.N.UserId / .Group (op "Add" or "Remove"). */
static int structured(struct ec2_req *r, const char *op, struct grants *g,
                      struct koala_error **err)
{
    bool add = strcmp(op, "Add") == 0;
    for (int i = 1; i <= EC2_MAX_MEMBERS; i++) {
        const char *u = ec2_paramf(r, "LaunchPermission.%s.%d.UserId", op, i);
        const char *grp = ec2_paramf(r, "LaunchPermission.%s.%d.Group", op, i);
        if (ec2_paramf(r, "LaunchPermission.%s.%d.OrganizationArn", op, i) ||
            ec2_paramf(r, "LaunchPermission.%s.%d.OrganizationalUnitArn", op,
                       i))
            return error_set(err, EINVAL, "UnsupportedOperation",
                             "Images are shared with accounts or all here: "
                             "there are no organizations");
        if (u == NULL && grp == NULL)
            break;
        if ((u && grant_push(g, u, false, add, err) < 0) ||
            (grp && grant_push(g, grp, true, add, err) < 0))
            return -1;
    }
    return 0;
}

/* The legacy form: OperationType with UserId.N and UserGroup.N. */
static int legacy(struct ec2_req *r, struct grants *g, struct koala_error **err)
{
    const char **users = NULL, **groups = NULL;
    size_t n_users = ec2_param_list(r, "UserId", &users);
    size_t n_groups = ec2_param_list(r, "UserGroup", &groups);
    const char *op = ec2_param(r, "OperationType");
    int rc = 0;
    if (n_users + n_groups == 0)
        goto out;
    if (op == NULL) {
        rc = error_set(err, EINVAL, "MissingParameter",
                       "The request must contain the parameter "
                       "OperationType");
        goto out;
    }
    if (strcmp(op, "add") != 0 && strcmp(op, "remove") != 0) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", op);
        rc = error_set(err, EINVAL, "InvalidParameterValue",
                       "Value (%s) for parameter operationType is invalid: "
                       "add or remove",
                       shown);
        goto out;
    }
    bool add = strcmp(op, "add") == 0;
    for (size_t i = 0; i < n_users && rc == 0; i++)
        rc = grant_push(g, users[i], false, add, err);
    for (size_t i = 0; i < n_groups && rc == 0; i++)
        rc = grant_push(g, groups[i], true, add, err);
out:
    free(users);
    free(groups);
    return rc;
}

/* Each grantee: an account number (12 digits), or the group all. */
static int check_grants(const struct grants *g, struct koala_error **err)
{
    for (size_t i = 0; i < g->n; i++) {
        const char *x = g->v[i].who;
        if (g->v[i].group ? strcmp(x, "all") == 0
                          : strlen(x) == 12 && strspn(x, "0123456789") == 12)
            continue;
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", x);
        return error_set(err, EINVAL, "InvalidAMIAttributeItemValue",
                         "Invalid attribute item value \"%s\" for %s item "
                         "type.",
                         shown, g->v[i].group ? "group" : "userId");
    }
    return 0;
}

/* Adds, then removes (EC2's order for one request). */
static int apply_grants(struct ec2_req *r, const char *id,
                        const struct grants *g, struct koala_error **err)
{
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < g->n; i++) {
            const struct grant *x = &g->v[i];
            if (x->add != (pass == 0))
                continue;
            int rc =
                x->group
                    ? clc_exec(r->db,
                               x->add ? "UPDATE images SET public = 1"
                                        " WHERE id = ?"
                                      : "UPDATE images SET public = 0"
                                        " WHERE id = ?",
                               "changing launch permissions", err, id, NULL)
                    : clc_exec(r->db,
                               x->add ? "INSERT OR IGNORE INTO"
                                        " image_launch_perms (image_id,"
                                        " account) VALUES (?, ?)"
                                      : "DELETE FROM image_launch_perms"
                                        " WHERE image_id = ? AND"
                                        " account = ?",
                               "changing launch permissions", err, id, x->who,
                               NULL);
            if (rc < 0)
                return -1;
        }
    return 0;
}

/* Attribute names as clients send them: ec2_ami says "LaunchPermission"
 * and "Description " (with its space). */
static bool attr_is(const char *attr, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(attr, name, n) != 0)
        return false;
    return attr[n + strspn(attr + n, " ")] == '\0';
}

void ec2_modify_image_attribute(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct grants g = {0};
    struct attr_image im;
    const char *id = ec2_required(r, "ImageId", &err);
    const char *attr = ec2_param(r, "Attribute");
    const char *desc = ec2_param(r, "Description.Value");
    if (id == NULL)
        goto out;
    if (attr && !attr_is(attr, "launchPermission") &&
        !attr_is(attr, "description") && !attr_is(attr, "productCodes")) {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(attr_names); i++)
            known |= attr_is(attr, attr_names[i]);
        if (!known)
            unknown_attribute(attr, &err);
        else
            error_set(&err, EINVAL, "InvalidParameterValue",
                      "Only launchPermission, description and productCodes "
                      "are modified by ModifyImageAttribute");
        goto out;
    }
    if (desc == NULL && attr && attr_is(attr, "description"))
        desc = ec2_param(r, "Value");
    if (structured(r, "Add", &g, &err) < 0 ||
        structured(r, "Remove", &g, &err) < 0 || legacy(r, &g, &err) < 0)
        goto out;
    bool codes = ec2_param(r, "ProductCode.1") != NULL;
    int kinds = (g.n > 0) + (desc != NULL) + codes;
    if (find_image(r, id, true, &im, &err) < 0)
        goto out;
    if (kinds == 0) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must contain a launch permission, a "
                  "description or product codes to modify");
        goto out;
    }
    if (kinds > 1 || (attr && !attr_is(attr, g.n    ? "launchPermission"
                                             : desc ? "description"
                                                    : "productCodes"))) {
        error_set(&err, EINVAL, "InvalidParameterCombination",
                  "One attribute is modified at a time: the one Attribute "
                  "names");
        goto out;
    }
    if (codes) {
        error_set(&err, EINVAL, "UnsupportedOperation",
                  "Product codes are AWS Marketplace's: there is none here");
        goto out;
    }
    if (clc_image_name_check(NULL, desc, &err) < 0 ||
        check_grants(&g, &err) < 0 || ec2_dry_run(r))
        goto out;
    if (db_begin(r->db, &err) < 0)
        goto out;
    int rc =
        desc ? clc_exec(r->db, "UPDATE images SET description = ? WHERE id = ?",
                        "changing the description", &err, desc, id, NULL)
             : apply_grants(r, id, &g, &err);
    if (rc < 0 || db_commit(r->db, &err) < 0) {
        db_rollback(r->db);
        goto out;
    }
    struct xml_writer *w = ec2_reply_start(r, "ModifyImageAttribute");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
out:
    free(g.v);
    if (err)
        ec2_fail(r, err);
}

/* ---- ResetImageAttribute ---- */

void ec2_reset_image_attribute(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct attr_image im;
    const char *attr = ec2_required(r, "Attribute", &err);
    const char *id = attr ? ec2_required(r, "ImageId", &err) : NULL;
    if (id == NULL)
        return ec2_fail(r, err);
    if (!attr_is(attr, "launchPermission")) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", attr);
        error_set(&err, EINVAL, "InvalidParameterValue",
                  "Value (%s) for parameter attribute is invalid. Only "
                  "launchPermission can be reset.",
                  shown);
        return ec2_fail(r, err);
    }
    if (find_image(r, id, true, &im, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r))
        return;
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    if (clc_exec(r->db, "DELETE FROM image_launch_perms WHERE image_id = ?",
                 "resetting launch permissions", &err, id, NULL) < 0 ||
        clc_exec(r->db, "UPDATE images SET public = 0 WHERE id = ?",
                 "resetting launch permissions", &err, id, NULL) < 0 ||
        db_commit(r->db, &err) < 0) {
        db_rollback(r->db);
        return ec2_fail(r, err);
    }
    struct xml_writer *w = ec2_reply_start(r, "ResetImageAttribute");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
}
