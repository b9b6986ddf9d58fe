/* bucket_access.c: the bucket settings that decide access besides ACLs:
 * the bucket policy (Put/Get/DeleteBucketPolicy, GetBucketPolicyStatus),
 * PublicAccessBlock (Put/Get/DeletePublicAccessBlock) and Object Ownership
 * (Put/Get/DeleteBucketOwnershipControls), and what those settings do to
 * the ACLs a write asks for (s3_acl_guard, s3_apply_ownership).  They are
 * stored with the bucket (buckets.policy, .pab, .ownership; schema v7);
 * the decisions are authz.c's.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"
#include "walrus.h"
#include "xml.h"

static int malformed_xml(struct koala_error **err)
{
    return error_set(err, EINVAL, "MalformedXML",
                     "The XML you provided was not well-formed or did not "
                     "validate against our published schema");
}

static void reply_empty(struct s3_req *r, unsigned status)
{
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, status);
}

/* UPDATE buckets SET <column>=value; NULL value stores NULL. */
static int store(struct s3_req *r, const char *sql, const char *text,
                 const int64_t *num, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(r->db, sql, err);
    if (st == NULL)
        return -1;
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    else if (num)
        sqlite3_bind_int64(st, 1, *num);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_text(st, 2, r->bucket, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    return rc == SQLITE_DONE ? 0 : db_error(r->db, "updating bucket", err);
}

/* ---- bucket policy ---- */

/* The policy operations are the owner account's (S3: 405 to another
 * account even when a policy lets it, 403 otherwise). */
static int policy_owner(struct s3_req *r, struct bucket_row *b,
                        struct koala_error **err)
{
    if (s3_bucket_access(r, 0, b, err) < 0)
        return -1;
    if (!r->who.anonymous && r->who.account_id == b->owner)
        return 0;
    enum policy_effect e =
        s3_policy_effect(r, b, s3_op_action(r), NULL, NULL, err);
    if ((int)e < 0)
        return -1;
    if (e == POLICY_ALLOW)
        return error_set(err, EPERM, "MethodNotAllowed",
                         "The specified method is not allowed against this "
                         "resource.");
    return error_set(err, EACCES, "AccessDenied", "Access Denied");
}

static int read_policy(struct s3_req *r, char **text,
                       struct koala_error **err)
{
    *text = NULL;
    sqlite3_stmt *st =
        db_stmt(r->db, "SELECT policy FROM buckets WHERE name=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, r->bucket, -1, SQLITE_STATIC);
    int rc = db_step_row(r->db, st, "reading bucket policy", err);
    if (rc == 0) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t && *t && (*text = strdup(t)) == NULL)
            rc = error_set(err, ENOMEM, NULL, "out of memory");
    }
    db_stmt_done(st);
    if (rc == 0 && *text == NULL)
        return error_set(err, ENOENT, "NoSuchBucketPolicy",
                         "The bucket policy does not exist");
    return rc == 0 ? 0 : -1;
}

void s3_put_bucket_policy(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (policy_owner(r, &b, &err) < 0)
        return s3_fail(r, err);
    struct policy *p = policy_parse(r->body.data ? r->body.data : "",
                                    r->body.len, r->bucket, &err);
    if (p == NULL)
        return s3_fail(r, err);
    bool public = policy_is_public(p);
    policy_free(p);
    if (public && (b.pab & PAB_BLOCK_PUBLIC_POLICY)) {
        error_set(&err, EACCES, "AccessDenied",
                  "Access Denied: this bucket's PublicAccessBlock blocks "
                  "public policies");
        return s3_fail(r, err);
    }
    _cleanup_free_ char *text = strndup(r->body.data, r->body.len);
    if (text == NULL || store(r, "UPDATE buckets SET policy=? WHERE name=?",
                              text, NULL, &err) < 0) {
        if (text == NULL)
            error_set(&err, ENOMEM, NULL, "out of memory");
        return s3_fail(r, err);
    }
    reply_empty(r, 204);
}

void s3_get_bucket_policy(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    char *text;
    if (policy_owner(r, &b, &err) < 0 || read_policy(r, &text, &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_take(r->http, 200, "application/json", text, strlen(text));
}

void s3_delete_bucket_policy(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (policy_owner(r, &b, &err) < 0 ||
        store(r, "UPDATE buckets SET policy=? WHERE name=?", "", NULL,
              &err) < 0)
        return s3_fail(r, err);
    reply_empty(r, 204);
}

void s3_get_bucket_policy_status(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    _cleanup_free_ char *text = NULL;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0 ||
        read_policy(r, &text, &err) < 0)
        return s3_fail(r, err);
    struct policy *p = policy_parse(text, strlen(text), r->bucket, &err);
    if (p == NULL)
        return s3_fail(r, err);
    struct xml_writer *x = xml_writer_new("PolicyStatus", S3_XMLNS);
    xml_bool_element(x, "IsPublic", policy_is_public(p));
    policy_free(p);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

/* ---- PublicAccessBlock ---- */

static const struct {
    const char *name;
    unsigned bit;
} pab_fields[] = {
    {"BlockPublicAcls", PAB_BLOCK_PUBLIC_ACLS},
    {"IgnorePublicAcls", PAB_IGNORE_PUBLIC_ACLS},
    {"BlockPublicPolicy", PAB_BLOCK_PUBLIC_POLICY},
    {"RestrictPublicBuckets", PAB_RESTRICT_PUBLIC_BUCKETS},
};

void s3_put_public_access_block(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    _cleanup_xml_doc_ struct xml_doc *doc =
        r->body.len ? xml_parse(r->body.data, r->body.len, WALRUS_MAX_XML_BODY,
                                &err)
                    : NULL;
    if (doc == NULL) {
        if (err == NULL)
            malformed_xml(&err);
        return s3_fail(r, err);
    }
    const struct xml_node *root = xml_root(doc);
    if (strcmp(xml_name(root), "PublicAccessBlockConfiguration") != 0) {
        malformed_xml(&err);
        return s3_fail(r, err);
    }
    int64_t bits = 0;
    for (size_t i = 0; i < ARRAY_SIZE(pab_fields); i++) {
        _cleanup_free_ char *v = xml_child_text(root, pab_fields[i].name);
        if (v == NULL)
            continue;
        str_trim(v);
        if (strcasecmp(v, "true") == 0)
            bits |= pab_fields[i].bit;
        else if (strcasecmp(v, "false") != 0) {
            malformed_xml(&err);
            return s3_fail(r, err);
        }
    }
    if (store(r, "UPDATE buckets SET pab=? WHERE name=?", NULL, &bits,
              &err) < 0)
        return s3_fail(r, err);
    reply_empty(r, 200);
}

void s3_get_public_access_block(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    if (!b.pab_set) {
        error_set(&err, ENOENT, "NoSuchPublicAccessBlockConfiguration",
                  "The public access block configuration was not found");
        return s3_fail(r, err);
    }
    struct xml_writer *x =
        xml_writer_new("PublicAccessBlockConfiguration", S3_XMLNS);
    for (size_t i = 0; i < ARRAY_SIZE(pab_fields); i++)
        xml_bool_element(x, pab_fields[i].name,
                         (b.pab & pab_fields[i].bit) != 0);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

void s3_delete_public_access_block(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0 ||
        store(r, "UPDATE buckets SET pab=? WHERE name=?", NULL, NULL, &err) <
            0)
        return s3_fail(r, err);
    reply_empty(r, 204);
}

/* ---- Object Ownership ---- */

/* Only the owner's own FULL_CONTROL (what BucketOwnerEnforced allows). */
static bool acl_owner_only(const struct acl *acl)
{
    for (size_t i = 0; i < acl->n; i++) {
        const struct acl_grant *g = &acl->grants[i];
        if (g->kind != GRANTEE_USER || strcmp(g->id, acl->owner_id) != 0)
            return false;
    }
    return true;
}

void s3_put_ownership_controls(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    _cleanup_xml_doc_ struct xml_doc *doc =
        r->body.len ? xml_parse(r->body.data, r->body.len, WALRUS_MAX_XML_BODY,
                                &err)
                    : NULL;
    if (doc == NULL) {
        if (err == NULL)
            malformed_xml(&err);
        return s3_fail(r, err);
    }
    const struct xml_node *root = xml_root(doc);
    const struct xml_node *rule = xml_child(root, "Rule");
    _cleanup_free_ char *v = rule ? xml_child_text(rule, "ObjectOwnership")
                                  : NULL;
    if (strcmp(xml_name(root), "OwnershipControls") != 0 || v == NULL ||
        xml_next_child(root, rule, "Rule") != NULL ||
        (strcmp(str_trim(v), "BucketOwnerEnforced") != 0 &&
         strcmp(v, "BucketOwnerPreferred") != 0 &&
         strcmp(v, "ObjectWriter") != 0)) {
        malformed_xml(&err);
        return s3_fail(r, err);
    }
    if (strcmp(v, "BucketOwnerEnforced") == 0 && !acl_owner_only(&b.acl)) {
        error_set(&err, EINVAL, "InvalidBucketAclWithObjectOwnership",
                  "Bucket cannot have ACLs set with ObjectOwnership's "
                  "BucketOwnerEnforced setting");
        return s3_fail(r, err);
    }
    if (store(r, "UPDATE buckets SET ownership=? WHERE name=?", v, NULL,
              &err) < 0)
        return s3_fail(r, err);
    reply_empty(r, 200);
}

void s3_get_ownership_controls(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    if (b.ownership[0] == '\0') {
        error_set(&err, ENOENT, "OwnershipControlsNotFoundError",
                  "The bucket ownership controls were not found");
        return s3_fail(r, err);
    }
    struct xml_writer *x = xml_writer_new("OwnershipControls", S3_XMLNS);
    xml_start(x, "Rule");
    xml_text_element(x, "ObjectOwnership", b.ownership);
    xml_end(x);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

void s3_delete_ownership_controls(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0 ||
        store(r, "UPDATE buckets SET ownership=? WHERE name=?", "", NULL,
              &err) < 0)
        return s3_fail(r, err);
    reply_empty(r, 204);
}

/* ---- what they do to the ACL of a write ---- */

static bool acl_public(const struct acl *acl)
{
    for (size_t i = 0; i < acl->n; i++)
        if (acl->grants[i].kind != GRANTEE_USER)
            return true;
    return false;
}

int s3_acl_guard(struct s3_req *r, const struct bucket_row *b,
                 const struct acl *acl, bool given, struct koala_error **err)
{
    if (strcmp(b->ownership, "BucketOwnerEnforced") == 0 && given) {
        const char *canned = s3_header(r, "x-amz-acl");
        bool bofc = canned && strcmp(canned, "bucket-owner-full-control") == 0;
        if (!bofc && !acl_owner_only(acl))
            return error_set(err, EINVAL, "AccessControlListNotSupported",
                             "The bucket does not allow ACLs");
    }
    if ((b->pab & PAB_BLOCK_PUBLIC_ACLS) && acl_public(acl))
        return error_set(err, EACCES, "AccessDenied",
                         "Access Denied: this bucket's PublicAccessBlock "
                         "blocks public ACLs");
    return 0;
}

int s3_apply_ownership(struct s3_req *r, const struct bucket_row *b,
                       int64_t *owner, struct acl *acl,
                       struct koala_error **err)
{
    const char *canned = s3_header(r, "x-amz-acl");
    bool bofc = canned && strcmp(canned, "bucket-owner-full-control") == 0;
    bool enforced = strcmp(b->ownership, "BucketOwnerEnforced") == 0;
    if (!enforced &&
        !(bofc && strcmp(b->ownership, "BucketOwnerPreferred") == 0))
        return 0;
    struct db *db = s3_db(r, err);
    struct identity bo;
    int rc = db ? meta_identity_by_id(db, b->owner, &bo, err) : -1;
    if (rc == 1)
        rc = error_set(err, ENOENT, NULL, "bucket owner vanished");
    if (rc < 0)
        return -1;
    *owner = b->owner;
    /* The bucket owner owns it, with full control; the writer keeps the
     * grants it asked for only where ACLs still count. */
    struct acl fresh;
    if (acl_canned(&fresh, "private", &bo, NULL, err) < 0)
        return -1;
    if (!enforced)
        for (size_t i = 0; i < acl->n && fresh.n < ACL_MAX_GRANTS; i++)
            if (acl->grants[i].kind != GRANTEE_USER ||
                strcmp(acl->grants[i].id, bo.canonical_id) != 0)
                fresh.grants[fresh.n++] = acl->grants[i];
    *acl = fresh;
    return 0;
}
