/* policy.c: the bucket policy language: checking a document when it is put
 * (MalformedPolicy otherwise) and evaluating it for one request.
 *
 * A document is JSON: {"Version", "Statement": [{"Sid", "Effect": "Allow" |
 * "Deny", "Principal" | "NotPrincipal", "Action" | "NotAction", "Resource" |
 * "NotResource", "Condition"}]}.  A statement applies when its principal,
 * action, resource and every condition match; the evaluation answers Deny
 * if any applying statement denies, Allow if one allows, else nothing
 * (the ACLs decide then; see authz.c).  Action names compare without case,
 * resources with it; '*' and '?' are wildcards in both.  Conditions: the
 * String, Numeric, Date, Bool, IpAddress, Arn and Null operators, their
 * IfExists forms and the ForAnyValue:/ForAllValues: set qualifiers, over the
 * keys the caller's lookup function knows.  Values within one key are ORed,
 * keys and operators ANDed, as IAM does; a key absent from the request
 * fails a condition, except for negated operators, IfExists, Null and
 * ForAllValues.
 */
#define LOG_MODULE "walrus"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "policy.h"

#define POLICY_MAX_BYTES (20 * 1024)

/* The S3 actions a policy may name without a wildcard. */
static const char *const actions[] = {
    "AbortMultipartUpload", "BypassGovernanceRetention", "CreateBucket",
    "DeleteBucket", "DeleteBucketOwnershipControls", "DeleteBucketPolicy",
    "DeleteBucketWebsite", "DeleteObject", "DeleteObjectTagging",
    "DeleteObjectVersion", "DeleteObjectVersionTagging",
    "GetAccelerateConfiguration", "GetBucketAcl", "GetBucketCORS",
    "GetBucketLocation", "GetBucketLogging", "GetBucketNotification",
    "GetBucketObjectLockConfiguration", "GetBucketOwnershipControls",
    "GetBucketPolicy", "GetBucketPolicyStatus", "GetBucketPublicAccessBlock",
    "GetBucketRequestPayment", "GetBucketTagging", "GetBucketVersioning",
    "GetBucketWebsite", "GetEncryptionConfiguration",
    "GetLifecycleConfiguration", "GetObject", "GetObjectAcl",
    "GetObjectAttributes", "GetObjectLegalHold", "GetObjectRetention",
    "GetObjectTagging", "GetObjectTorrent", "GetObjectVersion",
    "GetObjectVersionAcl", "GetObjectVersionAttributes",
    "GetObjectVersionTagging", "GetObjectVersionTorrent",
    "GetReplicationConfiguration", "ListAllMyBuckets", "ListBucket",
    "ListBucketMultipartUploads", "ListBucketVersions",
    "ListMultipartUploadParts", "PutAccelerateConfiguration",
    "PutBucketAcl", "PutBucketCORS", "PutBucketLogging",
    "PutBucketNotification", "PutBucketObjectLockConfiguration",
    "PutBucketOwnershipControls", "PutBucketPolicy",
    "PutBucketPublicAccessBlock", "PutBucketRequestPayment",
    "PutBucketTagging", "PutBucketVersioning", "PutBucketWebsite",
    "PutEncryptionConfiguration", "PutLifecycleConfiguration", "PutObject",
    "PutObjectAcl", "PutObjectLegalHold", "PutObjectRetention",
    "PutObjectTagging", "PutObjectVersionAcl", "PutObjectVersionTagging",
    "PutReplicationConfiguration", "ReplicateDelete", "ReplicateObject",
    "ReplicateTags", "RestoreObject",
};

enum op_kind {
    OPK_STRING_EQ,
    OPK_STRING_EQ_NOCASE,
    OPK_STRING_LIKE,
    OPK_NUM_EQ,
    OPK_NUM_LT,
    OPK_NUM_LE,
    OPK_NUM_GT,
    OPK_NUM_GE,
    OPK_DATE_EQ,
    OPK_DATE_LT,
    OPK_DATE_LE,
    OPK_DATE_GT,
    OPK_DATE_GE,
    OPK_BOOL,
    OPK_IP,
    OPK_ARN_LIKE,
    OPK_NULL,
};

static const struct {
    const char *name;
    enum op_kind kind;
    bool negated;
} operators[] = {
    {"StringEquals", OPK_STRING_EQ, false},
    {"StringNotEquals", OPK_STRING_EQ, true},
    {"StringEqualsIgnoreCase", OPK_STRING_EQ_NOCASE, false},
    {"StringNotEqualsIgnoreCase", OPK_STRING_EQ_NOCASE, true},
    {"StringLike", OPK_STRING_LIKE, false},
    {"StringNotLike", OPK_STRING_LIKE, true},
    {"NumericEquals", OPK_NUM_EQ, false},
    {"NumericNotEquals", OPK_NUM_EQ, true},
    {"NumericLessThan", OPK_NUM_LT, false},
    {"NumericLessThanEquals", OPK_NUM_LE, false},
    {"NumericGreaterThan", OPK_NUM_GT, false},
    {"NumericGreaterThanEquals", OPK_NUM_GE, false},
    {"DateEquals", OPK_DATE_EQ, false},
    {"DateNotEquals", OPK_DATE_EQ, true},
    {"DateLessThan", OPK_DATE_LT, false},
    {"DateLessThanEquals", OPK_DATE_LE, false},
    {"DateGreaterThan", OPK_DATE_GT, false},
    {"DateGreaterThanEquals", OPK_DATE_GE, false},
    {"Bool", OPK_BOOL, false},
    {"IpAddress", OPK_IP, false},
    {"NotIpAddress", OPK_IP, true},
    {"ArnEquals", OPK_ARN_LIKE, false},
    {"ArnNotEquals", OPK_ARN_LIKE, true},
    {"ArnLike", OPK_ARN_LIKE, false},
    {"ArnNotLike", OPK_ARN_LIKE, true},
    {"Null", OPK_NULL, false},
};

struct cond_op {
    enum op_kind kind;
    bool negated, if_exists, for_any, for_all;
};

/* "ForAnyValue:StringLikeIfExists" and the like. */
static bool parse_operator(const char *name, struct cond_op *op)
{
    memset(op, 0, sizeof(*op));
    if (strncasecmp(name, "ForAnyValue:", 12) == 0) {
        op->for_any = true;
        name += 12;
    } else if (strncasecmp(name, "ForAllValues:", 13) == 0) {
        op->for_all = true;
        name += 13;
    }
    char base[64];
    size_t n = strlen(name);
    if (n >= sizeof(base))
        return false;
    memcpy(base, name, n + 1);
    if (n > 8 && strcmp(base + n - 8, "IfExists") == 0) {
        op->if_exists = true;
        base[n - 8] = '\0';
    }
    for (size_t i = 0; i < sizeof(operators) / sizeof(operators[0]); i++)
        if (strcmp(base, operators[i].name) == 0) {
            op->kind = operators[i].kind;
            op->negated = operators[i].negated;
            return !(op->if_exists && op->kind == OPK_NULL);
        }
    return false;
}

/* '*' any run, '?' one character. */
bool policy_glob(const char *p, const char *s, bool nocase)
{
    const char *star = NULL, *mark = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            mark = s;
        } else if (*p == '?' ||
                   (nocase ? tolower((unsigned char)*p) ==
                                 tolower((unsigned char)*s)
                           : *p == *s)) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++mark;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

/* ---- checking a document ---- */

static int malformed(struct koala_error **err, const char *msg)
{
    return error_set(err, EINVAL, "MalformedPolicy", "%s", msg);
}

/* A string or a non-empty array of strings; each passed to fn. */
static int each_string(json_t *v, int (*fn)(const char *, void *), void *ctx)
{
    if (json_is_string(v))
        return fn(json_string_value(v), ctx);
    if (!json_is_array(v) || json_array_size(v) == 0)
        return -1;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || fn(json_string_value(e), ctx) < 0)
            return -1;
    }
    return 0;
}

static int check_action(const char *a, void *ctx)
{
    (void)ctx;
    if (strcmp(a, "*") == 0)
        return 0;
    if (strncasecmp(a, "s3:", 3) != 0 || a[3] == '\0')
        return -1;
    if (strpbrk(a + 3, "*?"))
        return 0;
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        if (strcasecmp(a + 3, actions[i]) == 0)
            return 0;
    return -1;
}

/* A resource of this bucket: arn:aws:s3:::<bucket>[/<key pattern>]. */
static int check_resource(const char *res, void *ctx)
{
    const char *bucket = ctx;
    if (strcmp(res, "*") == 0)
        return 0;
    if (strncmp(res, "arn:aws:s3:::", 13) != 0)
        return -1;
    const char *b = res + 13;
    size_t blen = strcspn(b, "/");
    char pat[1100];
    if (blen == 0 || blen >= sizeof(pat))
        return -1;
    memcpy(pat, b, blen);
    pat[blen] = '\0';
    return policy_glob(pat, bucket, false) ? 0 : -1;
}

static int check_principal_string(const char *p, void *ctx)
{
    (void)ctx;
    return *p ? 0 : -1;
}

static int check_principal(json_t *p)
{
    if (json_is_string(p))
        return strcmp(json_string_value(p), "*") == 0 ? 0 : -1;
    if (!json_is_object(p) || json_object_size(p) == 0)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v)
    {
        if (strcmp(k, "AWS") != 0 && strcmp(k, "CanonicalUser") != 0 &&
            strcmp(k, "Service") != 0 && strcmp(k, "Federated") != 0)
            return -1;
        if (each_string(v, check_principal_string, NULL) < 0)
            return -1;
    }
    return 0;
}

static int check_value(json_t *v)
{
    if (json_is_string(v) || json_is_number(v) || json_is_boolean(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) == 0)
        return -1;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!(json_is_string(e) || json_is_number(e) || json_is_boolean(e)))
            return -1;
    }
    return 0;
}

static int check_condition(json_t *c, struct koala_error **err)
{
    if (!json_is_object(c))
        return malformed(err, "Condition must be an object");
    const char *opname;
    json_t *keys;
    json_object_foreach(c, opname, keys)
    {
        struct cond_op op;
        if (!parse_operator(opname, &op))
            return error_set(err, EINVAL, "MalformedPolicy",
                             "Invalid Condition type : %s", opname);
        if (!json_is_object(keys) || json_object_size(keys) == 0)
            return malformed(err, "Condition block has no keys");
        const char *key;
        json_t *v;
        json_object_foreach(keys, key, v)
        {
            if (check_value(v) < 0)
                return error_set(err, EINVAL, "MalformedPolicy",
                                 "Invalid value for condition key %s", key);
        }
    }
    return 0;
}

static int check_statement(json_t *s, const char *bucket,
                           struct koala_error **err)
{
    if (!json_is_object(s))
        return malformed(err, "Statement must be an object");
    json_t *effect = json_object_get(s, "Effect");
    if (!json_is_string(effect) ||
        (strcmp(json_string_value(effect), "Allow") != 0 &&
         strcmp(json_string_value(effect), "Deny") != 0))
        return malformed(err, "Invalid effect");
    json_t *p = json_object_get(s, "Principal");
    json_t *np = json_object_get(s, "NotPrincipal");
    if ((p == NULL) == (np == NULL))
        return malformed(err, "Missing required field Principal");
    if (check_principal(p ? p : np) < 0)
        return malformed(err, "Invalid principal in policy");
    json_t *a = json_object_get(s, "Action");
    json_t *na = json_object_get(s, "NotAction");
    if ((a == NULL) == (na == NULL))
        return malformed(err, "Missing required field Action");
    if (each_string(a ? a : na, check_action, NULL) < 0)
        return malformed(err, "Policy has invalid action");
    json_t *r = json_object_get(s, "Resource");
    json_t *nr = json_object_get(s, "NotResource");
    if ((r == NULL) == (nr == NULL))
        return malformed(err, "Missing required field Resource");
    if (each_string(r ? r : nr, check_resource, (void *)bucket) < 0)
        return malformed(err, "Policy has invalid resource");
    json_t *c = json_object_get(s, "Condition");
    if (c && check_condition(c, err) < 0)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v)
    {
        static const char *const known[] = {
            "Sid",         "Effect",   "Principal", "NotPrincipal",
            "Action",      "NotAction", "Resource", "NotResource",
            "Condition",
        };
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok)
            return error_set(err, EINVAL, "MalformedPolicy",
                             "Unknown field %s", k);
    }
    return 0;
}

struct policy *policy_parse(const char *text, size_t len, const char *bucket,
                            struct koala_error **err)
{
    if (len > POLICY_MAX_BYTES) {
        error_set(err, EINVAL, "MalformedPolicy",
                  "Policies must be at most 20 KB");
        return NULL;
    }
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (doc == NULL) {
        error_set(err, EINVAL, "MalformedPolicy",
                  "Policies must be valid JSON: %s", je.text);
        return NULL;
    }
    json_t *st = json_object_get(doc, "Statement");
    json_t *ver = json_object_get(doc, "Version");
    int rc = 0;
    if (!json_is_object(doc))
        rc = malformed(err, "Policies must be a JSON object");
    else if (ver && (!json_is_string(ver) ||
                     (strcmp(json_string_value(ver), "2012-10-17") != 0 &&
                      strcmp(json_string_value(ver), "2008-10-17") != 0)))
        rc = malformed(err, "The policy must contain a valid version string");
    else if (st == NULL || (json_is_array(st) && json_array_size(st) == 0))
        rc = malformed(err, "Missing required field Statement");
    else if (json_is_object(st))
        rc = check_statement(st, bucket, err);
    else if (!json_is_array(st))
        rc = malformed(err, "Statement must be an array");
    else {
        size_t i;
        json_t *s;
        json_array_foreach(st, i, s)
        {
            if (rc == 0)
                rc = check_statement(s, bucket, err);
        }
    }
    if (rc < 0) {
        json_decref(doc);
        return NULL;
    }
    return (struct policy *)doc;
}

struct policy *policy_ref(struct policy *p)
{
    json_incref((json_t *)p);
    return p;
}

void policy_free(struct policy *p)
{
    if (p)
        json_decref((json_t *)p);
}

/* ---- evaluating ---- */

static void value_text(json_t *v, char *out, size_t size)
{
    if (json_is_string(v))
        snprintf(out, size, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, size, "%.17g", json_real_value(v));
    else if (json_is_true(v))
        snprintf(out, size, "true");
    else
        snprintf(out, size, "false");
}

/* ISO 8601 ("2024-01-31T12:00:00Z", fractions and a date alone too) or
 * epoch seconds. */
static bool parse_date(const char *s, time_t *out)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (end) {
        if (*end == '.')
            while (isdigit((unsigned char)*++end))
                ;
        if (*end != '\0' && strcmp(end, "Z") != 0)
            return false;
        *out = timegm(&tm);
        return true;
    }
    char *e;
    long long n = strtoll(s, &e, 10);
    if (*s == '\0' || *e != '\0')
        return false;
    *out = (time_t)n;
    return true;
}

static bool parse_num(const char *s, double *out)
{
    char *e;
    *out = strtod(s, &e);
    return *s && *e == '\0';
}

/* Does address a lie in CIDR block c? */
static bool ip_in(const char *a, const char *c)
{
    unsigned char addr[16], net[16];
    char block[64];
    snprintf(block, sizeof(block), "%s", c);
    char *slash = strchr(block, '/');
    long bits = -1;
    if (slash) {
        *slash = '\0';
        char *e;
        bits = strtol(slash + 1, &e, 10);
        if (*e || bits < 0)
            return false;
    }
    int fam = strchr(block, ':') ? AF_INET6 : AF_INET;
    size_t n = fam == AF_INET6 ? 16 : 4;
    if (inet_pton(fam, block, net) != 1)
        return false;
    /* an IPv4 peer seen as ::ffff:a.b.c.d */
    const char *pa = a;
    if (fam == AF_INET && strncmp(a, "::ffff:", 7) == 0)
        pa = a + 7;
    if ((strchr(pa, ':') ? AF_INET6 : AF_INET) != fam ||
        inet_pton(fam, pa, addr) != 1)
        return false;
    if (bits < 0 || bits > (long)(n * 8))
        bits = (long)(n * 8);
    for (long i = 0; i < bits; i++) {
        unsigned m = 0x80u >> (i % 8);
        if ((addr[i / 8] & m) != (net[i / 8] & m))
            return false;
    }
    return true;
}

/* One request value against one policy value. */
static bool value_matches(const struct cond_op *op, const char *req,
                          const char *pol)
{
    double x, y;
    time_t t, u;
    switch (op->kind) {
    case OPK_STRING_EQ:
        return strcmp(req, pol) == 0;
    case OPK_STRING_EQ_NOCASE:
        return strcasecmp(req, pol) == 0;
    case OPK_STRING_LIKE:
    case OPK_ARN_LIKE:
        return policy_glob(pol, req, false);
    case OPK_NUM_EQ:
    case OPK_NUM_LT:
    case OPK_NUM_LE:
    case OPK_NUM_GT:
    case OPK_NUM_GE:
        if (!parse_num(req, &x) || !parse_num(pol, &y))
            return false;
        return op->kind == OPK_NUM_EQ   ? x == y
               : op->kind == OPK_NUM_LT ? x < y
               : op->kind == OPK_NUM_LE ? x <= y
               : op->kind == OPK_NUM_GT ? x > y
                                        : x >= y;
    case OPK_DATE_EQ:
    case OPK_DATE_LT:
    case OPK_DATE_LE:
    case OPK_DATE_GT:
    case OPK_DATE_GE:
        if (!parse_date(req, &t) || !parse_date(pol, &u))
            return false;
        return op->kind == OPK_DATE_EQ   ? t == u
               : op->kind == OPK_DATE_LT ? t < u
               : op->kind == OPK_DATE_LE ? t <= u
               : op->kind == OPK_DATE_GT ? t > u
                                         : t >= u;
    case OPK_BOOL:
        return strcasecmp(req, pol) == 0;
    case OPK_IP:
        return ip_in(req, pol);
    case OPK_NULL:
        return false;
    }
    return false;
}

/* Does one request value match any of the policy values (v)? */
static bool any_policy_value(const struct cond_op *op, const char *req,
                             json_t *v)
{
    char pol[1100];
    if (!json_is_array(v)) {
        value_text(v, pol, sizeof(pol));
        return value_matches(op, req, pol);
    }
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        value_text(e, pol, sizeof(pol));
        if (value_matches(op, req, pol))
            return true;
    }
    return false;
}

static bool key_holds(const struct cond_op *op, const char *key, json_t *v,
                      const struct policy_request *pr)
{
    struct policy_values vals = {0};
    pr->lookup(pr->ctx, key, &vals);
    bool present = vals.n > 0;
    bool result;
    if (op->kind == OPK_NULL) {
        char want[16];
        value_text(json_is_array(v) ? json_array_get(v, 0) : v, want,
                   sizeof(want));
        result = strcasecmp(want, "true") == 0 ? !present : present;
    } else if (!present) {
        result = op->if_exists || op->negated || op->for_all;
    } else if (op->for_all) { /* every request value matches some */
        result = true;
        for (size_t i = 0; i < vals.n && result; i++)
            result = any_policy_value(op, vals.v[i], v) != op->negated;
    } else { /* any request value (one, for single-valued keys) */
        bool any = false;
        for (size_t i = 0; i < vals.n && !any; i++)
            any = any_policy_value(op, vals.v[i], v);
        result = op->negated ? !any : any;
    }
    policy_values_clear(&vals);
    return result;
}

static bool conditions_hold(json_t *c, const struct policy_request *pr)
{
    if (c == NULL)
        return true;
    const char *opname;
    json_t *keys;
    json_object_foreach(c, opname, keys)
    {
        struct cond_op op;
        if (!parse_operator(opname, &op))
            return false;
        const char *key;
        json_t *v;
        json_object_foreach(keys, key, v)
        {
            if (!key_holds(&op, key, v, pr))
                return false;
        }
    }
    return true;
}

static bool any_glob(json_t *v, const char *subject, bool nocase)
{
    if (json_is_string(v))
        return policy_glob(json_string_value(v), subject, nocase);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (json_is_string(e) &&
            policy_glob(json_string_value(e), subject, nocase))
            return true;
    }
    return false;
}

/* An AWS principal string: "*", an account number, or an ARN of it. */
static bool aws_principal_matches(const char *p,
                                  const struct policy_request *pr,
                                  bool *wildcard)
{
    if (strcmp(p, "*") == 0) {
        *wildcard = true;
        return true;
    }
    if (pr->anonymous)
        return false;
    if (strcmp(p, pr->account) == 0)
        return true;
    char prefix[40];
    snprintf(prefix, sizeof(prefix), "arn:aws:iam::%s:", pr->account);
    return strncmp(p, prefix, strlen(prefix)) == 0;
}

static bool principal_matches(json_t *p, const struct policy_request *pr,
                              bool *wildcard)
{
    *wildcard = false;
    if (json_is_string(p))
        return strcmp(json_string_value(p), "*") == 0 && (*wildcard = true);
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v)
    {
        json_t *one;
        size_t i, n = json_is_array(v) ? json_array_size(v) : 1;
        for (i = 0; i < n; i++) {
            one = json_is_array(v) ? json_array_get(v, i) : v;
            const char *s = json_string_value(one);
            if (s == NULL)
                continue;
            if (strcmp(k, "AWS") == 0 && aws_principal_matches(s, pr, wildcard))
                return true;
            if (strcmp(k, "CanonicalUser") == 0 && !pr->anonymous &&
                strcmp(s, pr->canonical_id) == 0)
                return true;
        }
    }
    return false;
}

enum policy_effect policy_evaluate(const struct policy *policy,
                                   const struct policy_request *pr)
{
    json_t *doc = (json_t *)policy;
    json_t *st = json_object_get(doc, "Statement");
    size_t n = json_is_array(st) ? json_array_size(st) : 1;
    bool allow = false;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(st) ? json_array_get(st, i) : st;
        bool deny = strcmp(json_string_value(json_object_get(s, "Effect")),
                           "Deny") == 0;
        json_t *p = json_object_get(s, "Principal");
        bool wildcard = false;
        bool pm = p ? principal_matches(p, pr, &wildcard)
                    : !principal_matches(json_object_get(s, "NotPrincipal"),
                                         pr, &wildcard);
        if (!pm)
            continue;
        /* RestrictPublicBuckets: what a public statement grants reaches
         * only the bucket owner's account. */
        if (!deny && pr->restrict_public && policy_statement_public(s) &&
            (pr->anonymous || strcmp(pr->account, pr->owner_account) != 0))
            continue;
        json_t *a = json_object_get(s, "Action");
        bool am = a ? any_glob(a, pr->action, true)
                    : !any_glob(json_object_get(s, "NotAction"), pr->action,
                                true);
        json_t *r = json_object_get(s, "Resource");
        bool rm = r ? any_glob(r, pr->resource, false)
                    : !any_glob(json_object_get(s, "NotResource"),
                                pr->resource, false);
        if (!am || !rm || !conditions_hold(json_object_get(s, "Condition"), pr))
            continue;
        if (deny)
            return POLICY_DENY;
        allow = true;
    }
    return allow ? POLICY_ALLOW : POLICY_NONE;
}

/* ---- is it public? ---- */

/* Condition keys that tie a statement to known callers (AWS's list of
 * what makes a policy non-public, for the keys Walrus knows). */
static bool condition_restricts(json_t *c)
{
    static const char *const keys[] = {
        "aws:SourceIp",        "aws:PrincipalAccount", "aws:PrincipalOrgID",
        "aws:SourceAccount",   "aws:SourceArn",        "aws:SourceVpc",
        "aws:SourceVpce",      "aws:userid",           "aws:PrincipalArn",
        "s3:DataAccessPointAccount",
    };
    const char *opname;
    json_t *block;
    json_object_foreach(c, opname, block)
    {
        struct cond_op op;
        if (!parse_operator(opname, &op) || op.negated || op.if_exists ||
            op.kind == OPK_NULL)
            continue;
        const char *key;
        json_t *v;
        json_object_foreach(block, key, v)
        {
            for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                if (strcasecmp(key, keys[i]) == 0)
                    return true;
        }
    }
    return false;
}

bool policy_statement_public(const void *statement)
{
    json_t *s = (json_t *)statement;
    if (strcmp(json_string_value(json_object_get(s, "Effect")), "Allow") != 0)
        return false;
    json_t *p = json_object_get(s, "Principal");
    bool wildcard = false;
    if (p == NULL) /* NotPrincipal: everyone else */
        wildcard = true;
    else if (json_is_string(p))
        wildcard = strcmp(json_string_value(p), "*") == 0;
    else {
        json_t *aws = json_object_get(p, "AWS");
        if (json_is_string(aws))
            wildcard = strcmp(json_string_value(aws), "*") == 0;
        size_t i;
        json_t *e;
        if (json_is_array(aws))
            json_array_foreach(aws, i, e)
            {
                if (json_is_string(e) &&
                    strcmp(json_string_value(e), "*") == 0)
                    wildcard = true;
            }
    }
    if (!wildcard)
        return false;
    json_t *c = json_object_get(s, "Condition");
    return c == NULL || !condition_restricts(c);
}

bool policy_is_public(const struct policy *policy)
{
    json_t *st = json_object_get((json_t *)policy, "Statement");
    size_t n = json_is_array(st) ? json_array_size(st) : 1;
    for (size_t i = 0; i < n; i++)
        if (policy_statement_public(json_is_array(st) ? json_array_get(st, i)
                                                      : st))
            return true;
    return false;
}

void policy_values_clear(struct policy_values *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    memset(v, 0, sizeof(*v));
}

int policy_values_add(struct policy_values *v, const char *s)
{
    char **p = realloc(v->v, (v->n + 1) * sizeof(*p));
    if (p == NULL)
        return -1;
    v->v = p;
    if ((v->v[v->n] = strdup(s)) == NULL)
        return -1;
    v->n++;
    return 0;
}
