/* test_soap.c: SOAP envelopes and faults, and a call between a client and
 * a server over mutual TLS with the cloud CA's certificates: the reply, a
 * fault whose Koala code survives the trip, a peer that cannot connect,
 * and a client without a certificate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "ca.h"
#include "soap.h"

static void test_envelope_roundtrip(void **s)
{
    struct xml_writer *w = soap_start("ncRunInstance", "urn:koala:nc");
    xml_text_element(w, "instanceId", "i-0123456789abcdef0");
    xml_u64_element(w, "memoryMb", 256);
    xml_text_element(w, "userData", "<&>\"'");
    size_t len;
    char *doc = soap_finish(w, &len);
    assert_non_null(doc);
    assert_non_null(strstr(doc, "soap:Envelope"));
    struct xml_doc *x = NULL;
    const struct xml_node *body = NULL;
    struct koala_error *err = NULL;
    assert_int_equal(soap_parse(doc, len, &x, &body, &err), 0);
    assert_string_equal(xml_name(body), "ncRunInstance");
    char *id = soap_text(body, "instanceId", &err);
    assert_string_equal(id, "i-0123456789abcdef0");
    free(id);
    long long mem;
    assert_int_equal(soap_int(body, "memoryMb", 0, &mem, &err), 0);
    assert_int_equal(mem, 256);
    assert_int_equal(soap_int(body, "missing", 7, &mem, &err), 0);
    assert_int_equal(mem, 7);
    assert_null(soap_text(body, "missing", &err));
    assert_string_equal(error_code(err), "MissingParameter");
    error_free(err);
    err = NULL;
    char *ud = xml_child_text(body, "userData");
    assert_string_equal(ud, "<&>\"'");
    free(ud);
    assert_int_equal(soap_int(body, "instanceId", 0, &mem, &err), -1);
    error_free(err);
    xml_doc_free(x);
    free(doc);
}

static void test_fault_roundtrip(void **s)
{
    struct koala_error *e = NULL;
    error_set(&e, 0, "InsufficientInstanceCapacity", "no room on %s", "nc1");
    size_t len;
    char *doc = soap_fault(e, &len);
    assert_non_null(strstr(doc, "soap:Server"));
    error_free(e);
    struct xml_doc *x = NULL;
    const struct xml_node *body = NULL;
    struct koala_error *err = NULL;
    assert_int_equal(soap_parse(doc, len, &x, &body, &err), -1);
    assert_null(x);
    assert_string_equal(error_code(err), "InsufficientInstanceCapacity");
    assert_string_equal(error_message(err), "no room on nc1");
    error_free(err);
    free(doc);
    /* A client error is soap:Client; an internal one keeps no code. */
    e = NULL;
    error_set(&e, 0, "InvalidInstanceID.NotFound", "gone");
    doc = soap_fault(e, &len);
    assert_non_null(strstr(doc, "soap:Client"));
    error_free(e);
    free(doc);
    e = NULL;
    error_set(&e, EIO, NULL, "disk on fire");
    doc = soap_fault(e, &len);
    error_free(e);
    err = NULL;
    assert_int_equal(soap_parse(doc, len, &x, &body, &err), -1);
    assert_string_equal(error_code(err), "InternalError");
    error_free(err);
    free(doc);
    /* Not an envelope. */
    err = NULL;
    assert_int_equal(soap_parse("<a/>", 4, &x, &body, &err), -1);
    assert_string_equal(error_code(err), "InvalidRequest");
    error_free(err);
}

/* A Fault with code sent by a peer, read back as a reply (request false)
 * or as a request: the error it becomes (the caller frees it). */
static struct koala_error *fault_from_peer(const char *code, bool request)
{
    struct koala_error *e = NULL, *err = NULL;
    error_set(&e, 0, code, "m");
    size_t len;
    char *doc = soap_fault(e, &len);
    error_free(e);
    struct xml_doc *x = NULL;
    const struct xml_node *body = NULL;
    int rc = request ? soap_parse_request(doc, len, &x, &body, &err)
                     : soap_parse(doc, len, &x, &body, &err);
    assert_int_equal(rc, -1);
    assert_null(x);
    free(doc);
    return err;
}

/* A fault's code from a peer: kept by each error on its own (thousands of
 * distinct codes all come back, none turns into InternalError), refused
 * when it is not an API code; a request that is a Fault is InvalidRequest. */
static void test_fault_codes_from_peers(void **s)
{
    for (int i = 0; i < 5000; i++) {
        char code[32];
        snprintf(code, sizeof(code), "Peer%d.Code", i);
        struct koala_error *err = fault_from_peer(code, false);
        assert_string_equal(error_code(err), code);
        /* copied from one error to another, then the first freed */
        struct koala_error *copy = NULL;
        error_set(&copy, 0, err->code, "%s", error_message(err));
        error_free(err);
        assert_string_equal(error_code(copy), code);
        error_free(copy);
    }
    static const char *const bad[] = {"Has Space", "<x>", "", "A:B",
                                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct koala_error *err = fault_from_peer(bad[i], false);
        assert_string_equal(error_code(err), "InternalError");
        error_free(err);
        err = fault_from_peer(bad[i], true);
        assert_string_equal(error_code(err), "InvalidRequest");
        error_free(err);
    }
}

/* ---- over mutual TLS ---- */

static char g_dir[64];

static void issue(const char *cn, bool server, const char *name)
{
    char cert[160], key[160];
    snprintf(cert, sizeof(cert), "%s/%s.pem", g_dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", g_dir, name);
    const char *sans[] = {"IP:127.0.0.1", NULL};
    struct ca_request rq = {
        .cn = cn, .sans = sans, .server = server, .client = true};
    assert_int_equal(ca_issue(g_dir, &rq, cert, key, NULL), 0);
}

static void on_request(struct http_request *req, void *ctx)
{
    http_request_set_data(req, calloc(1, sizeof(struct buf)));
}

static ssize_t on_body(struct http_request *req, const char *d, size_t n)
{
    buf_append(http_request_data(req), d, n);
    return (ssize_t)n;
}

static void on_complete(struct http_request *req)
{
    struct buf *b = http_request_data(req);
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    struct koala_error *err = NULL;
    if (soap_parse(b->data ? b->data : "", b->len, &doc, &body, &err) < 0)
        return soap_reply_fault(req, err), error_free(err);
    if (strcmp(xml_name(body), "echo") != 0) {
        error_set(&err, 0, "InvalidAction", "no such operation");
        soap_reply_fault(req, err);
        error_free(err);
        xml_doc_free(doc);
        return;
    }
    char *what = xml_child_text(body, "what");
    struct xml_writer *w = soap_start("echoResponse", "urn:koala:test");
    xml_text_element(w, "what", what);
    xml_text_element(w, "peer", http_request_peer_name(req));
    size_t len;
    char *out = soap_finish(w, &len);
    soap_reply(req, out, len);
    free(what);
    xml_doc_free(doc);
}

static void on_done(struct http_request *req)
{
    struct buf *b = http_request_data(req);
    if (b)
        buf_free(b);
    free(b);
}

static void test_call_over_mtls(void **s)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-soap-test-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    assert_int_equal(ca_create(g_dir, "test CA", 1, NULL), 0);
    issue("koala-nc", true, "nc");
    issue("koala-cc", false, "cc");
    char cert[160], key[160], ca[160];
    snprintf(cert, sizeof(cert), "%s/nc.pem", g_dir);
    snprintf(key, sizeof(key), "%s/nc.key", g_dir);
    snprintf(ca, sizeof(ca), "%s/ca.pem", g_dir);
    static const struct http_handler h = {on_request, on_body, on_complete,
                                          on_done, NULL};
    struct http_server_config cfg = {.address = "127.0.0.1",
                                     .tls_cert_file = cert,
                                     .tls_key_file = key,
                                     .tls_client_ca_file = ca};
    struct koala_error *err = NULL;
    struct http_server *srv = http_server_new(&cfg, &h, NULL, &err);
    assert_non_null(srv);
    char url[64], ccert[160], ckey[160];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/",
             (unsigned)http_server_port(srv));
    snprintf(ccert, sizeof(ccert), "%s/cc.pem", g_dir);
    snprintf(ckey, sizeof(ckey), "%s/cc.key", g_dir);
    struct http_client_tls tls = {ca, ccert, ckey, false};
    struct soap_client *c = soap_client_new(url, &tls, 5000, &err);
    assert_non_null(c);

    struct xml_writer *w = soap_start("echo", "urn:koala:test");
    xml_text_element(w, "what", "hello");
    size_t len;
    char *rq = soap_finish(w, &len);
    struct xml_doc *doc = NULL;
    const struct xml_node *body = NULL;
    assert_int_equal(soap_call(c, "echo", rq, len, &doc, &body, &err), 0);
    assert_string_equal(xml_name(body), "echoResponse");
    char *what = xml_child_text(body, "what"),
         *peer = xml_child_text(body, "peer");
    assert_string_equal(what, "hello");
    assert_string_equal(peer, "koala-cc");
    free(what);
    free(peer);
    xml_doc_free(doc);

    /* A fault raised by the server arrives with its code. */
    w = soap_start("nope", "urn:koala:test");
    rq = soap_finish(w, &len);
    assert_int_equal(soap_call(c, "nope", rq, len, &doc, &body, &err), -1);
    assert_string_equal(error_code(err), "InvalidAction");
    error_free(err);
    err = NULL;
    soap_client_free(c);

    /* Without a client certificate the server will not talk. */
    struct http_client_tls anon = {ca, NULL, NULL, false};
    c = soap_client_new(url, &anon, 5000, &err);
    w = soap_start("echo", "urn:koala:test");
    rq = soap_finish(w, &len);
    assert_int_equal(soap_call(c, "echo", rq, len, &doc, &body, &err), -1);
    assert_string_equal(error_code(err), "ServiceUnavailable");
    error_free(err);
    err = NULL;
    soap_client_free(c);
    http_server_free(srv);

    /* Nobody listening: ServiceUnavailable, quickly. */
    c = soap_client_new(url, &tls, 2000, &err);
    w = soap_start("echo", "urn:koala:test");
    rq = soap_finish(w, &len);
    assert_int_equal(soap_call(c, "echo", rq, len, &doc, &body, &err), -1);
    assert_string_equal(error_code(err), "ServiceUnavailable");
    error_free(err);
    soap_client_free(c);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_roundtrip),
        cmocka_unit_test(test_fault_codes_from_peers),
        cmocka_unit_test(test_fault_roundtrip),
        cmocka_unit_test(test_call_over_mtls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
