/* soap.c: SOAP 1.1 envelopes, faults, client and server helpers (see
 * soap.h). */
#define LOG_MODULE "soap"
#include "soap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

#define KOALA_NS "urn:koala"

struct xml_writer *soap_start(const char *name, const char *ns)
{
    struct xml_writer *w = xml_writer_new("soap:Envelope", NULL);
    xml_attr(w, "xmlns:soap", SOAP_ENV_NS);
    xml_start(w, "soap:Body");
    xml_start(w, name);
    if (ns)
        xml_attr(w, "xmlns", ns);
    return w;
}

char *soap_finish(struct xml_writer *w, size_t *len)
{
    return xml_writer_finish(w, len);
}

/* Codes that are the server's trouble, not the request's. */
static bool server_fault(const struct koala_error *err)
{
    static const char *const server_codes[] = {
        "InternalError",        "ServiceUnavailable",
        "Unavailable",          "InsufficientInstanceCapacity",
        "InsufficientCapacity",
    };
    if (err == NULL || err->code == NULL)
        return true;
    if (err->status >= 500)
        return true;
    for (size_t i = 0; i < ARRAY_SIZE(server_codes); i++)
        if (strcmp(err->code, server_codes[i]) == 0)
            return true;
    return false;
}

char *soap_fault(const struct koala_error *err, size_t *len)
{
    struct xml_writer *w = xml_writer_new("soap:Envelope", NULL);
    xml_attr(w, "xmlns:soap", SOAP_ENV_NS);
    xml_start(w, "soap:Body");
    xml_start(w, "soap:Fault");
    xml_text_element(w, "faultcode",
                     server_fault(err) ? "soap:Server" : "soap:Client");
    xml_text_element(w, "faultstring", error_message(err));
    xml_start(w, "detail");
    xml_start(w, "koala:Error");
    xml_attr(w, "xmlns:koala", KOALA_NS);
    xml_text_element(w, "koala:Code", error_code(err));
    xml_text_element(w, "koala:Message", error_message(err));
    xml_end(w);
    xml_end(w);
    return xml_writer_finish(w, len);
}

/* Whether a code from a peer's fault looks like one of the APIs' error
 * codes ("InvalidInstanceID.NotFound"); anything else becomes an internal
 * error, its text kept in the message. */
static bool code_valid(const char *code)
{
    size_t n = strlen(code);
    return n > 0 && n <= 64 &&
           strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789.") == n;
}

/* Turns a Fault element into *err. */
static int fault_error(const struct xml_node *fault, struct koala_error **err)
{
    const struct xml_node *detail = xml_child(fault, "detail");
    const struct xml_node *e = detail ? xml_child(detail, "Error") : NULL;
    _cleanup_free_ char *code = e ? xml_child_text(e, "Code") : NULL;
    _cleanup_free_ char *msg = e ? xml_child_text(e, "Message") : NULL;
    _cleanup_free_ char *fstring = xml_child_text(fault, "faultstring");
    const char *text = msg ? msg : fstring ? fstring : "SOAP fault";
    if (code == NULL || strcmp(code, "InternalError") == 0)
        return error_set(err, EIO, NULL, "%s", text);
    if (!code_valid(code))
        return error_set(err, EIO, NULL, "fault with an invalid code: %s",
                         text);
    return error_set(err, EIO, code, "%s", text); /* copied by the error */
}

static int parse(const char *data, size_t len, bool request,
                 struct xml_doc **doc, const struct xml_node **body,
                 struct koala_error **err)
{
    *doc = xml_parse(data, len, SOAP_MAX_MESSAGE, err);
    if (*doc == NULL)
        return -1;
    const struct xml_node *env = xml_root(*doc);
    const struct xml_node *b =
        strcmp(xml_name(env), "Envelope") == 0 ? xml_child(env, "Body") : NULL;
    const struct xml_node *op = b ? xml_next_child(b, NULL, NULL) : NULL;
    bool fault = op && strcmp(xml_name(op), "Fault") == 0;
    if (op == NULL || (fault && request)) {
        xml_doc_free(*doc);
        *doc = NULL;
        return error_set(err, EINVAL, "InvalidRequest",
                         fault ? "a request cannot be a SOAP Fault"
                               : "not a SOAP envelope with a body");
    }
    if (fault) {
        fault_error(op, err);
        xml_doc_free(*doc);
        *doc = NULL;
        return -1;
    }
    *body = op;
    return 0;
}

int soap_parse(const char *data, size_t len, struct xml_doc **doc,
               const struct xml_node **body, struct koala_error **err)
{
    return parse(data, len, false, doc, body, err);
}

int soap_parse_request(const char *data, size_t len, struct xml_doc **doc,
                       const struct xml_node **body, struct koala_error **err)
{
    return parse(data, len, true, doc, body, err);
}

char *soap_text(const struct xml_node *n, const char *name,
                struct koala_error **err)
{
    char *t = xml_child_text(n, name);
    if (t == NULL)
        error_set(err, EINVAL, "MissingParameter",
                  "The request must contain the parameter %s", name);
    return t;
}

int soap_int(const struct xml_node *n, const char *name, long long def,
             long long *out, struct koala_error **err)
{
    _cleanup_free_ char *t = xml_child_text(n, name);
    if (t == NULL) {
        *out = def;
        return 0;
    }
    int64_t v;
    if (str_to_i64(str_trim(t), &v) < 0)
        return error_set(err, EINVAL, "InvalidParameterValue",
                         "%s must be a number", name);
    *out = v;
    return 0;
}

/* ---- client ---- */

struct soap_client {
    struct http_client *http;
    char *endpoint;
    char *ca_file, *cert_file, *key_file;
    struct http_client_tls tls;
    bool have_tls;
    unsigned timeout_ms;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

struct soap_client *soap_client_new(const char *endpoint,
                                    const struct http_client_tls *tls,
                                    unsigned timeout_ms,
                                    struct koala_error **err)
{
    struct soap_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        error_set(err, ENOMEM, NULL, "out of memory");
        return NULL;
    }
    c->endpoint = strdup(endpoint);
    c->timeout_ms = timeout_ms ? timeout_ms : 30000;
    if (tls) {
        c->ca_file = dup_or_null(tls->ca_file);
        c->cert_file = dup_or_null(tls->cert_file);
        c->key_file = dup_or_null(tls->key_file);
        c->tls = (struct http_client_tls){c->ca_file, c->cert_file, c->key_file,
                                          tls->insecure};
        c->have_tls = true;
    }
    c->http = http_client_new(err);
    if (c->endpoint == NULL || c->http == NULL) {
        if (c->endpoint == NULL)
            error_set(err, ENOMEM, NULL, "out of memory");
        soap_client_free(c);
        return NULL;
    }
    return c;
}

void soap_client_free(struct soap_client *c)
{
    if (c == NULL)
        return;
    http_client_free(c->http);
    free(c->endpoint);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c);
}

const char *soap_client_endpoint(const struct soap_client *c)
{
    return c->endpoint;
}

int soap_call(struct soap_client *c, const char *action, char *request,
              size_t len, struct xml_doc **doc, const struct xml_node **body,
              struct koala_error **err)
{
    *doc = NULL;
    if (request == NULL)
        return error_set(err, ENOMEM, NULL, "out of memory");
    char soapaction[160];
    snprintf(soapaction, sizeof(soapaction), "SOAPAction: \"%s\"", action);
    const char *headers[] = {"Content-Type: text/xml; charset=utf-8",
                             soapaction, "Expect:", NULL};
    struct http_client_request rq = {
        .method = "POST",
        .url = c->endpoint,
        .headers = headers,
        .body = {.kind = HTTP_CLIENT_BODY_MEMORY, .data = request, .len = len},
        .sink = {.kind = HTTP_CLIENT_SINK_MEMORY, .max_len = SOAP_MAX_MESSAGE},
        .tls = c->have_tls ? &c->tls : NULL,
        .timeout_ms = c->timeout_ms,
        .connect_timeout_ms = 5000,
    };
    struct http_client_response resp = {0};
    struct koala_error *e = NULL;
    int rc = http_client_do(c->http, &rq, &resp, &e);
    free(request);
    if (rc < 0) {
        error_set(err, e ? e->errnum : EIO, "ServiceUnavailable", "%s: %s: %s",
                  action, c->endpoint, error_message(e));
        error_free(e);
        http_client_response_free(&resp);
        return -1;
    }
    rc = soap_parse(resp.body.data ? resp.body.data : "", resp.body.len, doc,
                    body, &e);
    if (rc < 0 && resp.status < 500 && resp.status >= 300 && e &&
        strcmp(error_code(e), "MalformedXML") == 0) {
        /* Not SOAP at all: an HTTP error from the peer (403 without a
         * client certificate, ...). */
        error_clear(&e);
        error_set(&e, EACCES, "ServiceUnavailable", "%s: %s: HTTP %ld", action,
                  c->endpoint, resp.status);
    }
    http_client_response_free(&resp);
    if (rc < 0) {
        if (err && *err == NULL)
            *err = e;
        else
            error_free(e);
        return -1;
    }
    return 0;
}

/* ---- server ---- */

void soap_reply(struct http_request *req, char *doc, size_t len)
{
    if (doc == NULL) {
        http_reply_empty(req, 500);
        return;
    }
    http_reply_take(req, 200, "text/xml; charset=utf-8", doc, len);
}

void soap_reply_fault(struct http_request *req, const struct koala_error *err)
{
    size_t len = 0;
    char *doc = soap_fault(err, &len);
    if (doc == NULL) {
        http_reply_empty(req, 500);
        return;
    }
    http_reply_take(req, 500, "text/xml; charset=utf-8", doc, len);
}
