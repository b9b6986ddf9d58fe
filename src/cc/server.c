/* server.c: koala-cc's SOAP endpoint: takes a POSTed envelope (mutual TLS
 * is checked by http_server: a peer without a certificate from the cloud
 * CA gets 403), and runs the operation named by the Body's element on a
 * worker thread, since every operation touches the database or a node. */
#define LOG_MODULE "cc"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cc.h"
#include "imds.h"
#include "log.h"
#include "soap.h"
#include "tunnel.h"

void cc_fail(struct cc_req *r, struct koala_error *err)
{
    const char *op = r->op ? xml_name(r->op) : "?";
    if (err && err->code == NULL)
        log_error("%s from %s: %s", op,
                  http_request_peer_name(r->http)
                      ? http_request_peer_name(r->http)
                      : http_request_peer(r->http),
                  error_message(err));
    else
        log_info("%s: %s: %s", op, error_code(err), error_message(err));
    soap_reply_fault(r->http, err);
    error_free(err);
}

void cc_reply(struct cc_req *r, struct xml_writer *w)
{
    size_t len = 0;
    char *doc = soap_finish(w, &len);
    soap_reply(r->http, doc, len);
}

struct db *cc_req_db(struct cc_req *r, struct koala_error **err)
{
    if (r->db == NULL)
        r->db = db_pool_get(r->cc->db, err);
    return r->db;
}

static const struct {
    const char *name;
    void (*fn)(struct cc_req *r);
    const char *action; /* for the instance actions */
} ops[] = {
    {"RunInstances", cc_op_run_instances, NULL},
    {"TerminateInstances", NULL, "ncTerminateInstance"},
    {"RebootInstances", NULL, "ncRebootInstance"},
    {"StopInstances", NULL, "ncStopInstance"},
    {"StartInstances", NULL, "ncStartInstance"},
    {"DescribeInstances", cc_op_describe_instances, NULL},
    {"DescribeResources", cc_op_describe_resources, NULL},
    {"GetConsoleOutput", cc_op_get_console_output, NULL},
    {"ConfigureNodes", cc_op_configure_nodes, NULL},
    {"ConfigureTunnels", cc_op_configure_tunnels, NULL},
    {"NotifyInstanceState", cc_op_notify_instance_state, NULL},
    {"DescribeService", cc_op_describe_service, NULL},
    {"SetInstanceMetadata", cc_op_set_instance_metadata, NULL},
    {"SetNetworkPolicy", cc_op_set_network_policy, NULL},
    {"SetPublicAddresses", cc_op_set_public_addresses, NULL},
    {"DescribePublicAddresses", cc_op_describe_public_addresses, NULL},
    {"AttachVolume", cc_op_attach_volume, NULL},
    {"DetachVolume", cc_op_detach_volume, NULL},
    {"ResizeVolume", cc_op_resize_volume, NULL},
};

static void dispatch(struct http_request *http)
{
    struct cc_req *r = http_request_data(http);
    struct koala_error *err = NULL;
    if (soap_parse_request(r->body.data ? r->body.data : "", r->body.len,
                           &r->doc, &r->op, &err) < 0)
        return cc_fail(r, err);
    const char *name = xml_name(r->op);
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
        if (strcmp(ops[i].name, name) != 0)
            continue;
        const char *peer = http_request_peer_name(http);
        log_debug("%s from %s", name, peer ? peer : "?");
        if (ops[i].fn)
            ops[i].fn(r);
        else
            cc_op_instances_action(r, ops[i].action);
        return;
    }
    error_set(&err, EINVAL, "InvalidAction",
              "%s is not an operation of the cluster controller", name);
    cc_fail(r, err);
}

/* A fault document with an HTTP status other than SOAP's 500: for what
 * is not a SOAP request at all. */
static void reply_http_error(struct cc_req *r, unsigned status, const char *msg)
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
    struct cc_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        http_reply_empty(http, 503);
        return;
    }
    r->cc = ctx;
    r->http = http;
    http_request_set_data(http, r);
    if (strcmp(http_request_method(http), "POST") != 0)
        return reply_http_error(r, 405,
                                "the cluster controller takes SOAP "
                                "requests (POST)");
    uint64_t len;
    if (http_request_content_length(http, &len) && len > CC_MAX_BODY)
        reply_http_error(r, 413, "request too large");
}

static ssize_t on_body(struct http_request *http, const char *data, size_t len)
{
    struct cc_req *r = http_request_data(http);
    if (r->body.len + len > CC_MAX_BODY || r->too_big) {
        r->too_big = true;
        return -1;
    }
    if (buf_append(&r->body, data, len) < 0)
        return -1;
    return (ssize_t)len;
}

static void on_complete(struct http_request *http)
{
    struct cc_req *r = http_request_data(http);
    if (r->too_big)
        return reply_http_error(r, 413, "request too large");
    http_request_defer(http, dispatch);
}

static void on_done(struct http_request *http)
{
    struct cc_req *r = http_request_data(http);
    if (r == NULL)
        return;
    if (r->db)
        db_pool_put(r->cc->db, r->db);
    xml_doc_free(r->doc);
    buf_free(&r->body);
    free(r);
}

const struct http_handler cc_http_handler = {
    .on_request = on_request,
    .on_body = on_body,
    .on_complete = on_complete,
    .on_done = on_done,
};
