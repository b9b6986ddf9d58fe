/* tags.c: tags on instances, images, key pairs, VPCs, subnets and elastic
 * IPs (their allocation ids): CreateTags,
 * DeleteTags, DescribeTags, the TagSpecifications of the create calls, the
 * <tagSet> of descriptions, and the tag:K / tag-key / tag-value filters. */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"

#define MAX_TAGS 50

/* The resource type of an id, and whether the caller owns it. */
static const char *resource_type(const char *id)
{
    if (str_has_prefix(id, "i-"))
        return "instance";
    if (str_has_prefix(id, "ami-") || str_has_prefix(id, "aki-") ||
        str_has_prefix(id, "ari-"))
        return "image";
    if (str_has_prefix(id, "key-"))
        return "key-pair";
    if (str_has_prefix(id, "vpc-"))
        return "vpc";
    if (str_has_prefix(id, "subnet-"))
        return "subnet";
    if (str_has_prefix(id, "sg-"))
        return "security-group";
    if (str_has_prefix(id, "sgr-"))
        return "security-group-rule";
    if (str_has_prefix(id, "eipalloc-"))
        return "elastic-ip";
    if (str_has_prefix(id, "vol-"))
        return "volume";
    if (str_has_prefix(id, "snap-"))
        return "snapshot";
    return NULL;
}

static int owns(struct ec2_req *r, const char *id, const char *type,
                struct koala_error **err)
{
    const char *sql =
        strcmp(type, "instance") == 0
            ? "SELECT 1 FROM instances WHERE id = ? AND owner = ?"
        : strcmp(type, "image") == 0
            ? "SELECT 1 FROM images WHERE id = ? AND owner = ? AND"
              " state != 'deregistered'"
        : strcmp(type, "vpc") == 0
            ? "SELECT 1 FROM vpcs WHERE id = ? AND owner = ?"
        : strcmp(type, "subnet") == 0
            ? "SELECT 1 FROM subnets WHERE id = ? AND owner = ?"
        : strcmp(type, "security-group") == 0
            ? "SELECT 1 FROM security_groups WHERE id = ? AND owner = ?"
        : strcmp(type, "security-group-rule") == 0
            ? "SELECT 1 FROM sg_rules r JOIN security_groups g ON"
              " g.id = r.grp WHERE r.id = ? AND g.owner = ?"
        : strcmp(type, "elastic-ip") == 0
            ? "SELECT 1 FROM addresses WHERE allocation_id = ? AND owner = ?"
        : strcmp(type, "volume") == 0
            ? "SELECT 1 FROM volumes WHERE id = ? AND owner = ? AND"
              " state NOT IN ('deleting', 'deleted')"
        : strcmp(type, "snapshot") == 0
            ? "SELECT 1 FROM snapshots WHERE id = ? AND owner = ?"
            : "SELECT 1 FROM keypairs WHERE id = ? AND owner = ?";
    sqlite3_stmt *st = db_stmt(r->db, sql, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->who.id);
    int rc = db_step_row(r->db, st, "looking up resource", err);
    db_stmt_done(st);
    if (rc == 1)
        return error_set(
            err, ENOENT,
            strcmp(type, "instance") == 0     ? "InvalidInstanceID.NotFound"
            : strcmp(type, "image") == 0      ? "InvalidAMIID.NotFound"
            : strcmp(type, "vpc") == 0        ? "InvalidVpcID.NotFound"
            : strcmp(type, "subnet") == 0     ? "InvalidSubnetID.NotFound"
            : strcmp(type, "security-group") == 0 ? "InvalidGroup.NotFound"
            : strcmp(type, "security-group-rule") == 0
                ? "InvalidSecurityGroupRuleId.NotFound"
            : strcmp(type, "elastic-ip") == 0 ? "InvalidAllocationID.NotFound"
            : strcmp(type, "volume") == 0     ? "InvalidVolume.NotFound"
            : strcmp(type, "snapshot") == 0   ? "InvalidSnapshot.NotFound"
                                              : "InvalidKeyPair.NotFound",
            "The ID '%s' does not exist", id);
    return rc;
}

static int check_tag(const char *key, const char *value,
                     struct koala_error **err)
{
    /* EC2 counts characters, not bytes */
    if (key == NULL || *key == '\0' || !str_valid_utf8(key, strlen(key)) ||
        str_utf8_chars(key) > 128)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Tag keys are 1 to 128 UTF-8 characters");
    if (str_has_prefix(key, "aws:"))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Tag keys starting with 'aws:' are reserved");
    if (value &&
        (!str_valid_utf8(value, strlen(value)) || str_utf8_chars(value) > 256))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "Tag values are at most 256 UTF-8 characters");
    return 0;
}

static int count_tags(struct ec2_req *r, const char *id, long *n,
                      struct koala_error **err)
{
    sqlite3_stmt *st =
        db_stmt(r->db, "SELECT count(*) FROM tags WHERE resource_id = ?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_step(st);
    *n = (long)sqlite3_column_int64(st, 0);
    db_stmt_done(st);
    return 0;
}

static int put_tag(struct ec2_req *r, const char *id, const char *type,
                   const char *key, const char *value, struct koala_error **err)
{
    char owner[24];
    snprintf(owner, sizeof(owner), CLC_INT "%lld", (long long)r->who.id);
    if (clc_exec(r->db,
                 "INSERT INTO tags(resource_id, resource_type, owner, key,"
                 " value) VALUES(?,?,?,?,?) ON CONFLICT(resource_id, key)"
                 " DO UPDATE SET value = excluded.value",
                 "storing tag", err, id, type, owner, key, value ? value : "",
                 NULL) < 0)
        return -1;
    long n;
    if (count_tags(r, id, &n, err) < 0)
        return -1;
    if (n > MAX_TAGS)
        return error_set(err, EINVAL, "TagLimitExceeded",
                         "The maximum number of tags per resource (%d) was "
                         "exceeded for %s",
                         MAX_TAGS, id);
    return 0;
}

/* A DescribeTags token: a resource id (up to 64 bytes), a tab, a key (up
 * to 128 characters of up to 4 bytes). */
#define TAG_TOKEN_MAX (64 + 1 + 4 * 128)

int ec2_check_tag_specs(struct ec2_req *r, const char *const *types,
                        struct koala_error **err)
{
    for (int i = 1;; i++) {
        const char *type = ec2_paramf(r, "TagSpecification.%d.ResourceType", i);
        if (type == NULL)
            return 0;
        bool ok = false;
        for (const char *const *t = types; *t; t++)
            ok |= strcmp(*t, type) == 0;
        if (!ok)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "'%s' is not a valid taggable resource type for "
                             "this operation.",
                             type);
        for (int j = 1;; j++) {
            const char *k =
                ec2_paramf(r, "TagSpecification.%d.Tag.%d.Key", i, j);
            if (k == NULL)
                break;
            if (check_tag(
                    k, ec2_paramf(r, "TagSpecification.%d.Tag.%d.Value", i, j),
                    err) < 0)
                return -1;
        }
    }
}

int ec2_tag_specs_each(struct ec2_req *r, const char *resource_type_name,
                       ec2_tag_fn fn, void *ctx, struct koala_error **err)
{
    for (int i = 1;; i++) {
        const char *type = ec2_paramf(r, "TagSpecification.%d.ResourceType", i);
        if (type == NULL)
            return 0;
        if (strcmp(type, resource_type_name) != 0)
            continue;
        for (int j = 1;; j++) {
            const char *k =
                ec2_paramf(r, "TagSpecification.%d.Tag.%d.Key", i, j);
            if (k == NULL)
                break;
            const char *v =
                ec2_paramf(r, "TagSpecification.%d.Tag.%d.Value", i, j);
            if (fn(r, ctx, k, v, err) < 0)
                return -1;
        }
    }
}

struct apply_ctx {
    const char *type, *id;
};

static int apply_one(struct ec2_req *r, void *ctx, const char *key,
                     const char *value, struct koala_error **err)
{
    struct apply_ctx *a = ctx;
    return put_tag(r, a->id, a->type, key, value, err);
}

int ec2_apply_tag_specs(struct ec2_req *r, const char *resource_type_name,
                        const char *id, struct koala_error **err)
{
    struct apply_ctx a = {resource_type_name, id};
    return ec2_tag_specs_each(r, resource_type_name, apply_one, &a, err);
}

int ec2_write_tag_set(struct ec2_req *r, struct xml_writer *w,
                      const char *resource_id, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        r->db, "SELECT key, value FROM tags WHERE resource_id = ? ORDER BY key",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, resource_id, -1, SQLITE_STATIC);
    xml_start(w, "tagSet");
    while (sqlite3_step(st) == SQLITE_ROW) {
        xml_start(w, "item");
        xml_text_element(w, "key", (const char *)sqlite3_column_text(st, 0));
        xml_text_element(w, "value", (const char *)sqlite3_column_text(st, 1));
        xml_end(w);
    }
    xml_end(w);
    db_stmt_done(st);
    return 0;
}

bool ec2_tag_filter(struct ec2_req *r, const char *resource_id,
                    const struct ec2_filter *f)
{
    bool by_key = str_has_prefix(f->name, "tag:");
    bool key_only = strcmp(f->name, "tag-key") == 0;
    sqlite3_stmt *st = db_stmt(
        r->db, "SELECT key, value FROM tags WHERE resource_id = ?", NULL);
    if (st == NULL)
        return false;
    sqlite3_bind_text(st, 1, resource_id, -1, SQLITE_STATIC);
    bool match = false;
    while (!match && sqlite3_step(st) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const char *v = (const char *)sqlite3_column_text(st, 1);
        if (by_key)
            match = strcmp(k, f->name + 4) == 0 && ec2_filter_match(f, v);
        else
            match = ec2_filter_match(f, key_only ? k : v);
    }
    db_stmt_done(st);
    return match;
}

/* ---- CreateTags / DeleteTags / DescribeTags ---- */

static int tag_request(struct ec2_req *r, bool create, struct koala_error **err)
{
    const char **ids = NULL;
    size_t n = ec2_param_list(r, "ResourceId", &ids);
    int rc = -1;
    if (n == 0) {
        error_set(err, EINVAL, "MissingParameter",
                  "The request must contain the parameter ResourceId");
        goto out;
    }
    if (create && ec2_param(r, "Tag.1.Key") == NULL) {
        error_set(err, EINVAL, "MissingParameter",
                  "The request must contain the parameter Tag");
        goto out;
    }
    for (int j = 1;; j++) {
        const char *k = ec2_paramf(r, "Tag.%d.Key", j);
        if (k == NULL)
            break;
        if (check_tag(k, ec2_paramf(r, "Tag.%d.Value", j), err) < 0)
            goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *type = resource_type(ids[i]);
        if (type == NULL) {
            error_set(err, EINVAL, "InvalidID", "The ID '%s' is not valid",
                      ids[i]);
            goto out;
        }
        if (owns(r, ids[i], type, err) < 0)
            goto out;
    }
    if (r->dry_run) {
        rc = 0;
        goto out;
    }
    if (db_begin(r->db, err) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const char *type = resource_type(ids[i]);
        for (int j = 1;; j++) {
            const char *k = ec2_paramf(r, "Tag.%d.Key", j);
            const char *v = ec2_paramf(r, "Tag.%d.Value", j);
            if (k == NULL)
                break;
            int x;
            if (create)
                x = put_tag(r, ids[i], type, k, v, err);
            else if (v)
                x = clc_exec(r->db,
                             "DELETE FROM tags WHERE resource_id = ? AND"
                             " key = ? AND value = ?",
                             "deleting tag", err, ids[i], k, v, NULL);
            else
                x = clc_exec(r->db,
                             "DELETE FROM tags WHERE resource_id = ? AND"
                             " key = ?",
                             "deleting tag", err, ids[i], k, NULL);
            if (x < 0) {
                db_rollback(r->db);
                goto out;
            }
        }
        /* DeleteTags without any Tag removes all of them. */
        if (!create && ec2_param(r, "Tag.1.Key") == NULL &&
            clc_exec(r->db, "DELETE FROM tags WHERE resource_id = ?",
                     "deleting tags", err, ids[i], NULL) < 0) {
            db_rollback(r->db);
            goto out;
        }
    }
    rc = db_commit(r->db, err);
out:
    free(ids);
    return rc;
}

void ec2_create_tags(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    if (tag_request(r, true, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r))
        return;
    struct xml_writer *w = ec2_reply_start(r, "CreateTags");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
}

void ec2_delete_tags(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    if (tag_request(r, false, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_dry_run(r))
        return;
    struct xml_writer *w = ec2_reply_start(r, "DeleteTags");
    xml_bool_element(w, "return", true);
    ec2_reply_finish(r, w);
}

void ec2_describe_tags(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    static const char *const known[] = {"key", "value", "resource-id",
                                        "resource-type", NULL};
    struct ec2_filters fs;
    long long max;
    if (ec2_parse_filters(r, known, &fs, &err) < 0)
        return ec2_fail(r, err);
    if (ec2_param_int(r, "MaxResults", 1000, 5, 1000, &max, &err) < 0) {
        ec2_filters_free(&fs);
        return ec2_fail(r, err);
    }
    const char *token = ec2_param(r, "NextToken");
    if (ec2_dry_run(r)) {
        ec2_filters_free(&fs);
        return;
    }
    /* The token is the last (resource, key) seen, as "id\tkey". */
    _cleanup_free_ char *after_id = NULL;
    const char *after_key = "";
    if (token) {
        /* a resource id (up to 64) and a key (up to 128 characters) */
        after_id = str_base64_decode_text(token, TAG_TOKEN_MAX);
        char *tab = after_id ? strchr(after_id, '\t') : NULL;
        if (tab == NULL || tab - after_id > 64 || tab == after_id) {
            ec2_filters_free(&fs);
            error_set(&err, EINVAL, "InvalidNextToken",
                      "The token '%s' is not valid", token);
            return ec2_fail(r, err);
        }
        *tab = '\0';
        after_key = tab + 1;
    }
    sqlite3_stmt *st =
        db_stmt(r->db,
                "SELECT resource_id, resource_type, key, value FROM tags"
                " WHERE owner = ? AND (resource_id > ?2 OR (resource_id = ?2"
                " AND key > ?3)) ORDER BY resource_id, key",
                &err);
    if (st == NULL) {
        ec2_filters_free(&fs);
        return ec2_fail(r, err);
    }
    sqlite3_bind_int64(st, 1, r->who.id);
    sqlite3_bind_text(st, 2, after_id ? after_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, after_key, -1, SQLITE_STATIC);
    struct xml_writer *w = ec2_reply_start(r, "DescribeTags");
    xml_start(w, "tagSet");
    long long n = 0;
    char last[TAG_TOKEN_MAX + 1] = "";
    bool more = false;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *cols[4];
        for (int i = 0; i < 4; i++)
            cols[i] = (const char *)sqlite3_column_text(st, i);
        bool wanted = true;
        for (size_t i = 0; wanted && i < fs.n; i++) {
            const char *f = fs.f[i].name;
            int c = strcmp(f, "resource-id") == 0     ? 0
                    : strcmp(f, "resource-type") == 0 ? 1
                    : strcmp(f, "key") == 0           ? 2
                                                      : 3;
            wanted = ec2_filter_match(&fs.f[i], cols[c]);
        }
        if (!wanted)
            continue;
        if (n == max) {
            more = true;
            break;
        }
        xml_start(w, "item");
        xml_text_element(w, "resourceId", cols[0]);
        xml_text_element(w, "resourceType", cols[1]);
        xml_text_element(w, "key", cols[2]);
        xml_text_element(w, "value", cols[3]);
        xml_end(w);
        snprintf(last, sizeof(last), "%s\t%s", cols[0], cols[2]);
        n++;
    }
    db_stmt_done(st);
    xml_end(w);
    if (more) {
        _cleanup_free_ char *t =
            str_base64_encode((const unsigned char *)last, strlen(last));
        xml_text_element(w, "nextToken", t);
    }
    ec2_filters_free(&fs);
    ec2_reply_finish(r, w);
}
