/* authz.c: may this request do what it asks?  The bucket policy and the
 * ACLs together, as S3 decides: an explicit Deny in the policy refuses; an
 * Allow grants; otherwise the ACL asked about decides (the bucket owner
 * always may what an owner may).  PublicAccessBlock's IgnorePublicAcls
 * drops public grants from that ACL check, and Object Ownership's
 * BucketOwnerEnforced turns ACLs off: then only the bucket owner (and what
 * the policy grants) may.  Also here: the S3 action each operation is, and
 * the condition keys of a request.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "policy.h"
#include "walrus.h"

static const struct {
    enum s3_op op;
    const char *action;
    const char *version_action; /* with ?versionId= */
} op_actions[] = {
    {OP_LIST_BUCKETS, "s3:ListAllMyBuckets", NULL},
    {OP_CREATE_BUCKET, "s3:CreateBucket", NULL},
    {OP_DELETE_BUCKET, "s3:DeleteBucket", NULL},
    {OP_HEAD_BUCKET, "s3:ListBucket", NULL},
    {OP_GET_BUCKET_LOCATION, "s3:GetBucketLocation", NULL},
    {OP_GET_BUCKET_ACL, "s3:GetBucketAcl", NULL},
    {OP_PUT_BUCKET_ACL, "s3:PutBucketAcl", NULL},
    {OP_GET_BUCKET_VERSIONING, "s3:GetBucketVersioning", NULL},
    {OP_PUT_BUCKET_VERSIONING, "s3:PutBucketVersioning", NULL},
    {OP_GET_BUCKET_TAGGING, "s3:GetBucketTagging", NULL},
    {OP_PUT_BUCKET_TAGGING, "s3:PutBucketTagging", NULL},
    {OP_DELETE_BUCKET_TAGGING, "s3:PutBucketTagging", NULL},
    {OP_GET_BUCKET_CORS, "s3:GetBucketCORS", NULL},
    {OP_PUT_BUCKET_CORS, "s3:PutBucketCORS", NULL},
    {OP_DELETE_BUCKET_CORS, "s3:PutBucketCORS", NULL},
    {OP_GET_BUCKET_POLICY, "s3:GetBucketPolicy", NULL},
    {OP_PUT_BUCKET_POLICY, "s3:PutBucketPolicy", NULL},
    {OP_DELETE_BUCKET_POLICY, "s3:DeleteBucketPolicy", NULL},
    {OP_GET_BUCKET_POLICY_STATUS, "s3:GetBucketPolicyStatus", NULL},
    {OP_GET_PUBLIC_ACCESS_BLOCK, "s3:GetBucketPublicAccessBlock", NULL},
    {OP_PUT_PUBLIC_ACCESS_BLOCK, "s3:PutBucketPublicAccessBlock", NULL},
    {OP_DELETE_PUBLIC_ACCESS_BLOCK, "s3:PutBucketPublicAccessBlock", NULL},
    {OP_GET_OWNERSHIP_CONTROLS, "s3:GetBucketOwnershipControls", NULL},
    {OP_PUT_OWNERSHIP_CONTROLS, "s3:PutBucketOwnershipControls", NULL},
    {OP_DELETE_OWNERSHIP_CONTROLS, "s3:PutBucketOwnershipControls", NULL},
    {OP_GET_OBJECT_LOCK_CONFIG, "s3:GetBucketObjectLockConfiguration", NULL},
    {OP_PUT_OBJECT_LOCK_CONFIG, "s3:PutBucketObjectLockConfiguration", NULL},
    {OP_GET_OBJECT_RETENTION, "s3:GetObjectRetention", NULL},
    {OP_PUT_OBJECT_RETENTION, "s3:PutObjectRetention", NULL},
    {OP_GET_OBJECT_LEGAL_HOLD, "s3:GetObjectLegalHold", NULL},
    {OP_PUT_OBJECT_LEGAL_HOLD, "s3:PutObjectLegalHold", NULL},
    {OP_GET_BUCKET_LIFECYCLE, "s3:GetLifecycleConfiguration", NULL},
    {OP_PUT_BUCKET_LIFECYCLE, "s3:PutLifecycleConfiguration", NULL},
    {OP_DELETE_BUCKET_LIFECYCLE, "s3:PutLifecycleConfiguration", NULL},
    {OP_GET_BUCKET_LOGGING, "s3:GetBucketLogging", NULL},
    {OP_PUT_BUCKET_LOGGING, "s3:PutBucketLogging", NULL},
    {OP_GET_BUCKET_ENCRYPTION, "s3:GetEncryptionConfiguration", NULL},
    {OP_PUT_BUCKET_ENCRYPTION, "s3:PutEncryptionConfiguration", NULL},
    {OP_DELETE_BUCKET_ENCRYPTION, "s3:PutEncryptionConfiguration", NULL},
    {OP_LIST_OBJECTS, "s3:ListBucket", NULL},
    {OP_LIST_OBJECTS_V2, "s3:ListBucket", NULL},
    {OP_LIST_OBJECT_VERSIONS, "s3:ListBucketVersions", NULL},
    {OP_LIST_UPLOADS, "s3:ListBucketMultipartUploads", NULL},
    {OP_DELETE_OBJECTS, "s3:DeleteObject", NULL},
    {OP_PUT_OBJECT, "s3:PutObject", NULL},
    {OP_POST_OBJECT, "s3:PutObject", NULL},
    {OP_COPY_OBJECT, "s3:PutObject", NULL},
    {OP_GET_OBJECT, "s3:GetObject", "s3:GetObjectVersion"},
    {OP_HEAD_OBJECT, "s3:GetObject", "s3:GetObjectVersion"},
    {OP_DELETE_OBJECT, "s3:DeleteObject", "s3:DeleteObjectVersion"},
    {OP_GET_OBJECT_ACL, "s3:GetObjectAcl", "s3:GetObjectVersionAcl"},
    {OP_PUT_OBJECT_ACL, "s3:PutObjectAcl", "s3:PutObjectVersionAcl"},
    {OP_GET_OBJECT_TAGGING, "s3:GetObjectTagging",
     "s3:GetObjectVersionTagging"},
    {OP_PUT_OBJECT_TAGGING, "s3:PutObjectTagging",
     "s3:PutObjectVersionTagging"},
    {OP_DELETE_OBJECT_TAGGING, "s3:DeleteObjectTagging",
     "s3:DeleteObjectVersionTagging"},
    {OP_GET_OBJECT_ATTRIBUTES, "s3:GetObjectAttributes",
     "s3:GetObjectVersionAttributes"},
    {OP_CREATE_UPLOAD, "s3:PutObject", NULL},
    {OP_UPLOAD_PART, "s3:PutObject", NULL},
    {OP_UPLOAD_PART_COPY, "s3:PutObject", NULL},
    {OP_COMPLETE_UPLOAD, "s3:PutObject", NULL},
    {OP_ABORT_UPLOAD, "s3:AbortMultipartUpload", NULL},
    {OP_LIST_PARTS, "s3:ListMultipartUploadParts", NULL},
};

const char *s3_op_action(const struct s3_req *r)
{
    for (size_t i = 0; i < ARRAY_SIZE(op_actions); i++)
        if (op_actions[i].op == r->op)
            return op_actions[i].version_action && s3_param(r, "versionId")
                       ? op_actions[i].version_action
                       : op_actions[i].action;
    return "s3:Unknown";
}

/* ---- the bucket's policy, once a request ---- */

/* Parsed policies shared by requests: parsing a 20-statement document
 * costs more than the rest of a small GET, so a bucket's is parsed once and
 * reused for as long as its stored text is the same (compared on every
 * use, so a change is seen at once, on every thread). */
#define POLICY_CACHE_SIZE 64

struct policy_cache {
    pthread_mutex_t lock;
    unsigned next;
    struct {
        char bucket[64];
        char *text;
        struct policy *p;
    } e[POLICY_CACHE_SIZE];
};

struct policy_cache *policy_cache_new(void)
{
    struct policy_cache *c = calloc(1, sizeof(*c));
    if (c && pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

void policy_cache_free(struct policy_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < POLICY_CACHE_SIZE; i++) {
        free(c->e[i].text);
        policy_free(c->e[i].p);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The parsed form of text, bucket's stored policy (a reference the caller
 * frees), from the cache or parsed now. */
static struct policy *cached_policy(struct policy_cache *c, const char *bucket,
                                    const char *text, struct koala_error **err)
{
    struct policy *p = NULL;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < POLICY_CACHE_SIZE && p == NULL; i++)
        if (c->e[i].p && strcmp(c->e[i].bucket, bucket) == 0 &&
            strcmp(c->e[i].text, text) == 0)
            p = policy_ref(c->e[i].p);
    pthread_mutex_unlock(&c->lock);
    if (p)
        return p;
    p = policy_parse(text, strlen(text), bucket, err);
    char *copy = p ? strdup(text) : NULL;
    if (copy == NULL)
        return p;
    pthread_mutex_lock(&c->lock);
    size_t slot = POLICY_CACHE_SIZE;
    for (size_t i = 0; i < POLICY_CACHE_SIZE && slot == POLICY_CACHE_SIZE;
         i++)
        if (c->e[i].p && strcmp(c->e[i].bucket, bucket) == 0)
            slot = i; /* replaced by a newer text */
    if (slot == POLICY_CACHE_SIZE)
        slot = c->next++ % POLICY_CACHE_SIZE;
    free(c->e[slot].text);
    policy_free(c->e[slot].p);
    snprintf(c->e[slot].bucket, sizeof(c->e[slot].bucket), "%s", bucket);
    c->e[slot].text = copy;
    c->e[slot].p = policy_ref(p);
    pthread_mutex_unlock(&c->lock);
    return p;
}

static int load_policy(struct s3_req *r, const char *bucket,
                       struct policy **out, struct koala_error **err)
{
    if (r->policy_loaded && strcmp(r->policy_bucket, bucket) == 0) {
        *out = r->policy;
        return 0;
    }
    policy_free(r->policy);
    r->policy = NULL;
    r->policy_loaded = false;
    struct db *db = s3_db(r, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st =
        db_stmt(db, "SELECT policy FROM buckets WHERE name=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "reading bucket policy", err);
    if (rc == 0) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        size_t n = text ? strlen(text) : 0;
        struct koala_error *e = NULL;
        if (n && (r->policy = cached_policy(r->w->policies, bucket, text,
                                            &e)) == NULL) {
            /* stored only after the same check: not expected */
            rc = error_set(err, EIO, NULL, "stored policy of %s: %s", bucket,
                           error_message(e));
        }
        error_free(e);
    } else if (rc == 1) {
        rc = 0; /* no bucket: nothing to grant or deny */
    }
    db_stmt_done(st);
    if (rc < 0)
        return -1;
    r->policy_loaded = true;
    snprintf(r->policy_bucket, sizeof(r->policy_bucket), "%s", bucket);
    *out = r->policy;
    return 0;
}

/* ---- condition keys ---- */

struct lookup_ctx {
    struct s3_req *r;
    const struct object_row *o;
};

static void add_tags(struct policy_values *out, const char *stored,
                     const char *want_key, bool keys_only)
{
    struct tag_set t;
    if (tags_decode(stored ? stored : "", &t) < 0)
        return;
    for (size_t i = 0; i < t.n; i++) {
        if (keys_only)
            policy_values_add(out, t.keys[i]);
        else if (strcmp(t.keys[i], want_key) == 0)
            policy_values_add(out, t.values[i]);
    }
    tag_set_clear(&t);
}

static void lookup(void *vctx, const char *key, struct policy_values *out)
{
    struct lookup_ctx *c = vctx;
    struct s3_req *r = c->r;
    char buf[64];
    const char *v = NULL;
    if (strcasecmp(key, "aws:SourceIp") == 0)
        v = r->http ? http_request_peer(r->http) : NULL;
    else if (strcasecmp(key, "aws:SecureTransport") == 0)
        v = r->w->opt.tls_cert ? "true" : "false";
    else if (strcasecmp(key, "aws:CurrentTime") == 0) {
        time_t now = time(NULL);
        v = time_format_iso8601(now, buf);
    } else if (strcasecmp(key, "aws:EpochTime") == 0) {
        snprintf(buf, sizeof(buf), "%lld", (long long)time(NULL));
        v = buf;
    } else if (strcasecmp(key, "aws:PrincipalAccount") == 0)
        v = r->who.anonymous ? NULL : r->who.number;
    else if (strcasecmp(key, "aws:PrincipalType") == 0)
        v = r->who.anonymous ? "Anonymous" : "Account";
    else if (strcasecmp(key, "aws:UserAgent") == 0)
        v = s3_header(r, "User-Agent");
    else if (strcasecmp(key, "aws:Referer") == 0)
        v = s3_header(r, "Referer");
    else if (strcasecmp(key, "s3:prefix") == 0 ||
             strcasecmp(key, "s3:delimiter") == 0 ||
             strcasecmp(key, "s3:max-keys") == 0) {
        const char *name = strchr(key, ':') + 1;
        char lower[16];
        snprintf(lower, sizeof(lower), "%s", name);
        for (char *p = lower; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        v = s3_param(r, lower);
    } else if (strcasecmp(key, "s3:VersionId") == 0)
        v = s3_param(r, "versionId");
    else if (strcasecmp(key, "s3:authType") == 0)
        v = r->who.anonymous ? NULL
            : r->presigned   ? "REST-QUERY-STRING"
                             : "REST-HEADER";
    else if (strcasecmp(key, "s3:signatureversion") == 0)
        v = r->who.anonymous ? NULL
            : r->have_v4     ? "AWS4-HMAC-SHA256"
                             : "AWS";
    else if (strncasecmp(key, "s3:ExistingObjectTag/", 21) == 0) {
        if (c->o)
            add_tags(out, c->o->tags, key + 21, false);
        return;
    } else if (strncasecmp(key, "s3:RequestObjectTag/", 20) == 0) {
        const char *h = s3_header(r, "x-amz-tagging");
        if (h)
            add_tags(out, h, key + 20, false);
        return;
    } else if (strcasecmp(key, "s3:RequestObjectTagKeys") == 0) {
        const char *h = s3_header(r, "x-amz-tagging");
        if (h)
            add_tags(out, h, NULL, true);
        return;
    } else if (strncasecmp(key, "s3:x-amz-", 9) == 0)
        v = s3_header(r, key + 3); /* x-amz-acl, -server-side-encryption ... */
    if (v)
        policy_values_add(out, v);
}

/* ---- the decision ---- */

static int deny(struct koala_error **err)
{
    return error_set(err, EACCES, "AccessDenied", "Access Denied");
}

static bool acl_counts(struct s3_req *r, const struct bucket_row *b,
                       const struct acl *acl, unsigned perm, bool owner)
{
    if (strcmp(b->ownership, "BucketOwnerEnforced") == 0)
        return owner; /* ACLs are off: the bucket owner owns everything */
    return acl_allows_opts(acl, &r->who, perm,
                           (b->pab & PAB_IGNORE_PUBLIC_ACLS) != 0);
}

enum policy_effect s3_policy_effect(struct s3_req *r,
                                    const struct bucket_row *b,
                                    const char *action, const char *key,
                                    const struct object_row *o,
                                    struct koala_error **err)
{
    struct policy *p;
    if (load_policy(r, b->name, &p, err) < 0)
        return (enum policy_effect)-1;
    if (p == NULL)
        return POLICY_NONE;
    struct buf res = {0};
    buf_printf(&res, "arn:aws:s3:::%s%s%s", b->name, key ? "/" : "",
               key ? key : "");
    struct lookup_ctx lc = {.r = r, .o = o};
    struct policy_request pr = {
        .action = action,
        .resource = res.data ? res.data : "",
        .anonymous = r->who.anonymous,
        .account = r->who.anonymous ? "" : r->who.number,
        .canonical_id = r->who.canonical_id,
        .restrict_public = (b->pab & PAB_RESTRICT_PUBLIC_BUCKETS) != 0,
        .owner_account = b->owner_number,
        .lookup = lookup,
        .ctx = &lc,
    };
    enum policy_effect e = policy_evaluate(p, &pr);
    buf_free(&res);
    return e;
}

int s3_authorize(struct s3_req *r, const struct bucket_row *b,
                 const char *action, const char *key,
                 const struct object_row *o, const struct acl *acl,
                 unsigned perm, struct koala_error **err)
{
    bool owner = !r->who.anonymous && r->who.account_id == b->owner;
    /* The owner can always read and change the policy, whatever it says
     * (S3's guard against a bucket locked for good). */
    if (owner && key == NULL && strcasestr(action, "BucketPolicy") != NULL)
        return 0;
    enum policy_effect e = s3_policy_effect(r, b, action, key, o, err);
    if ((int)e < 0)
        return -1;
    if (e == POLICY_DENY)
        return deny(err);
    if (e == POLICY_ALLOW || perm == 0)
        return 0;
    if (perm == PERM_OWNER)
        return owner ? 0 : deny(err);
    return acl && acl_counts(r, b, acl, perm, owner) ? 0 : deny(err);
}
