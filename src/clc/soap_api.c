/* soap_api.c: the CLC's interface for the other components (urn:koala:clc,
 * docs/wsdl/clc.wsdl), served over mutual TLS: NotifyInstanceState from
 * the CCs, GetAccessKey from Walrus (so one set of credentials works for
 * EC2 and S3), DescribeService from anyone with a certificate.
 *
 * A caller is known by its certificate's common name, koala-<kind>-<name>:
 * a cluster may only report its own instances, only Walrus may read keys.
 */
#define LOG_MODULE "clc"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clc.h"
#include "log.h"
#include "soap.h"

static bool peer_is(struct http_request *http, const char *kind,
                    const char *name)
{
    const char *cn = http_request_peer_name(http);
    char want[160];
    if (cn == NULL)
        return false;
    if (name) {
        snprintf(want, sizeof(want), "koala-%s-%s", kind, name);
        return strcmp(cn, want) == 0;
    }
    snprintf(want, sizeof(want), "koala-%s-", kind);
    return str_has_prefix(cn, want);
}

static int notify(struct http_request *http, struct clc *clc,
                  const struct xml_node *body, struct koala_error **err)
{
    _cleanup_free_ char *cluster = soap_text(body, "cluster", err);
    if (cluster == NULL)
        return -1;
    str_trim(cluster);
    if (!peer_is(http, "cluster", cluster))
        return error_set(err, EACCES, "AuthFailure",
                         "%s may not report for cluster %s",
                         http_request_peer_name(http), cluster);
    struct db *db = db_pool_get(clc->db, err);
    if (db == NULL)
        return -1;
    int rc = clc_apply_instance_states(clc, db, cluster, body, false, err);
    if (rc == 0)
        clc_resend_orders(clc, db);
    db_pool_put(clc->db, db);
    if (rc < 0)
        return -1;
    struct xml_writer *w = soap_start("NotifyInstanceStateResponse", CLC_NS);
    size_t len;
    char *doc = soap_finish(w, &len);
    soap_reply(http, doc, len);
    return 0;
}

static int get_access_key(struct http_request *http, struct clc *clc,
                          const struct xml_node *body, struct koala_error **err)
{
    if (!peer_is(http, "walrus", NULL))
        return error_set(err, EACCES, "AuthFailure",
                         "only Walrus may read access keys");
    _cleanup_free_ char *key = soap_text(body, "accessKey", err);
    if (key == NULL)
        return -1;
    str_trim(key);
    struct db *db = db_pool_get(clc->db, err);
    if (db == NULL)
        return -1;
    char *secret = NULL;
    struct account a;
    int rc = clc_account_by_key(db, key, &secret, &a, err);
    db_pool_put(clc->db, db);
    if (rc == 1)
        return error_set(err, ENOENT, "InvalidAccessKeyId",
                         "The access key '%s' does not exist", key);
    if (rc < 0)
        return -1;
    struct xml_writer *w = soap_start("GetAccessKeyResponse", CLC_NS);
    xml_text_element(w, "accessKey", key);
    xml_text_element(w, "secretKey", secret);
    xml_text_element(w, "accountId", a.number);
    xml_text_element(w, "canonicalId", a.canonical);
    xml_text_element(w, "accountName", a.name);
    size_t len;
    char *doc = soap_finish(w, &len);
    explicit_bzero(secret, strlen(secret));
    free(secret);
    soap_reply(http, doc, len);
    return 0;
}

struct cluster_count {
    unsigned all, enabled;
};

static int count_cluster(void *ctx, const struct service *s)
{
    struct cluster_count *c = ctx;
    c->all++;
    c->enabled += strcmp(s->state, "ENABLED") == 0;
    return 0;
}

/* ENABLED while its database answers (BROKEN with the reason otherwise);
 * the message says how many clusters can take instances. */
static void describe_service(struct http_request *http, struct clc *clc)
{
    struct koala_error *err = NULL;
    struct cluster_count c = {0};
    struct db *db = db_pool_get(clc->db, &err);
    int rc =
        db ? clc_services_each(db, "cluster", count_cluster, &c, &err) : -1;
    if (db)
        db_pool_put(clc->db, db);
    char msg[512];
    if (rc < 0)
        snprintf(msg, sizeof(msg), "database: %s", error_message(err));
    else if (c.all == 0)
        snprintf(msg, sizeof(msg), "no cluster registered");
    else
        snprintf(msg, sizeof(msg), "%u of %u clusters enabled", c.enabled,
                 c.all);
    error_free(err);
    struct xml_writer *w = soap_start("DescribeServiceResponse", CLC_NS);
    xml_text_element(w, "name", "clc");
    xml_text_element(w, "state", rc < 0 ? "BROKEN" : "ENABLED");
    xml_text_element(w, "message", msg);
    size_t len;
    char *out = soap_finish(w, &len);
    soap_reply(http, out, len);
}

static void handle(struct http_request *http)
{
    struct buf *b = http_request_data(http);
    struct clc *clc = http_request_ctx(http);
    struct koala_error *err = NULL;
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    if (soap_parse_request(b->data ? b->data : "", b->len, &doc, &body, &err) ==
        0) {
        const char *op = xml_name(body);
        if (strcmp(op, "NotifyInstanceState") == 0) {
            notify(http, clc, body, &err);
        } else if (strcmp(op, "GetAccessKey") == 0) {
            get_access_key(http, clc, body, &err);
        } else if (strcmp(op, "DescribeService") == 0) {
            describe_service(http, clc);
        } else {
            error_set(&err, EINVAL, "InvalidAction",
                      "The CLC has no operation %s", op);
        }
    }
    if (err) {
        log_debug("SOAP %s: %s", error_code(err), error_message(err));
        soap_reply_fault(http, err);
        error_free(err);
    }
    xml_doc_free(doc);
}

static void on_request(struct http_request *http, void *ctx)
{
    if (strcmp(http_request_method(http), "POST") != 0) {
        http_reply_empty(http, 405);
        return;
    }
    struct buf *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        http_reply_empty(http, 503);
        return;
    }
    http_request_set_data(http, b);
}

static ssize_t on_body(struct http_request *http, const char *data, size_t len)
{
    struct buf *b = http_request_data(http);
    if (b->len + len > SOAP_MAX_MESSAGE || buf_append(b, data, len) < 0)
        return -1;
    return (ssize_t)len;
}

static void on_complete(struct http_request *http)
{
    http_request_defer(http, handle);
}

static void on_done(struct http_request *http)
{
    struct buf *b = http_request_data(http);
    if (b)
        buf_free(b);
    free(b);
}

const struct http_handler clc_soap_handler = {
    .on_request = on_request,
    .on_body = on_body,
    .on_complete = on_complete,
    .on_done = on_done,
};
