/* imeta.c: an instance's metadata beyond its record (region, security
 * groups, user data, key, the metadata service's options): parsed from
 * the CLC's RunInstances and SetInstanceMetadata (cc.wsdl
 * instanceMetadata), kept in cc.db's instance_meta (deleted with the
 * instance by a trigger), read by the metadata service. */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imds.h"
#include "log.h"
#include "soap.h"

void imeta_defaults(struct cc_imeta *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->http_tokens, sizeof(m->http_tokens), "optional");
    snprintf(m->http_endpoint, sizeof(m->http_endpoint), "enabled");
    snprintf(m->tags, sizeof(m->tags), "disabled");
    m->hop_limit = 1;
}

void imeta_clear(struct cc_imeta *m)
{
    if (m == NULL)
        return;
    free(m->groups);
    free(m->user_data);
    free(m->key_name);
    free(m->public_key);
    imeta_defaults(m);
}

static bool one_of(const char *v, const char *a, const char *b)
{
    return strcmp(v, a) == 0 || strcmp(v, b) == 0;
}

/* A group name as EC2 allows them: 1..255 printable ASCII. */
static bool group_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

int imeta_parse(const struct xml_node *n, struct cc_imeta *m,
                struct koala_error **err)
{
    _cleanup_free_ char *region = xml_child_text(n, "region"),
                        *tokens = xml_child_text(n, "httpTokens"),
                        *endpoint = xml_child_text(n, "httpEndpoint"),
                        *tags = xml_child_text(n, "instanceMetadataTags"),
                        *user_data = xml_child_text(n, "userData"),
                        *no_ud = xml_child_text(n, "noUserData");
    long long hop;
    if (soap_int(n, "httpPutResponseHopLimit", 1, &hop, err) < 0)
        return -1;
    if (region == NULL || tokens == NULL || endpoint == NULL)
        return error_set(err, EINVAL, "MissingParameter",
                         "metadata needs region, httpTokens and httpEndpoint");
    str_trim(region);
    str_trim(tokens);
    str_trim(endpoint);
    if (tags)
        str_trim(tags);
    if (*region == '\0' || strlen(region) >= sizeof(m->region) ||
        strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
            strlen(region))
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "bad region '%s'", region);
    if (!one_of(tokens, "optional", "required") ||
        !one_of(endpoint, "enabled", "disabled") ||
        (tags && !one_of(tags, "enabled", "disabled")) || hop < 1 || hop > 64)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "metadata options: httpTokens optional|required, "
                         "httpEndpoint and instanceMetadataTags "
                         "enabled|disabled, httpPutResponseHopLimit 1..64");
    bool drop_ud = no_ud && (strcmp(str_trim(no_ud), "true") == 0 ||
                             strcmp(no_ud, "1") == 0);
    if (user_data) {
        str_trim(user_data);
        size_t len = 0;
        unsigned char *raw = str_base64_decode(user_data, &len);
        free(raw);
        if ((raw == NULL && *user_data) || len > IMDS_USERDATA_MAX)
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "userData must be base64 of at most %u bytes",
                             IMDS_USERDATA_MAX);
    }
    struct buf groups = {0};
    size_t n_groups = 0;
    for (const struct xml_node *g = xml_next_child(n, NULL, "securityGroup"); g;
         g = xml_next_child(n, g, "securityGroup")) {
        _cleanup_free_ char *name = xml_text(g);
        if (name == NULL)
            name = strdup("");
        if (name == NULL || !group_name_ok(str_trim(name)) ||
            ++n_groups > IMDS_MAX_GROUPS) {
            buf_free(&groups);
            return error_set(err, EINVAL, "InvalidParameterValue",
                             "securityGroup: at most %d names of 1 to 255 "
                             "printable characters",
                             IMDS_MAX_GROUPS);
        }
        buf_printf(&groups, "%s%s", groups.len ? "\n" : "", name);
    }
    if (n_groups && groups.data == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    snprintf(m->region, sizeof(m->region), "%s", region);
    snprintf(m->http_tokens, sizeof(m->http_tokens), "%s", tokens);
    snprintf(m->http_endpoint, sizeof(m->http_endpoint), "%s", endpoint);
    if (tags)
        snprintf(m->tags, sizeof(m->tags), "%s", tags);
    m->hop_limit = (int)hop;
    free(m->groups);
    m->groups = n_groups ? buf_steal(&groups) : NULL;
    if (user_data || drop_ud) {
        free(m->user_data);
        m->user_data = NULL;
        if (user_data && *user_data) {
            m->user_data = user_data;
            user_data = NULL;
        }
    }
    return 0;
}

static void bind_text(sqlite3_stmt *st, int col, const char *s)
{
    if (s)
        sqlite3_bind_text(st, col, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, col);
}

int store_imeta_put(struct db *db, const char *id, const struct cc_imeta *m,
                    struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(
        db,
        "INSERT OR REPLACE INTO instance_meta (id, region, groups, "
        "http_tokens, http_endpoint, hop_limit, tags, user_data, key_name, "
        "public_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, m->region, -1, SQLITE_TRANSIENT);
    bind_text(st, 3, m->groups);
    sqlite3_bind_text(st, 4, m->http_tokens, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, m->http_endpoint, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 6, m->hop_limit);
    sqlite3_bind_text(st, 7, m->tags, -1, SQLITE_TRANSIENT);
    bind_text(st, 8, m->user_data);
    bind_text(st, 9, m->key_name);
    bind_text(st, 10, m->public_key);
    int rc = sqlite3_step(st);
    db_stmt_done(st);
    if (rc != SQLITE_DONE)
        return db_error(db, "writing instance metadata", err);
    return 0;
}

static char *col_dup(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? strdup((const char *)t) : NULL;
}

int store_imeta_get(struct db *db, const char *id, struct cc_imeta *m,
                    struct koala_error **err)
{
    imeta_defaults(m);
    sqlite3_stmt *st =
        db_stmt(db,
                "SELECT region, groups, http_tokens, http_endpoint, "
                "hop_limit, tags, user_data, key_name, public_key FROM "
                "instance_meta WHERE id = ?",
                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t;
        if ((t = sqlite3_column_text(st, 0)))
            snprintf(m->region, sizeof(m->region), "%s", t);
        m->groups = col_dup(st, 1);
        if ((t = sqlite3_column_text(st, 2)))
            snprintf(m->http_tokens, sizeof(m->http_tokens), "%s", t);
        if ((t = sqlite3_column_text(st, 3)))
            snprintf(m->http_endpoint, sizeof(m->http_endpoint), "%s", t);
        m->hop_limit = sqlite3_column_int(st, 4);
        if ((t = sqlite3_column_text(st, 5)))
            snprintf(m->tags, sizeof(m->tags), "%s", t);
        m->user_data = col_dup(st, 6);
        m->key_name = col_dup(st, 7);
        m->public_key = col_dup(st, 8);
    }
    db_stmt_done(st);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return 1;
    return db_error(db, "reading instance metadata", err);
}

int store_instance_by_ip(struct db *db, const char *network, const char *ip,
                         struct cc_instance *out, struct koala_error **err)
{
    sqlite3_stmt *st = db_stmt(db,
                               "SELECT instance_id FROM addresses WHERE "
                               "network = ? AND ip_text = ?",
                               err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, network, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, ip, -1, SQLITE_TRANSIENT);
    char id[32] = "";
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(id, sizeof(id), "%s", t ? (const char *)t : "");
    }
    db_stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(db, "looking up an address", err);
    if (rc == SQLITE_DONE || id[0] == '\0')
        return 1;
    rc = store_instance_get(db, id, out, err);
    if (rc == 0 && strcmp(out->state, "terminated") == 0)
        return 1;
    return rc;
}

void cc_op_set_instance_metadata(struct cc_req *r)
{
    struct koala_error *err = NULL;
    struct cc_imeta m;
    imeta_defaults(&m);
    _cleanup_free_ char *id = soap_text(r->op, "instanceId", &err);
    const struct xml_node *md = xml_child(r->op, "metadata");
    struct db *db = NULL;
    if (id == NULL)
        goto fail;
    str_trim(id);
    if (!cc_instance_id_valid(id)) {
        error_set(&err, EINVAL, "InvalidInstanceID.Malformed",
                  "Invalid id: \"%s\"", id);
        goto fail;
    }
    if (md == NULL) {
        error_set(&err, EINVAL, "MissingParameter",
                  "The request must contain the parameter metadata");
        goto fail;
    }
    if ((db = cc_req_db(r, &err)) == NULL || db_begin(db, &err) < 0)
        goto fail;
    struct cc_instance in;
    int rc = store_instance_get(db, id, &in, &err);
    if (rc == 0)
        rc = store_imeta_get(db, id, &m, &err) < 0 ? -1 : 0;
    if (rc == 0 && imeta_parse(md, &m, &err) == 0 &&
        store_imeta_put(db, id, &m, &err) == 0 && db_commit(db, &err) == 0) {
        log_info("instance %s: metadata set (tokens %s, endpoint %s)", id,
                 m.http_tokens, m.http_endpoint);
        imeta_clear(&m);
        struct xml_writer *w = soap_start("SetInstanceMetadataResponse", CC_NS);
        xml_text_element(w, "instanceId", id);
        cc_reply(r, w);
        return;
    }
    db_rollback(db);
    if (rc == 1)
        error_set(&err, ENOENT, "InvalidInstanceID.NotFound",
                  "The instance ID '%s' does not exist", id);
fail:
    imeta_clear(&m);
    cc_fail(r, err);
}
