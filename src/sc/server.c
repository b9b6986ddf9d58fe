/* server.c: koala-sc's SOAP endpoint: takes a POSTed envelope (mutual TLS
 * is checked by http_server: a peer without a certificate from the cloud
 * CA gets 403) and runs the operation named by the Body's element on a
 * worker thread, since every operation touches the database or a QSD. */
#define LOG_MODULE "sc"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sc.h"
#include "soap.h"

void sc_fail(struct sc_req *r, struct koala_error *err)
{
    const char *op = r->op ? xml_name(r->op) : "?";
    if (err && err->code == NULL)
        log_error("%s: %s", op, error_message(err));
    else
        log_info("%s: %s: %s", op, error_code(err), error_message(err));
    soap_reply_fault(r->http, err);
    error_free(err);
}

void sc_reply(struct sc_req *r, struct xml_writer *w)
{
    size_t len = 0;
    char *doc = soap_finish(w, &len);
    soap_reply(r->http, doc, len);
}

struct db *sc_req_db(struct sc_req *r, struct koala_error **err)
{
    if (r->db == NULL)
        r->db = db_pool_get(r->sc->db, err);
    return r->db;
}

char *sc_req_text(struct sc_req *r, const char *name, struct koala_error **err)
{
    char *t = xml_child_text(r->op, name);
    if (t && *str_trim(t) != '\0') {
        char *trimmed = strdup(str_trim(t));
        free(t);
        if (trimmed == NULL)
            error_set(err, ENOMEM, NULL, "out of memory");
        return trimmed;
    }
    free(t);
    error_set(err, EINVAL, "MissingParameter", "%s is required", name);
    return NULL;
}

static const struct {
    const char *name;
    void (*fn)(struct sc_req *r);
} ops[] = {
    {"CreateVolume", sc_op_create_volume},
    {"DeleteVolume", sc_op_delete_volume},
    {"ResizeVolume", sc_op_resize_volume},
    {"DescribeVolumes", sc_op_describe_volumes},
    {"ExportVolume", sc_op_export_volume},
    {"UnexportVolume", sc_op_unexport_volume},
    {"CreateSnapshot", sc_op_create_snapshot},
    {"DeleteSnapshot", sc_op_delete_snapshot},
    {"DescribeSnapshots", sc_op_describe_snapshots},
    {"DescribeResources", sc_op_describe_resources},
};

static void dispatch(struct http_request *http)
{
    struct sc_req *r = http_request_data(http);
    struct koala_error *err = NULL;
    if (soap_parse_request(r->body.data ? r->body.data : "", r->body.len,
                           &r->doc, &r->op, &err) < 0)
        return sc_fail(r, err);
    const char *name = xml_name(r->op);
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
        if (strcmp(ops[i].name, name) == 0) {
            const char *peer = http_request_peer_name(http);
            log_debug("%s from %s", name, peer ? peer : "?");
            ops[i].fn(r);
            return;
        }
    error_set(&err, EINVAL, "InvalidAction",
              "%s is not an operation of the storage controller", name);
    sc_fail(r, err);
}

static void reply_http_error(struct sc_req *r, unsigned status, const char *msg)
{
    struct koala_error *err = NULL;
    error_set_status(&err, (int)status, "InvalidRequest", "%s", msg);
    size_t len = 0;
    char *doc = soap_fault(err, &len);
    if (doc)
        http_reply_take(r->http, status, "text/xml; charset=utf-8", doc, len);
    else
        http_reply_empty(r->http, status);
    error_free(err);
}

static void on_request(struct http_request *http, void *ctx)
{
    struct sc_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        http_reply_empty(http, 503);
        return;
    }
    r->sc = ctx;
    r->http = http;
    http_request_set_data(http, r);
    if (strcmp(http_request_method(http), "POST") != 0)
        return reply_http_error(r, 405,
                                "the storage controller takes SOAP "
                                "requests (POST)");
    uint64_t len;
    if (http_request_content_length(http, &len) && len > SC_MAX_BODY)
        reply_http_error(r, 413, "request too large");
}

static ssize_t on_body(struct http_request *http, const char *data, size_t len)
{
    struct sc_req *r = http_request_data(http);
    if (r->body.len + len > SC_MAX_BODY || r->too_big) {
        r->too_big = true;
        return -1;
    }
    if (buf_append(&r->body, data, len) < 0)
        return -1;
    return (ssize_t)len;
}

static void on_complete(struct http_request *http)
{
    struct sc_req *r = http_request_data(http);
    if (r->too_big)
        return reply_http_error(r, 413, "request too large");
    http_request_defer(http, dispatch);
}

static void on_done(struct http_request *http)
{
    struct sc_req *r = http_request_data(http);
    if (r == NULL)
        return;
    if (r->db)
        db_pool_put(r->sc->db, r->db);
    xml_doc_free(r->doc);
    buf_free(&r->body);
    free(r);
}

const struct http_handler sc_http_handler = {
    .on_request = on_request,
    .on_body = on_body,
    .on_complete = on_complete,
    .on_done = on_done,
};
