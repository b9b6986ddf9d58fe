/* objlock.c: S3 Object Lock: write-once-read-many versions.
 *
 * A bucket created with x-amz-bucket-object-lock-enabled (or a versioned
 * one given an ObjectLockConfiguration) has object lock: its versioning
 * stays Enabled, so a write never replaces a version in place, and each
 * version may carry a retention (GOVERNANCE or COMPLIANCE until a date) and
 * a legal hold.  A version under either cannot be deleted by anyone:
 * COMPLIANCE until its date, a legal hold until it is lifted, GOVERNANCE
 * unless the request says x-amz-bypass-governance-retention: true and may
 * (the bucket owner, or whom the policy grants s3:BypassGovernanceRetention).
 * A COMPLIANCE retention is never shortened nor turned into GOVERNANCE; a
 * GOVERNANCE one only with the bypass.  The bucket's default retention
 * applies to new versions that ask for none.
 *
 * Stored with the version (lock_mode, lock_until_ms, legal_hold on objects,
 * versions and uploads; schema v8) and the bucket (object_lock,
 * lock_default "MODE:days").
 */
#define LOG_MODULE "walrus"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "walrus.h"
#include "xml.h"

static int malformed(struct koala_error **err)
{
    return error_set(err, EINVAL, "MalformedXML",
                     "The XML you provided was not well-formed or did not "
                     "validate against our published schema");
}

static int no_lock(struct koala_error **err)
{
    return error_set(err, EINVAL, "InvalidRequest",
                     "Bucket is missing Object Lock Configuration");
}

/* ISO 8601 ("2030-01-01T00:00:00Z", fractions allowed) to ms. */
static bool parse_iso(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL)
        return false;
    int64_t frac = 0;
    if (*end == '.') {
        int digits = 0;
        for (end++; *end >= '0' && *end <= '9'; end++)
            if (digits++ < 3)
                frac = frac * 10 + (*end - '0');
        while (digits > 0 && digits < 3) {
            frac *= 10;
            digits++;
        }
    }
    if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0 && *end != '\0')
        return false;
    *ms = (int64_t)timegm(&tm) * 1000 + frac;
    return true;
}

static bool valid_mode(const char *m)
{
    return strcmp(m, "GOVERNANCE") == 0 || strcmp(m, "COMPLIANCE") == 0;
}

int objlock_from_request(struct s3_req *r, const struct bucket_row *b,
                         struct object_lock *l, struct koala_error **err)
{
    memset(l, 0, sizeof(*l));
    const char *mode = s3_header(r, "x-amz-object-lock-mode");
    const char *until = s3_header(r, "x-amz-object-lock-retain-until-date");
    const char *hold = s3_header(r, "x-amz-object-lock-legal-hold");
    if ((mode || until || hold) && !b->object_lock)
        return no_lock(err);
    if ((mode == NULL) != (until == NULL))
        return error_set(err, EINVAL, "InvalidArgument",
                         "x-amz-object-lock-retain-until-date and "
                         "x-amz-object-lock-mode must both be supplied");
    if (mode) {
        if (!valid_mode(mode))
            return error_set(err, EINVAL, "InvalidArgument",
                             "Unknown wormMode directive.");
        if (!parse_iso(until, &l->until_ms))
            return error_set(err, EINVAL, "InvalidArgument",
                             "The retain until date must be an ISO 8601 "
                             "date");
        if (l->until_ms <= time_now_ms())
            return error_set(err, EINVAL, "InvalidArgument",
                             "The retain until date must be in the future!");
        snprintf(l->mode, sizeof(l->mode), "%s", mode);
    } else if (b->lock_default[0]) {
        /* "MODE:days" */
        char m[16];
        long days;
        if (sscanf(b->lock_default, "%15[A-Z]:%ld", m, &days) == 2) {
            snprintf(l->mode, sizeof(l->mode), "%s", m);
            l->until_ms = time_now_ms() + (int64_t)days * 86400000;
        }
    }
    if (hold) {
        if (strcmp(hold, "ON") != 0 && strcmp(hold, "OFF") != 0)
            return error_set(err, EINVAL, "InvalidArgument",
                             "Legal Hold must be either of 'ON' or 'OFF'");
        l->legal_hold = strcmp(hold, "ON") == 0;
    }
    return 0;
}

void objlock_apply(struct object_row *o, const struct object_lock *l)
{
    snprintf(o->lock_mode, sizeof(o->lock_mode), "%s", l->mode);
    o->lock_until_ms = l->until_ms;
    o->legal_hold = l->legal_hold;
}

void objlock_reply_headers(struct s3_req *r, const struct object_row *o)
{
    if (o->lock_mode[0] && o->lock_until_ms > 0) {
        char date[25];
        http_reply_header(r->http, "x-amz-object-lock-mode", o->lock_mode);
        http_reply_header(r->http, "x-amz-object-lock-retain-until-date",
                          s3_iso_time(o->lock_until_ms, date));
    }
    if (o->legal_hold)
        http_reply_header(r->http, "x-amz-object-lock-legal-hold", "ON");
}

int objlock_may_delete(const struct object_row *o, bool bypass,
                       struct koala_error **err)
{
    if (o->legal_hold)
        return error_set(err, EACCES, "AccessDenied",
                         "Access Denied because object protected by object "
                         "lock.");
    bool retained = o->lock_mode[0] && o->lock_until_ms > time_now_ms();
    if (retained &&
        (strcmp(o->lock_mode, "COMPLIANCE") == 0 || !bypass))
        return error_set(err, EACCES, "AccessDenied",
                         "Access Denied because object protected by object "
                         "lock.");
    return 0;
}

bool objlock_bypass(struct s3_req *r, const struct bucket_row *b,
                    const char *key)
{
    const char *h = s3_header(r, "x-amz-bypass-governance-retention");
    if (h == NULL || strcasecmp(h, "true") != 0)
        return false;
    if (!r->who.anonymous && r->who.account_id == b->owner)
        return true;
    struct koala_error *err = NULL;
    enum policy_effect e = s3_policy_effect(
        r, b, "s3:BypassGovernanceRetention", key, NULL, &err);
    error_free(err);
    return e == POLICY_ALLOW;
}

/* ---- ObjectLockConfiguration ---- */

void s3_get_object_lock_config(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    if (s3_bucket_access(r, PERM_OWNER, &b, &err) < 0)
        return s3_fail(r, err);
    if (!b.object_lock) {
        error_set(&err, ENOENT, "ObjectLockConfigurationNotFoundError",
                  "Object Lock configuration does not exist for this bucket");
        return s3_fail(r, err);
    }
    struct xml_writer *x = xml_writer_new("ObjectLockConfiguration", S3_XMLNS);
    xml_text_element(x, "ObjectLockEnabled", "Enabled");
    char m[16];
    long days;
    if (sscanf(b.lock_default, "%15[A-Z]:%ld", m, &days) == 2) {
        xml_start(x, "Rule");
        xml_start(x, "DefaultRetention");
        xml_text_element(x, "Mode", m);
        if (days % 365 == 0)
            xml_u64_element(x, "Years", (uint64_t)(days / 365));
        else
            xml_u64_element(x, "Days", (uint64_t)days);
        xml_end(x);
        xml_end(x);
    }
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

void s3_put_object_lock_config(struct s3_req *r)
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
            malformed(&err);
        return s3_fail(r, err);
    }
    const struct xml_node *root = xml_root(doc);
    _cleanup_free_ char *enabled = xml_child_text(root, "ObjectLockEnabled");
    const struct xml_node *rule = xml_child(root, "Rule");
    const struct xml_node *dr = rule ? xml_child(rule, "DefaultRetention")
                                     : NULL;
    _cleanup_free_ char *mode = dr ? xml_child_text(dr, "Mode") : NULL;
    _cleanup_free_ char *days = dr ? xml_child_text(dr, "Days") : NULL;
    _cleanup_free_ char *years = dr ? xml_child_text(dr, "Years") : NULL;
    if (strcmp(xml_name(root), "ObjectLockConfiguration") != 0 ||
        enabled == NULL || strcmp(str_trim(enabled), "Enabled") != 0 ||
        (rule && dr == NULL) || (dr && (mode == NULL || !valid_mode(mode))) ||
        (dr && (days == NULL) == (years == NULL))) {
        malformed(&err);
        return s3_fail(r, err);
    }
    char def[40] = "";
    if (dr) {
        int64_t n;
        if (str_to_i64(str_trim(days ? days : years), &n) < 0 || n <= 0 ||
            n > 36500) {
            error_set(&err, EINVAL, "InvalidArgument",
                      "Default retention period must be a positive integer "
                      "value.");
            return s3_fail(r, err);
        }
        snprintf(def, sizeof(def), "%s:%lld", mode,
                 (long long)(years ? n * 365 : n));
    }
    if (!b.object_lock && strcmp(b.versioning, "Enabled") != 0) {
        error_set(&err, EBUSY, "InvalidBucketState",
                  "Versioning must be 'Enabled' on the bucket to apply a "
                  "Object Lock configuration");
        return s3_fail(r, err);
    }
    sqlite3_stmt *st = db_stmt(
        r->db,
        "UPDATE buckets SET object_lock=1, versioning='Enabled',"
        " lock_default=? WHERE name=?",
        &err);
    if (st == NULL)
        return s3_fail(r, err);
    sqlite3_bind_text(st, 1, def, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->bucket, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE) {
        db_error(r->db, "setting object lock", &err);
        return s3_fail(r, err);
    }
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}

/* ---- retention and legal hold of a version ---- */

static int load_locked(struct s3_req *r, unsigned perm, struct bucket_row *b,
                       struct object_row *o, struct koala_error **err)
{
    if (s3_load_object(r, 0, b, o, err) < 0)
        return -1;
    int rc = 0;
    if (!b->object_lock)
        rc = no_lock(err);
    else if (s3_authorize(r, b, s3_op_action(r), r->key, o,
                          perm == PERM_READ ? &o->acl : &b->acl, perm,
                          err) < 0)
        rc = -1;
    if (rc < 0)
        object_row_clear(o);
    return rc;
}

static int none_here(struct koala_error **err)
{
    return error_set(err, ENOENT, "NoSuchObjectLockConfiguration",
                     "The specified object does not have a ObjectLock "
                     "configuration");
}

void s3_get_object_retention(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct object_row o;
    if (load_locked(r, PERM_READ, &b, &o, &err) < 0)
        return s3_fail(r, err);
    if (o.lock_mode[0] == '\0') {
        object_row_clear(&o);
        none_here(&err);
        return s3_fail(r, err);
    }
    char date[25];
    struct xml_writer *x = xml_writer_new("Retention", S3_XMLNS);
    xml_text_element(x, "Mode", o.lock_mode);
    xml_text_element(x, "RetainUntilDate", s3_iso_time(o.lock_until_ms, date));
    object_row_clear(&o);
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

static int update_version(struct s3_req *r, const struct object_row *o,
                          const char *sql_objects, const char *sql_versions,
                          const char *mode, int64_t until, int hold,
                          struct koala_error **err)
{
    const char *sql[] = {sql_objects, sql_versions};
    for (size_t i = 0; i < 2; i++) {
        sqlite3_stmt *st = db_stmt(r->db, sql[i], err);
        if (st == NULL)
            return -1;
        if (mode) {
            sqlite3_bind_text(st, 1, mode, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, until);
        } else {
            sqlite3_bind_int(st, 1, hold);
            sqlite3_bind_null(st, 2);
        }
        sqlite3_bind_text(st, 3, r->bucket, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, o->version_id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        db_stmt_done(st);
        if (rc != SQLITE_DONE)
            return db_error(r->db, "updating object lock", err);
        if (sqlite3_changes(db_handle(r->db)) > 0)
            return 0;
    }
    return error_set(err, ENOENT, "NoSuchKey",
                     "The specified key does not exist.");
}

void s3_put_object_retention(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct object_row o;
    if (load_locked(r, PERM_WRITE, &b, &o, &err) < 0)
        return s3_fail(r, err);
    _cleanup_xml_doc_ struct xml_doc *doc =
        r->body.len ? xml_parse(r->body.data, r->body.len, WALRUS_MAX_XML_BODY,
                                &err)
                    : NULL;
    const struct xml_node *root = doc ? xml_root(doc) : NULL;
    _cleanup_free_ char *mode = root ? xml_child_text(root, "Mode") : NULL;
    _cleanup_free_ char *until = root ? xml_child_text(root, "RetainUntilDate")
                                      : NULL;
    int64_t until_ms = 0;
    int rc = 0;
    if (root == NULL || strcmp(xml_name(root), "Retention") != 0 ||
        (mode == NULL) != (until == NULL) ||
        (mode && (!valid_mode(str_trim(mode)) ||
                  !parse_iso(str_trim(until), &until_ms)))) {
        if (err == NULL)
            malformed(&err);
        rc = -1;
    } else if (mode && until_ms <= time_now_ms()) {
        rc = error_set(&err, EINVAL, "InvalidArgument",
                       "The retain until date must be in the future!");
    } else if (o.lock_mode[0] && o.lock_until_ms > time_now_ms()) {
        /* Loosening an existing retention: never for COMPLIANCE, for
         * GOVERNANCE only with the bypass. */
        bool looser = mode == NULL || until_ms < o.lock_until_ms ||
                      strcmp(mode, o.lock_mode) != 0;
        bool compliance = strcmp(o.lock_mode, "COMPLIANCE") == 0;
        if (looser && (compliance || !objlock_bypass(r, &b, r->key)))
            rc = error_set(&err, EACCES, "AccessDenied",
                           "Access Denied because object protected by "
                           "object lock.");
    }
    if (rc == 0)
        rc = update_version(
            r, &o,
            "UPDATE objects SET lock_mode=?1, lock_until_ms=?2 WHERE"
            " bucket=?3 AND key=?4 AND version_id=?5",
            "UPDATE versions SET lock_mode=?1, lock_until_ms=?2 WHERE"
            " bucket=?3 AND key=?4 AND version_id=?5",
            mode ? mode : "", until_ms, 0, &err);
    if (rc == 0)
        s3_reply_version(r, o.version_id, true);
    object_row_clear(&o);
    if (rc < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}

void s3_get_object_legal_hold(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct object_row o;
    if (load_locked(r, PERM_READ, &b, &o, &err) < 0)
        return s3_fail(r, err);
    bool on = o.legal_hold;
    object_row_clear(&o);
    struct xml_writer *x = xml_writer_new("LegalHold", S3_XMLNS);
    xml_text_element(x, "Status", on ? "ON" : "OFF");
    size_t len;
    char *doc = xml_writer_finish(x, &len);
    s3_reply_xml(r, 200, doc, len);
}

void s3_put_object_legal_hold(struct s3_req *r)
{
    struct koala_error *err = NULL;
    struct bucket_row b;
    struct object_row o;
    if (load_locked(r, PERM_WRITE, &b, &o, &err) < 0)
        return s3_fail(r, err);
    _cleanup_xml_doc_ struct xml_doc *doc =
        r->body.len ? xml_parse(r->body.data, r->body.len, WALRUS_MAX_XML_BODY,
                                &err)
                    : NULL;
    const struct xml_node *root = doc ? xml_root(doc) : NULL;
    _cleanup_free_ char *status = root ? xml_child_text(root, "Status") : NULL;
    int rc = 0;
    if (root == NULL || strcmp(xml_name(root), "LegalHold") != 0 ||
        status == NULL ||
        (strcmp(str_trim(status), "ON") != 0 && strcmp(status, "OFF") != 0)) {
        if (err == NULL)
            malformed(&err);
        rc = -1;
    }
    if (rc == 0)
        rc = update_version(r, &o,
                            "UPDATE objects SET legal_hold=?1 WHERE"
                            " ?2 IS NULL AND bucket=?3 AND key=?4 AND"
                            " version_id=?5",
                            "UPDATE versions SET legal_hold=?1 WHERE"
                            " ?2 IS NULL AND bucket=?3 AND key=?4 AND"
                            " version_id=?5",
                            NULL, 0, strcmp(status, "ON") == 0, &err);
    if (rc == 0)
        s3_reply_version(r, o.version_id, true);
    object_row_clear(&o);
    if (rc < 0)
        return s3_fail(r, err);
    http_reply_header(r->http, "x-amz-request-id", r->request_id);
    http_reply_empty(r->http, 200);
}
