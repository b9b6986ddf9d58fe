/* cors.c: cross-origin resource sharing, as S3 does it for browsers:
 * Put/Get/DeleteBucketCors, the preflight OPTIONS request answered from the
 * bucket's rules, and the Access-Control-* headers on the real requests.
 *
 * The configuration is stored with the bucket (buckets.cors, schema v6) as
 * the canonical CORSConfiguration this file writes after checking it, so
 * GetBucketCors answers it as is and each request with an Origin parses a
 * few hundred bytes.  A rule matches when the Origin matches one of its
 * AllowedOrigin patterns, the method is one of its AllowedMethods, and (for
 * a preflight) every requested header matches one of its AllowedHeader
 * patterns; '*' in a pattern stands for any characters.  The first
 * matching rule answers, as in S3.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "walrus.h"
#include "xml.h"

#define CORS_MAX_RULES 100
#define CORS_MAX_BODY (64 * 1024)

struct strs {
    char **v;
    size_t n;
};

struct cors_rule {
    char *id;
    struct strs origins, methods, headers, expose;
    long max_age; /* -1: none */
};

struct cors_config {
    struct cors_rule *rules;
    size_t n;
};

static void strs_free(struct strs *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static void cors_config_free(struct cors_config *c)
{
    for (size_t i = 0; i < c->n; i++) {
        struct cors_rule *r = &c->rules[i];
        free(r->id);
        strs_free(&r->origins);
        strs_free(&r->methods);
        strs_free(&r->headers);
        strs_free(&r->expose);
    }
    free(c->rules);
    memset(c, 0, sizeof(*c));
}

static int malformed(struct koala_error **err)
{
    return error_set(err, EINVAL, "MalformedXML",
                     "The XML you provided was not well-formed or did not "
                     "validate against our published schema");
}

/* Every child `name` of n, its text trimmed. */
static int children(const struct xml_node *n, const char *name,
                    struct strs *out, struct koala_error **err)
{
    for (const struct xml_node *c = xml_next_child(n, NULL, name); c;
         c = xml_next_child(n, c, name)) {
        char *t = xml_text(c);
        char **v = realloc(out->v, (out->n + 1) * sizeof(*v));
        if (t == NULL || v == NULL) {
            free(t);
            if (v)
                out->v = v;
            return error_set(err, ENOMEM, NULL, "out of memory");
        }
        out->v = v;
        out->v[out->n++] = strdup(str_trim(t));
        free(t);
        if (out->v[out->n - 1] == NULL)
            return error_set(err, ENOMEM, NULL, "out of memory");
    }
    return 0;
}

static size_t stars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '*';
    return n;
}

static int check_rule(const struct cors_rule *r, struct koala_error **err)
{
    static const char *const methods[] = {"GET", "PUT", "HEAD", "POST",
                                          "DELETE"};
    if (r->origins.n == 0 || r->methods.n == 0)
        return malformed(err);
    for (size_t i = 0; i < r->methods.n; i++) {
        bool ok = false;
        for (size_t j = 0; j < ARRAY_SIZE(methods); j++)
            ok |= strcmp(r->methods.v[i], methods[j]) == 0;
        if (!ok)
            return error_set(err, EINVAL, "InvalidRequest",
                             "Found unsupported HTTP method in CORS config. "
                             "Unsupported method is %s",
                             r->methods.v[i]);
    }
    for (size_t i = 0; i < r->origins.n; i++)
        if (stars(r->origins.v[i]) > 1)
            return error_set(err, EINVAL, "InvalidRequest",
                             "AllowedOrigin \"%s\" can not have more than "
                             "one wildcard.",
                             r->origins.v[i]);
    for (size_t i = 0; i < r->headers.n; i++)
        if (stars(r->headers.v[i]) > 1)
            return error_set(err, EINVAL, "InvalidRequest",
                             "AllowedHeader \"%s\" can not have more than "
                             "one wildcard.",
                             r->headers.v[i]);
    if (r->id && strlen(r->id) > 255)
        return error_set(err, EINVAL, "InvalidArgument",
                         "The ID of a CORS rule is longer than 255 "
                         "characters.");
    return 0;
}

static int cors_parse(const char *body, size_t len, struct cors_config *c,
                      struct koala_error **err)
{
    memset(c, 0, sizeof(*c));
    if (len == 0)
        return malformed(err);
    _cleanup_xml_doc_ struct xml_doc *doc =
        xml_parse(body, len, CORS_MAX_BODY, err);
    if (doc == NULL)
        return -1;
    const struct xml_node *root = xml_root(doc);
    if (strcmp(xml_name(root), "CORSConfiguration") != 0)
        return malformed(err);
    size_t n = 0;
    for (const struct xml_node *r = xml_next_child(root, NULL, "CORSRule");
         r; r = xml_next_child(root, r, "CORSRule"))
        n++;
    if (n == 0)
        return malformed(err);
    if (n > CORS_MAX_RULES)
        return error_set(err, EINVAL, "MalformedXML",
                         "A CORS configuration holds at most %d rules.",
                         CORS_MAX_RULES);
    c->rules = calloc(n, sizeof(*c->rules));
    if (c->rules == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    for (const struct xml_node *x = xml_next_child(root, NULL, "CORSRule");
         x; x = xml_next_child(root, x, "CORSRule")) {
        struct cors_rule *r = &c->rules[c->n++];
        r->max_age = -1;
        r->id = xml_child_text(x, "ID");
        _cleanup_free_ char *age = xml_child_text(x, "MaxAgeSeconds");
        int64_t a;
        if (age && (str_to_i64(str_trim(age), &a) < 0 || a < 0))
            return malformed(err);
        if (age)
            r->max_age = (long)a;
        if (children(x, "AllowedOrigin", &r->origins, err) < 0 ||
            children(x, "AllowedMethod", &r->methods, err) < 0 ||
            children(x, "AllowedHeader", &r->headers, err) < 0 ||
            children(x, "ExposeHeader", &r->expose, err) < 0 ||
            check_rule(r, err) < 0)
            return -1;
    }
    return 0;
}

static char *cors_to_xml(const struct cors_config *c, size_t *len)
{
    struct xml_writer *x = xml_writer_new("CORSConfiguration", S3_XMLNS);
    for (size_t i = 0; i < c->n; i++) {
        const struct cors_rule *r = &c->rules[i];
        xml_start(x, "CORSRule");
        if (r->id)
            xml_text_element(x, "ID", r->id);
        for (size_t j = 0; j < r->headers.n; j++)
            xml_text_element(x, "AllowedHeader", r->headers.v[j]);
        for (size_t j = 0; j < r->methods.n; j++)
            xml_text_element(x, "AllowedMethod", r->methods.v[j]);
        for (size_t j = 0; j < r->origins.n; j++)
            xml_text_element(x, "AllowedOrigin", r->origins.v[j]);
        for (size_t j = 0; j < r->expose.n; j++)
            xml_text_element(x, "ExposeHeader", r->expose.v[j]);
        if (r->max_age >= 0)
            xml_u64_element(x, "MaxAgeSeconds", (uint64_t)r->max_age);
        xml_end(x);
    }
    return xml_writer_finish(x, len);
}

/* '*' matches any run of characters. */
static bool glob_match(const char *p, const char *s, bool nocase)
{
    while (*p && *p != '*') {
        if (*s == '\0' ||
            (nocase ? strncasecmp(p, s, 1) != 0 : *p != *s))
            return false;
        p++;
        s++;
    }
    if (*p == '\0')
        return *s == '\0';
    for (;; s++) { /* *p == '*' */
        if (glob_match(p + 1, s, nocase))
            return true;
        if (*s == '\0')
            return false;
    }
}

static bool any_match(const struct strs *pats, const char *s, bool nocase)
{
    for (size_t i = 0; i < pats->n; i++)
        if (glob_match(pats->v[i], s, nocase))
            return true;
    return false;
}

/* Every header of a comma-separated list allowed by the rule. */
static bool headers_allowed(const struct cors_rule *r, const char *list)
{
    if (list == NULL)
        return true;
    _cleanup_free_ char *copy = strdup(list);
    char *save = NULL;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t;
         t = strtok_r(NULL, ",", &save)) {
        t = str_trim(t);
        if (*t && !any_match(&r->headers, t, true))
            return false;
    }
    return copy != NULL;
}

static const struct cors_rule *cors_match(const struct cors_config *c,
                                          const char *origin,
                                          const char *method,
                                          const char *req_headers)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct cors_rule *r = &c->rules[i];
        bool m = false;
        for (size_t j = 0; j < r->methods.n; j++)
            m |= strcmp(r->methods.v[j], method) == 0;
        if (m && any_match(&r->origins, origin, false) &&
            headers_allowed(r, req_headers))
            return r;
    }
    return NULL;
}

static void join(struct buf *b, const struct strs *s)
{
    for (size_t i = 0; i < s->n; i++)
        buf_printf(b, "%s%s", i ? ", " : "", s->v[i]);
}

/* The Access-Control-* headers of a matching rule. */
static void emit(struct s3_req *r, const struct cors_rule *rule,
                 const char *origin, const char *req_headers)
{
    bool any_origin = false;
    for (size_t i = 0; i < rule->origins.n; i++)
        any_origin |= strcmp(rule->origins.v[i], "*") == 0;
    http_reply_header(r->http, "Access-Control-Allow-Origin",
                      any_origin ? "*" : origin);
    if (!any_origin)
        http_reply_header(r->http, "Access-Control-Allow-Credentials",
                          "true");
    struct buf b = {0};
    join(&b, &rule->methods);
    if (b.data)
        http_reply_header(r->http, "Access-Control-Allow-Methods", b.data);
    buf_free(&b);
    if (req_headers && *req_headers)
        http_reply_header(r->http, "Access-Control-Allow-Headers",
                          req_headers);
    join(&b, &rule->expose);
    if (b.data)
        http_reply_header(r->http, "Access-Control-Expose-Headers", b.data);
    buf_free(&b);
    if (rule->max_age >= 0) {
        char age[24];
        snprintf(age, sizeof(age), "%ld", rule->max_age);
        http_reply_header(r->http, "Access-Control-Max-Age", age);
    }
    http_reply_header(r->http, "Vary",
                      "Origin, Access-Control-Request-Headers, "
                      "Access-Control-Request-Method");
}

/* The bucket's rules: 0, 1 when it has none, -1. */
static int load_cors(struct s3_req *r, struct cors_config *c,
                     struct koala_error **err)
{
    memset(c, 0, sizeof(*c));
    struct db *db = s3_db(r, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = db_stmt(db, "SELECT cors FROM buckets WHERE name=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, r->bucket, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "reading CORS", err);
    if (rc == 0) {
        const char *x = (const char *)sqlite3_column_text(st, 0);
        size_t n = x ? strlen(x) : 0;
        rc = n == 0 ? 1 : cors_parse(x, n, c, err);
    } else if (rc == 1) {
        rc = error_set(err, ENOENT, "NoSuchBucket",
                       "The specified bucket does not exist");
    }
    db_stmt_done(st);
    if (rc != 0)
        cors_config_free(c);
    return rc;
}

void s3_cors_headers(struct s3_req *r)
{
    if (r->cors_done)
        return;
    r->cors_done = true;
    const char *origin = s3_header(r, "Origin");
    if (origin == NULL || r->bucket == NULL || r->op == OP_CORS_PREFLIGHT ||
        r->http == NULL)
        return;
    struct cors_config c;
    struct koala_error *err = NULL;
    if (load_cors(r, &c, &err) != 0) {
        error_free(err); /* no rules (or no bucket): no CORS headers */
        return;
    }
    const struct cors_rule *rule =
        cors_match(&c, origin, http_request_method(r->http), NULL);
    if (rule)
        emit(r, rule, origin, NULL);
    cors_config_free(&c);
}

void s3_cors_preflight(struct s3_req *r)
{
    struct koala_error *err = NULL;
    const char *origin = s3_header(r, "Origin");
    const char *method = s3_header(r, "Access-Control-Request-Method");
    const char *req_headers = s3_header(r, "Access-Control-Request-Headers");
    if (origin == NULL || *origin == '\0') {
        error_set(&err, EINVAL, "BadRequest",
                  "Insufficient information. Origin request header needed.");
        return s3_fail(r, err);
    }
    if (method == NULL || *method == '\0') {
        error_set(&err, EINVAL, "BadRequest",
                  "Invalid Access-Control-Request-Method: null");
        return s3_fail(r, err);
    }
    struct cors_config c;
    int rc = load_cors(r, &c, &err);
    if (rc == 1)
        error_set(&err, EACCES, "AccessForbidden",
                  "CORSResponse: CORS is not enabled for this bucket.");
    if (rc != 0)
        return s3_fail(r, err);
    const struct cors_rule *rule = cors_match(&c, origin, method, req_headers);
    if (rule == NULL) {
        cors_config_free(&c);
        error_set(&err, EACCES, "AccessForbidden",
                  "CORSResponse: This CORS request is not allowed. This is "
                  "usually because the evalution of Origin, request method "
                  "/ Access-Control-Request-Method or "
                  "Access-Control-Request-Headers are not whitelisted by "
                  "the resource's CORS spec.");
        return s3_fail(r, err);
    }
    emit(r, rule, origin, req_headers);
    cors_config_free(&c);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}

/* ---- Put/Get/DeleteBucketCors ---- */

/* The bucket owner's, or whom the bucket policy lets (authz.c). */
static int owner_only(struct s3_req *r, struct bucket_row *b,
                      struct koala_error **err)
{
    return s3_bucket_access(r, PERM_OWNER, b, err);
}

void s3_put_bucket_cors(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct cors_config c;
    if (owner_only(r, &b, &err) < 0)
        return s3_fail(r, err);
    if (r->body.len > CORS_MAX_BODY) {
        error_set(&err, EINVAL, "MaxMessageLengthExceeded",
                  "Your request was too big.");
        return s3_fail(r, err);
    }
    if (cors_parse(r->body.data, r->body.len, &c, &err) < 0) {
        cors_config_free(&c);
        return s3_fail(r, err);
    }
    size_t len;
    char *xml = cors_to_xml(&c, &len);
    cors_config_free(&c);
    if (xml == NULL)
        error_set(&err, ENOMEM, NULL, "out of memory");
    if (xml == NULL || s3_bucket_set_text(r, "cors", xml, &err) < 0) {
        free(xml);
        return s3_fail(r, err);
    }
    free(xml);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}

void s3_get_bucket_cors(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct cors_config c;
    if (owner_only(r, &b, &err) < 0)
        return s3_fail(r, err);
    int rc = load_cors(r, &c, &err);
    if (rc == 1)
        error_set(&err, ENOENT, "NoSuchCORSConfiguration",
                  "The CORS configuration does not exist");
    if (rc != 0)
        return s3_fail(r, err);
    size_t len;
    char *doc = cors_to_xml(&c, &len);
    cors_config_free(&c);
    s3_reply_xml(r, 200, doc, len);
}

void s3_delete_bucket_cors(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (owner_only(r, &b, &err) < 0 ||
        s3_bucket_set_text(r, "cors", "", &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 204);
}
