/* metadata_options.c: the instance metadata service's options as the EC2
 * API has them (RunInstances MetadataOptions, DescribeInstances
 * metadataOptions and its metadata-options.* filters,
 * ModifyInstanceMetadataOptions), and getting them and the user data to
 * the cluster whose CC serves the instance's metadata (docs/metadata.md,
 * docs/wsdl/cc.wsdl: instanceMetadata, SetInstanceMetadata).
 *
 * DESIGN: each instance row keeps its options and two counters:
 * md_version, bumped by every change the CC must learn (the options, or
 * the user data through ModifyInstanceAttribute), and md_applied, the last
 * version its CC acknowledged.  DescribeInstances shows `pending` while
 * md_applied < md_version, then `applied`, as EC2 does.
 *
 * - A launch carries the reservation's metadata with the CC's RunInstances
 *   (launch.c); the CC's answer acknowledges version 1 of the instances it
 *   placed that are still at version 1 (an instance changed before it was
 *   placed is pushed like any change).
 * - A change commits the new version and answers `pending` at once; then
 *   clc_md_push, from the launch pool (clc_md_kick) and on every poll,
 *   sends each placed instance whose CC is behind a SetInstanceMetadata
 *   with everything (options and user data: the last one received wins)
 *   and records the version it sent once the CC answers.  A fault (a CC
 *   without the operation answers InvalidAction) or no answer leaves the
 *   version pending for the next round, so nothing is lost while a CC is
 *   down or older, nor across a restart of the CLC (the counters are the
 *   queue).
 * - One push per instance at a time (clc->md_pushing), and its row is read
 *   again once it is held: a push never sends older data than one before
 *   it, so the CC ends with the last version.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "id.h"
#include "log.h"
#include "secgroups.h"
#include "soap.h"

/* Instances pushed per round at most (the poller's round stays short). */
#define PUSH_BATCH 256

/* The options that take one of two values, in the order EC2 names them. */
static const struct md_enum {
    const char *param;  /* EC2's parameter */
    const char *filter; /* DescribeInstances filter */
    size_t off;         /* in struct clc_md_options */
    const char *a, *b;
} enums[] = {
    {"HttpTokens", "metadata-options.http-tokens",
     offsetof(struct clc_md_options, http_tokens), "optional", "required"},
    {"HttpEndpoint", "metadata-options.http-endpoint",
     offsetof(struct clc_md_options, http_endpoint), "enabled", "disabled"},
    {"HttpProtocolIpv6", "metadata-options.http-protocol-ipv6",
     offsetof(struct clc_md_options, http_ipv6), "enabled", "disabled"},
    {"InstanceMetadataTags", "metadata-options.instance-metadata-tags",
     offsetof(struct clc_md_options, tags), "enabled", "disabled"},
};

#define HOP_PARAM "HttpPutResponseHopLimit"
#define HOP_FILTER "metadata-options.http-put-response-hop-limit"
#define HOP_MIN 1
#define HOP_MAX 64

static char *field(struct clc_md_options *o, const struct md_enum *e)
{
    return (char *)o + e->off;
}

static const char *cfield(const struct clc_md_options *o,
                          const struct md_enum *e)
{
    return (const char *)o + e->off;
}

void clc_md_defaults(struct clc_md_options *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->http_tokens, sizeof(o->http_tokens), "optional");
    o->hop_limit = 1;
    snprintf(o->http_endpoint, sizeof(o->http_endpoint), "enabled");
    snprintf(o->http_ipv6, sizeof(o->http_ipv6), "disabled");
    snprintf(o->tags, sizeof(o->tags), "disabled");
}

/* Applies the options the request gives (prefix "MetadataOptions." or "")
 * onto o; EC2's InvalidParameterValue for a value it does not take (an
 * empty one included), o then partly changed. */
static int parse_options(const struct ec2_req *r, const char *prefix,
                         struct clc_md_options *o, struct koala_error **err)
{
    const char *v = ec2_paramf(r, "%s" HOP_PARAM, prefix);
    int64_t hop = 0;
    if (v && (str_to_i64(v, &hop) < 0 || hop < HOP_MIN || hop > HOP_MAX))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "A value of '%.64s' is not valid for " HOP_PARAM
                         ". Specify a value between %d and %d and try "
                         "again.",
                         v, HOP_MIN, HOP_MAX);
    if (v)
        o->hop_limit = (int)hop;
    for (size_t i = 0; i < ARRAY_SIZE(enums); i++) {
        const struct md_enum *e = &enums[i];
        v = ec2_paramf(r, "%s%s", prefix, e->param);
        if (v == NULL)
            continue;
        if (strcmp(v, e->a) != 0 && strcmp(v, e->b) != 0)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "A value of '%.64s' is not valid for %s. "
                             "Specify either '%s' or '%s' and try again.",
                             v, e->param, e->a, e->b);
        snprintf(field(o, e), 16, "%s", v);
    }
    return 0;
}

int clc_md_parse_run(const struct ec2_req *r, struct clc_md_options *o,
                     struct koala_error **err)
{
    clc_md_defaults(o);
    return parse_options(r, "MetadataOptions.", o, err);
}

int clc_md_store_new(struct db *db, const char *id,
                     const struct clc_md_options *o, struct koala_error **err)
{
    char hop[16];
    snprintf(hop, sizeof(hop), CLC_INT "%d", o->hop_limit);
    return clc_exec(db,
                    "UPDATE instances SET md_http_tokens = ?, md_hop_limit"
                    " = ?, md_http_endpoint = ?, md_http_ipv6 = ?, md_tags ="
                    " ?, md_version = 1, md_applied = 0 WHERE id = ?",
                    "storing metadata options", err, o->http_tokens, hop,
                    o->http_endpoint, o->http_ipv6, o->tags, id, NULL);
}

void clc_md_read_cols(sqlite3_stmt *st, int col, struct clc_md_options *o,
                      int64_t *version, int64_t *applied)
{
    clc_col(o->http_tokens, sizeof(o->http_tokens), st, col);
    o->hop_limit = sqlite3_column_int(st, col + 1);
    clc_col(o->http_endpoint, sizeof(o->http_endpoint), st, col + 2);
    clc_col(o->http_ipv6, sizeof(o->http_ipv6), st, col + 3);
    clc_col(o->tags, sizeof(o->tags), st, col + 4);
    *version = sqlite3_column_int64(st, col + 5);
    *applied = sqlite3_column_int64(st, col + 6);
}

/* EC2's InstanceMetadataOptionsResponse, inside element. */
static void write_options(struct xml_writer *w, const char *element,
                          const struct clc_md_options *o, bool applied)
{
    xml_start(w, element);
    xml_text_element(w, "state", applied ? "applied" : "pending");
    xml_text_element(w, "httpTokens", o->http_tokens);
    xml_u64_element(w, "httpPutResponseHopLimit", (uint64_t)o->hop_limit);
    xml_text_element(w, "httpEndpoint", o->http_endpoint);
    xml_text_element(w, "httpProtocolIpv6", o->http_ipv6);
    xml_text_element(w, "instanceMetadataTags", o->tags);
    xml_end(w);
}

void ec2_write_metadata_options(struct xml_writer *w,
                                const struct instance_row *x)
{
    write_options(w, "metadataOptions", &x->md, x->md_applied >= x->md_version);
}

const char *clc_md_filter_value(const struct instance_row *x, const char *f,
                                char *tmp, size_t size)
{
    if (strcmp(f, HOP_FILTER) == 0) {
        snprintf(tmp, size, "%d", x->md.hop_limit);
        return tmp;
    }
    for (size_t i = 0; i < ARRAY_SIZE(enums); i++)
        if (strcmp(f, enums[i].filter) == 0)
            return cfield(&x->md, &enums[i]);
    return NULL;
}

void clc_md_write_cc(struct xml_writer *w, const char *element,
                     const char *region, const char *groups,
                     const struct clc_md_options *o, bool with_user_data,
                     const char *user_data)
{
    xml_start(w, element);
    xml_text_element(w, "region", region);
    /* The instance's groups' names, in order (none: the CC serves
     * "default"). */
    for (const char *g = groups; g && *g;) {
        size_t len = strcspn(g, "\n");
        if (len)
            xml_text_elementf(w, "securityGroup", "%.*s", (int)len, g);
        g += len;
        if (*g == '\n')
            g++;
    }
    xml_text_element(w, "httpTokens", o->http_tokens);
    xml_text_element(w, "httpEndpoint", o->http_endpoint);
    xml_u64_element(w, "httpPutResponseHopLimit", (uint64_t)o->hop_limit);
    xml_text_element(w, "instanceMetadataTags", o->tags);
    if (with_user_data && user_data && *user_data)
        xml_text_element(w, "userData", user_data);
    else if (with_user_data)
        xml_bool_element(w, "noUserData", true);
    xml_end(w);
}

void clc_md_launch_acked(struct db *db, const struct xml_node *answer)
{
    for (const struct xml_node *n = xml_next_child(answer, NULL, "instance"); n;
         n = xml_next_child(answer, n, "instance")) {
        _cleanup_free_ char *id = xml_child_text(n, "instanceId");
        struct koala_error *err = NULL;
        if (id &&
            clc_exec(db,
                     "UPDATE instances SET md_applied = 1 WHERE id = ? AND"
                     " md_version = 1 AND md_applied < 1",
                     "recording metadata applied", &err, str_trim(id),
                     NULL) < 0) {
            /* Only shown pending longer: the poller pushes it again. */
            log_warn("%s: %s", id, error_message(err));
            error_free(err);
        }
    }
}

/* ---- ModifyInstanceMetadataOptions ---- */

void ec2_modify_instance_metadata_options(struct ec2_req *r)
{
    struct koala_error *err = NULL;
    struct clc_md_options o;
    clc_md_defaults(&o);
    const char *id = ec2_required(r, "InstanceId", &err);
    if (id == NULL)
        return ec2_fail(r, err);
    if (!id_resource_valid(id, "i-")) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", id);
        error_set(&err, EINVAL, "InvalidInstanceID.Malformed",
                  "Invalid id: \"%s\"", shown);
        return ec2_fail(r, err);
    }
    /* The values first (on a scratch copy): what is wrong with the request
     * itself is said whatever the instance. */
    if (parse_options(r, "", &o, &err) < 0)
        return ec2_fail(r, err);
    /* Read and written in one transaction: two changes of different
     * options at once both count. */
    if (db_begin(r->db, &err) < 0)
        return ec2_fail(r, err);
    sqlite3_stmt *st = db_stmt(r->db,
                               "SELECT i.state, " CLC_MD_COLS
                               " FROM instances i WHERE i.id = ? AND"
                               " i.owner = ?",
                               &err);
    char state[16] = "";
    int64_t version = 0, applied = 0;
    int rc = -1;
    if (st) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, r->who.id);
        rc = db_step_row(r->db, st, "looking up instance", &err);
        if (rc == 0) {
            clc_col(state, sizeof(state), st, 0);
            clc_md_read_cols(st, 1, &o, &version, &applied);
        }
        db_stmt_done(st);
    }
    if (rc == 1)
        error_set(&err, ENOENT, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", id);
    else if (rc == 0 && (strcmp(state, "terminated") == 0 ||
                         strcmp(state, "shutting-down") == 0))
        error_set(&err, EINVAL, "IncorrectInstanceState",
                  "The %s instance '%s' is not in a valid state for this "
                  "operation.",
                  state, id);
    /* Changes only what the request names (its values are valid). */
    if (err == NULL)
        parse_options(r, "", &o, &err);
    if (err || ec2_dry_run(r)) {
        db_rollback(r->db);
        if (err)
            ec2_fail(r, err);
        return;
    }
    char hop[16];
    snprintf(hop, sizeof(hop), CLC_INT "%d", o.hop_limit);
    if (clc_exec(r->db,
                 "UPDATE instances SET md_http_tokens = ?, md_hop_limit = ?,"
                 " md_http_endpoint = ?, md_http_ipv6 = ?, md_tags = ?,"
                 " md_version = md_version + 1 WHERE id = ?",
                 "changing metadata options", &err, o.http_tokens, hop,
                 o.http_endpoint, o.http_ipv6, o.tags, id, NULL) < 0 ||
        db_commit(r->db, &err) < 0) {
        db_rollback(r->db);
        return ec2_fail(r, err);
    }
    clc_md_kick(r->clc);
    struct xml_writer *w = ec2_reply_start(r, "ModifyInstanceMetadataOptions");
    xml_text_element(w, "instanceId", id);
    write_options(w, "instanceMetadataOptions", &o, false);
    ec2_reply_finish(r, w);
}

/* ---- the push to the clusters ---- */

struct md_target {
    char id[32];
    char cluster[64];
};

/* What one instance's CC must learn, read once its push is held: 0 to
 * send, 1 nothing (applied meanwhile, or gone), -1 error. */
static int load_push(struct db *db, const char *id, struct clc_md_options *o,
                     int64_t *version, char **user_data,
                     struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT i.user_data, " CLC_MD_COLS
                               " FROM instances i WHERE i.id = ? AND"
                               " i.md_applied < i.md_version AND"
                               " i.state != 'terminated'",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = db_step_row(db, st, "reading metadata to push", err);
    if (rc == 0) {
        int64_t applied;
        const unsigned char *ud = sqlite3_column_text(st, 0);
        clc_md_read_cols(st, 1, o, version, &applied);
        *user_data = ud ? strdup((const char *)ud) : NULL;
        if (ud && *user_data == NULL)
            rc = error_set(err, ENOMEM, NULL, "out of memory");
    }
    db_stmt_done(st);
    return rc;
}

/* Is this a failure to wait out quietly: the CC does not answer, does not
 * have the operation yet, or does not know the instance yet (the poller
 * reaps instances their cluster lost)? */
static bool expected_failure(const struct koala_error *e)
{
    const char *code = error_code(e);
    return strcmp(code, "ServiceUnavailable") == 0 ||
           strcmp(code, "InvalidAction") == 0 ||
           strcmp(code, "InvalidInstanceID.NotFound") == 0;
}

/* One instance's SetInstanceMetadata on c (its cluster's CC): 0 sent and
 * recorded (or nothing to send), -1 not acknowledged (err). */
static int push_one(struct clc *clc, struct db *db, struct soap_client *c,
                    const char *id, struct koala_error **err)
{
    struct clc_md_options o;
    int64_t version = 0;
    char *user_data = NULL;
    int rc = load_push(db, id, &o, &version, &user_data, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    char *groups = NULL;
    if (clc_sg_names(db, id, NULL, &groups, err) < 0) {
        free(user_data);
        return -1;
    }
    struct xml_writer *w = soap_start("SetInstanceMetadata", CC_NS);
    xml_text_element(w, "instanceId", id);
    clc_md_write_cc(w, "metadata", clc->region, groups, &o, true, user_data);
    free(groups);
    free(user_data);
    size_t len;
    char *rq = soap_finish(w, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body;
    if (soap_call(c, "SetInstanceMetadata", rq, len, &doc, &body, err) < 0) {
        xml_doc_free(doc);
        return -1;
    }
    _cleanup_free_ char *echo = xml_child_text(body, "instanceId");
    xml_doc_free(doc);
    if (echo && strcmp(str_trim(echo), id) != 0)
        return error_set(err, EPROTO, "InternalError",
                         "SetInstanceMetadata for %s answered for %s", id,
                         echo);
    char v[24];
    snprintf(v, sizeof(v), CLC_INT "%lld", (long long)version);
    rc = clc_exec(db,
                  "UPDATE instances SET md_applied = MAX(md_applied, ?)"
                  " WHERE id = ?",
                  "recording metadata applied", err, v, id, NULL);
    if (rc == 0)
        log_debug("%s: metadata version %lld applied", id, (long long)version);
    return rc;
}

/* The placed instances whose CC is behind, by cluster; *out malloc'd. */
static int list_targets(struct db *db, struct md_target **out, size_t *n,
                        struct koala_error **err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = db_stmt(
        db,
        "SELECT id, cluster FROM instances WHERE md_applied < md_version AND"
        " node != '' AND state != 'terminated' AND desired != 'terminated'"
        " ORDER BY cluster, id LIMIT ?",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int(st, 1, PUSH_BATCH);
    struct md_target *v = calloc(PUSH_BATCH, sizeof(*v));
    int rc = v ? 0 : error_set(err, ENOMEM, NULL, "out of memory");
    while (rc == 0 && *n < PUSH_BATCH && sqlite3_step(st) == SQLITE_ROW) {
        clc_col(v[*n].id, sizeof(v[*n].id), st, 0);
        clc_col(v[*n].cluster, sizeof(v[*n].cluster), st, 1);
        (*n)++;
    }
    db_stmt_done(st);
    if (rc < 0) {
        free(v);
        *n = 0;
        return -1;
    }
    *out = v;
    return 0;
}

void clc_md_push(struct clc *clc, struct db *db)
{
    struct koala_error *err = NULL;
    struct md_target *t = NULL;
    size_t n = 0;
    if (list_targets(db, &t, &n, &err) < 0) {
        log_error("metadata push: %s", error_message(err));
        error_free(err);
        return;
    }
    struct soap_client *c = NULL;
    bool skip_cluster = false; /* its CC did not answer this round */
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(t[i].cluster, t[i - 1].cluster) != 0) {
            soap_client_free(c);
            c = clc_cc_client(clc, db, t[i].cluster, &err);
            skip_cluster = c == NULL;
            if (c == NULL) {
                log_warn("metadata push to cluster %s: %s", t[i].cluster,
                         error_message(err));
                error_free(err);
                err = NULL;
            }
        }
        if (skip_cluster || !claims_take(clc->md_pushing, t[i].id))
            continue; /* under way elsewhere: that push sends the latest */
        int rc = push_one(clc, db, c, t[i].id, &err);
        claims_drop(clc->md_pushing, t[i].id);
        if (rc == 0)
            continue;
        /* Not acknowledged: still pending, sent again next round. */
        if (expected_failure(err))
            log_debug("%s: metadata not applied by cluster %s yet: %s: %s",
                      t[i].id, t[i].cluster, error_code(err),
                      error_message(err));
        else
            log_warn("%s: metadata push to cluster %s: %s: %s", t[i].id,
                     t[i].cluster, error_code(err), error_message(err));
        /* A CC that does not answer would cost each of its instances the
         * whole timeout: the rest wait for the next round. */
        skip_cluster = strcmp(error_code(err), "ServiceUnavailable") == 0;
        error_free(err);
        err = NULL;
    }
    soap_client_free(c);
    free(t);
}

struct md_job {
    struct clc *clc;
};

static void push_job(void *arg)
{
    struct md_job *job = arg;
    struct koala_error *err = NULL;
    struct db *db = db_pool_get(job->clc->db, &err);
    if (db)
        clc_md_push(job->clc, db);
    else
        log_error("metadata push: %s", error_message(err));
    error_free(err);
    db_pool_put(job->clc->db, db);
    free(job);
}

void clc_md_kick(struct clc *clc)
{
    struct md_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return; /* the poller pushes it */
    job->clc = clc;
    if (workpool_submit(clc->launcher, push_job, job) < 0)
        free(job);
}
