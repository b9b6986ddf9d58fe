/* lifecycle.c: bucket lifecycle configurations: checking and storing them
 * (Put/Get/DeleteBucketLifecycleConfiguration), which rule applies to an
 * object, and the x-amz-expiration header.  The worker that applies the
 * rules is lifecycle_worker.c.
 *
 * Stored with the bucket (buckets.lifecycle, schema v9) in the canonical
 * form this file writes.  Rules: ID, Status, a Filter (Prefix, Tag,
 * ObjectSizeGreaterThan/LessThan, or an And of them; or the legacy Prefix),
 * and the actions Expiration (Days, Date, ExpiredObjectDeleteMarker),
 * NoncurrentVersionExpiration (NoncurrentDays, NewerNoncurrentVersions) and
 * AbortIncompleteMultipartUpload (DaysAfterInitiation).  Transitions to
 * other storage classes have nowhere to go here: NotImplemented.
 *
 * "Days" are counted in units of w->opt.lifecycle_day_s seconds (86400 but
 * in tests), and with real days rounded up to the next midnight UTC, as S3
 * does.
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "walrus.h"
#include "xml.h"

#define LC_MAX_RULES 1000

void lc_config_free(struct lc_config *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->rules[i].prefix);
        tag_set_clear(&c->rules[i].tags);
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

/* A non-negative integer child, -1 when absent. */
static int int_child(const struct xml_node *n, const char *name, int64_t *out,
                     struct koala_error **err)
{
    *out = -1;
    _cleanup_free_ char *t = n ? xml_child_text(n, name) : NULL;
    if (t == NULL)
        return 0;
    if (str_to_i64(str_trim(t), out) < 0 || *out < 0)
        return error_set(err, EINVAL, "InvalidArgument",
                         "'%s' must be a non-negative integer", name);
    return 0;
}

static int add_tag(struct tag_set *t, const struct xml_node *tag,
                   struct koala_error **err)
{
    char *k = xml_child_text(tag, "Key"), *v = xml_child_text(tag, "Value");
    if (k == NULL || v == NULL || t->n >= TAGS_MAX_BUCKET) {
        free(k);
        free(v);
        return malformed(err);
    }
    t->keys[t->n] = k;
    t->values[t->n++] = v;
    return 0;
}

/* The Filter (or the legacy Prefix beside it). */
static int parse_filter(const struct xml_node *x, struct lc_rule *r,
                        struct koala_error **err)
{
    const struct xml_node *f = xml_child(x, "Filter");
    _cleanup_free_ char *legacy = xml_child_text(x, "Prefix");
    if (f && legacy)
        return malformed(err);
    if (f == NULL) {
        r->prefix = strdup(legacy ? legacy : "");
        return r->prefix ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
    }
    const struct xml_node *and = xml_child(f, "And");
    const struct xml_node *src = and ? and : f;
    size_t kinds = 0;
    _cleanup_free_ char *prefix = xml_child_text(src, "Prefix");
    kinds += prefix != NULL;
    for (const struct xml_node *t = xml_next_child(src, NULL, "Tag"); t;
         t = xml_next_child(src, t, "Tag")) {
        if (add_tag(&r->tags, t, err) < 0)
            return -1;
        kinds++;
    }
    if (int_child(src, "ObjectSizeGreaterThan", &r->size_gt, err) < 0 ||
        int_child(src, "ObjectSizeLessThan", &r->size_lt, err) < 0)
        return -1;
    kinds += (r->size_gt >= 0) + (r->size_lt >= 0);
    /* Outside And, a filter holds one condition. */
    if (!and && kinds > 1)
        return malformed(err);
    if (r->size_gt >= 0 && r->size_lt >= 0 && r->size_lt <= r->size_gt)
        return error_set(err, EINVAL, "InvalidArgument",
                         "ObjectSizeLessThan must be greater than "
                         "ObjectSizeGreaterThan");
    r->prefix = strdup(prefix ? prefix : "");
    return r->prefix ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
}

static bool midnight_utc(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL)
        return false;
    if (*end == '.')
        while (*++end >= '0' && *end <= '9')
            ;
    if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0 && *end)
        return false;
    if (tm.tm_hour || tm.tm_min || tm.tm_sec)
        return false;
    *ms = (int64_t)timegm(&tm) * 1000;
    return true;
}

static int parse_rule(const struct xml_node *x, struct lc_rule *r,
                      struct koala_error **err)
{
    r->size_gt = r->size_lt = r->exp_days = r->exp_date_ms = -1;
    r->nc_days = r->nc_newer = r->abort_days = -1;
    _cleanup_free_ char *id = xml_child_text(x, "ID");
    _cleanup_free_ char *status = xml_child_text(x, "Status");
    if (id && strlen(id) > 255)
        return error_set(err, EINVAL, "InvalidArgument",
                         "ID length should not exceed allowed limit of 255");
    snprintf(r->id, sizeof(r->id), "%s", id ? id : "");
    if (status == NULL || (strcmp(str_trim(status), "Enabled") != 0 &&
                           strcmp(status, "Disabled") != 0))
        return malformed(err);
    r->enabled = strcmp(status, "Enabled") == 0;
    if (xml_child(x, "Transition") || xml_child(x, "NoncurrentVersionTransition"))
        return error_set(err, ENOTSUP, "NotImplemented",
                         "Walrus has one storage class: transitions are not "
                         "implemented.");
    if (parse_filter(x, r, err) < 0)
        return -1;
    const struct xml_node *e = xml_child(x, "Expiration");
    if (e) {
        _cleanup_free_ char *date = xml_child_text(e, "Date");
        _cleanup_free_ char *marker =
            xml_child_text(e, "ExpiredObjectDeleteMarker");
        if (int_child(e, "Days", &r->exp_days, err) < 0)
            return -1;
        int given = (r->exp_days >= 0) + (date != NULL) + (marker != NULL);
        if (given != 1)
            return malformed(err);
        if (r->exp_days == 0)
            return error_set(err, EINVAL, "InvalidArgument",
                             "'Days' for Expiration action must be a "
                             "positive integer");
        if (date && !midnight_utc(str_trim(date), &r->exp_date_ms))
            return error_set(err, EINVAL, "InvalidArgument",
                             "'Date' must be at midnight GMT");
        if (marker) {
            if (strcmp(str_trim(marker), "true") != 0 &&
                strcmp(marker, "false") != 0)
                return malformed(err);
            r->exp_marker = strcmp(marker, "true") == 0;
            if (r->tags.n)
                return error_set(err, EINVAL, "InvalidArgument",
                                 "ExpiredObjectDeleteMarker cannot be "
                                 "specified with tags.");
        }
    }
    const struct xml_node *nc = xml_child(x, "NoncurrentVersionExpiration");
    if (nc) {
        if (int_child(nc, "NoncurrentDays", &r->nc_days, err) < 0 ||
            int_child(nc, "NewerNoncurrentVersions", &r->nc_newer, err) < 0)
            return -1;
        if (r->nc_days <= 0)
            return error_set(err, EINVAL, "InvalidArgument",
                             "'NoncurrentDays' for NoncurrentVersionExpiration "
                             "action must be a positive integer");
    }
    const struct xml_node *ab = xml_child(x, "AbortIncompleteMultipartUpload");
    if (ab) {
        if (int_child(ab, "DaysAfterInitiation", &r->abort_days, err) < 0)
            return -1;
        if (r->abort_days <= 0)
            return error_set(err, EINVAL, "InvalidArgument",
                             "'DaysAfterInitiation' for "
                             "AbortIncompleteMultipartUpload action must be a "
                             "positive integer");
        if (r->tags.n || r->size_gt >= 0 || r->size_lt >= 0)
            return error_set(err, EINVAL, "InvalidRequest",
                             "AbortIncompleteMultipartUpload cannot be "
                             "specified with Tags or object sizes.");
    }
    if (!e && !nc && !ab)
        return error_set(err, EINVAL, "InvalidRequest",
                         "At least one action needs to be specified in a "
                         "rule");
    return 0;
}

int lc_parse(const char *body, size_t len, struct lc_config *c,
             struct koala_error **err)
{
    memset(c, 0, sizeof(*c));
    if (len == 0)
        return malformed(err);
    _cleanup_xml_doc_ struct xml_doc *doc =
        xml_parse(body, len, WALRUS_MAX_XML_BODY, err);
    if (doc == NULL)
        return -1;
    const struct xml_node *root = xml_root(doc);
    size_t n = 0;
    for (const struct xml_node *x = xml_next_child(root, NULL, "Rule"); x;
         x = xml_next_child(root, x, "Rule"))
        n++;
    if (strcmp(xml_name(root), "LifecycleConfiguration") != 0 || n == 0)
        return malformed(err);
    if (n > LC_MAX_RULES)
        return error_set(err, EINVAL, "InvalidRequest",
                         "A lifecycle configuration holds at most 1000 "
                         "rules.");
    c->rules = calloc(n, sizeof(*c->rules));
    if (c->rules == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    for (const struct xml_node *x = xml_next_child(root, NULL, "Rule"); x;
         x = xml_next_child(root, x, "Rule")) {
        struct lc_rule *r = &c->rules[c->n++];
        if (parse_rule(x, r, err) < 0)
            return -1;
        if (r->id[0] == '\0')
            snprintf(r->id, sizeof(r->id), "rule-%zu", c->n);
        for (size_t i = 0; i + 1 < c->n; i++)
            if (strcmp(c->rules[i].id, r->id) == 0)
                return error_set(err, EINVAL, "InvalidArgument",
                                 "Rule ID must be unique. Found same ID for "
                                 "more than one rule");
    }
    return 0;
}

static char *lc_to_xml(const struct lc_config *c, size_t *len)
{
    struct xml_writer *x = xml_writer_new("LifecycleConfiguration", S3_XMLNS);
    for (size_t i = 0; i < c->n; i++) {
        const struct lc_rule *r = &c->rules[i];
        xml_start(x, "Rule");
        xml_text_element(x, "ID", r->id);
        xml_start(x, "Filter");
        size_t kinds = (r->prefix[0] != '\0') + r->tags.n +
                       (r->size_gt >= 0) + (r->size_lt >= 0);
        if (kinds > 1)
            xml_start(x, "And");
        if (r->prefix[0] || kinds == 0)
            xml_text_element(x, "Prefix", r->prefix);
        for (size_t t = 0; t < r->tags.n; t++) {
            xml_start(x, "Tag");
            xml_text_element(x, "Key", r->tags.keys[t]);
            xml_text_element(x, "Value", r->tags.values[t]);
            xml_end(x);
        }
        if (r->size_gt >= 0)
            xml_u64_element(x, "ObjectSizeGreaterThan", (uint64_t)r->size_gt);
        if (r->size_lt >= 0)
            xml_u64_element(x, "ObjectSizeLessThan", (uint64_t)r->size_lt);
        if (kinds > 1)
            xml_end(x);
        xml_end(x);
        xml_text_element(x, "Status", r->enabled ? "Enabled" : "Disabled");
        if (r->exp_days >= 0 || r->exp_date_ms >= 0 || r->exp_marker) {
            xml_start(x, "Expiration");
            if (r->exp_days >= 0)
                xml_u64_element(x, "Days", (uint64_t)r->exp_days);
            if (r->exp_date_ms >= 0) {
                char d[25];
                xml_text_element(x, "Date", s3_iso_time(r->exp_date_ms, d));
            }
            if (r->exp_marker)
                xml_text_element(x, "ExpiredObjectDeleteMarker", "true");
            xml_end(x);
        }
        if (r->nc_days > 0) {
            xml_start(x, "NoncurrentVersionExpiration");
            xml_u64_element(x, "NoncurrentDays", (uint64_t)r->nc_days);
            if (r->nc_newer >= 0)
                xml_u64_element(x, "NewerNoncurrentVersions",
                                (uint64_t)r->nc_newer);
            xml_end(x);
        }
        if (r->abort_days > 0) {
            xml_start(x, "AbortIncompleteMultipartUpload");
            xml_u64_element(x, "DaysAfterInitiation", (uint64_t)r->abort_days);
            xml_end(x);
        }
        xml_end(x);
    }
    return xml_writer_finish(x, len);
}

bool lc_rule_matches(const struct lc_rule *r, const char *key, uint64_t size,
                     const char *tags)
{
    if (!r->enabled || !str_has_prefix(key, r->prefix))
        return false;
    if (r->size_gt >= 0 && size <= (uint64_t)r->size_gt)
        return false;
    if (r->size_lt >= 0 && size >= (uint64_t)r->size_lt)
        return false;
    if (r->tags.n == 0)
        return true;
    struct tag_set have;
    if (tags_decode(tags ? tags : "", &have) < 0)
        return false;
    bool all = true;
    for (size_t i = 0; i < r->tags.n && all; i++) {
        bool found = false;
        for (size_t j = 0; j < have.n && !found; j++)
            found = strcmp(have.keys[j], r->tags.keys[i]) == 0 &&
                    strcmp(have.values[j], r->tags.values[i]) == 0;
        all = found;
    }
    tag_set_clear(&have);
    return all;
}

int64_t lc_after_days(const struct walrus *w, int64_t from_ms, int64_t days)
{
    int64_t day_ms = (int64_t)w->opt.lifecycle_day_s * 1000;
    int64_t t = from_ms + days * day_ms;
    if (w->opt.lifecycle_day_s == 86400) /* S3: the next midnight UTC */
        t = (t + day_ms - 1) / day_ms * day_ms;
    return t;
}

int64_t lc_expiry(const struct walrus *w, const struct lc_config *c,
                  const char *key, uint64_t size, const char *tags,
                  int64_t mtime_ms, const char **rule_id)
{
    int64_t best = -1;
    for (size_t i = 0; i < c->n; i++) {
        const struct lc_rule *r = &c->rules[i];
        if ((r->exp_days < 0 && r->exp_date_ms < 0) ||
            !lc_rule_matches(r, key, size, tags))
            continue;
        int64_t t = r->exp_days >= 0 ? lc_after_days(w, mtime_ms, r->exp_days)
                                     : r->exp_date_ms;
        if (best < 0 || t < best) {
            best = t;
            *rule_id = r->id;
        }
    }
    return best;
}

int lc_load(struct db *db, const char *bucket, struct lc_config *c,
            struct koala_error **err)
{
    memset(c, 0, sizeof(*c));
    sqlite3_stmt *st =
        db_stmt(db, "SELECT lifecycle FROM buckets WHERE name=?", err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, bucket, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "reading lifecycle", err);
    if (rc == 0) {
        const char *x = (const char *)sqlite3_column_text(st, 0);
        size_t n = x ? strlen(x) : 0;
        rc = n ? lc_parse(x, n, c, err) : 1;
    }
    db_stmt_done(st);
    if (rc != 0)
        lc_config_free(c);
    return rc;
}

void s3_reply_expiration(struct s3_req *r, const struct bucket_row *b,
                         const struct object_row *o)
{
    if (!b->has_lifecycle || o->delete_marker)
        return;
    struct lc_config c;
    struct koala_error *err = NULL;
    if (lc_load(r->db, b->name, &c, &err) != 0) {
        error_free(err);
        return;
    }
    const char *id = NULL;
    int64_t t = lc_expiry(r->w, &c, o->key, o->size, o->tags, o->mtime_ms,
                          &id);
    if (t >= 0) {
        char date[30];
        struct buf v = {0};
        buf_printf(&v, "expiry-date=\"%s\", rule-id=\"%s\"",
                   time_format_http((time_t)(t / 1000), date), id);
        if (v.data)
            http_reply_header(r->http, "x-amz-expiration", v.data);
        buf_free(&v);
    }
    lc_config_free(&c);
}

/* ---- Put/Get/DeleteBucketLifecycleConfiguration ---- */

void s3_put_bucket_lifecycle(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct lc_config c;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    if (lc_parse(r->body.data, r->body.len, &c, &err) < 0) {
        lc_config_free(&c);
        return s3_fail(r, err);
    }
    size_t len;
    char *xml = lc_to_xml(&c, &len);
    lc_config_free(&c);
    if (xml == NULL)
        error_set(&err, ENOMEM, NULL, "out of memory");
    if (xml == NULL || s3_bucket_set_text(r, "lifecycle", xml, &err) < 0) {
        free(xml);
        return s3_fail(r, err);
    }
    free(xml);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}

void s3_get_bucket_lifecycle(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct lc_config c;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    int rc = lc_load(r->db, r->bucket, &c, &err);
    if (rc == 1)
        error_set(&err, ENOENT, "NoSuchLifecycleConfiguration",
                  "The lifecycle configuration does not exist");
    if (rc != 0)
        return s3_fail(r, err);
    size_t len;
    char *doc = lc_to_xml(&c, &len);
    lc_config_free(&c);
    s3_reply_xml(r, 200, doc, len);
}

void s3_delete_bucket_lifecycle(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0 ||
        s3_bucket_set_text(r, "lifecycle", "", &err) < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 204);
}
