/* test_http_tls.c: the HTTP server over TLS, driven by the HTTP client:
 * HTTPS with the cloud CA's certificates, and mutual TLS, where only
 * clients with a certificate from that CA are served and the handler
 * learns the client's name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "ca.h"
#include "http_client.h"
#include "http_server.h"

static char g_dir[64];
static char g_other[80];

static void path(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void issue(const char *dir, const char *cn, bool server,
                  const char *name)
{
    char cert[160], key[160];
    snprintf(cert, sizeof(cert), "%s/%s.pem", dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    const char *sans[] = {"IP:127.0.0.1", NULL};
    struct ca_request rq = {.cn = cn,
                            .sans = server ? sans : NULL,
                            .server = server,
                            .client = !server};
    struct koala_error *err = NULL;
    assert_int_equal(ca_issue(dir, &rq, cert, key, &err), 0);
}

static int setup(void **s)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-tls-test-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_other, sizeof(g_other), "%s/other", g_dir);
    assert_int_equal(mkdir(g_other, 0700), 0);
    struct koala_error *err = NULL;
    assert_int_equal(ca_create(g_dir, "Koala test CA", 1, &err), 0);
    assert_int_equal(ca_create(g_other, "Someone else's CA", 1, &err), 0);
    issue(g_dir, "127.0.0.1", true, "server");
    issue(g_dir, "koala-cc", false, "client");
    issue(g_other, "intruder", false, "client");
    return 0;
}

static int teardown(void **s)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void on_request(struct http_request *req, void *ctx)
{
    const char *who = http_request_peer_name(req);
    struct buf b = {0};
    buf_printf(&b, "hello %s", who ? who : "(anonymous)");
    size_t len = b.len;
    http_reply_take(req, 200, "text/plain", buf_steal(&b), len);
}

static ssize_t on_body(struct http_request *req, const char *d, size_t n)
{
    return (ssize_t)n;
}

static void on_complete(struct http_request *req)
{
    http_reply_empty(req, 500);
}

static const struct http_handler handler = {
    .on_request = on_request, .on_body = on_body, .on_complete = on_complete};

static struct http_server *start(bool mutual)
{
    char cert[160], key[160], ca[160];
    path(cert, sizeof(cert), g_dir, "server.pem");
    path(key, sizeof(key), g_dir, "server.key");
    path(ca, sizeof(ca), g_dir, "ca.pem");
    struct http_server_config cfg = {.address = "127.0.0.1",
                                     .tls_cert_file = cert,
                                     .tls_key_file = key,
                                     .tls_client_ca_file = mutual ? ca : NULL};
    struct koala_error *err = NULL;
    struct http_server *srv = http_server_new(&cfg, &handler, NULL, &err);
    if (srv == NULL)
        fail_msg("%s", error_message(err));
    return srv;
}

/* GET over HTTPS, verifying the server with our CA and presenting the
 * client certificate of `dir` (NULL: none).  Returns the status, or -1
 * when the exchange failed at the TLS level. */
static long get(struct http_server *srv, const char *dir, struct buf *out)
{
    char url[64], ca[160], cert[160], key[160];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/x",
             (unsigned)http_server_port(srv));
    path(ca, sizeof(ca), g_dir, "ca.pem");
    if (dir) {
        path(cert, sizeof(cert), dir, "client.pem");
        path(key, sizeof(key), dir, "client.key");
    }
    struct http_client_tls tls = {.ca_file = ca,
                                  .cert_file = dir ? cert : NULL,
                                  .key_file = dir ? key : NULL};
    struct http_client_request rq = {.url = url, .tls = &tls};
    struct http_client_response resp = {0};
    struct koala_error *err = NULL;
    long status = -1;
    if (http_client_do(NULL, &rq, &resp, &err) == 0) {
        status = resp.status;
        buf_reset(out);
        buf_append(out, resp.body.data ? resp.body.data : "", resp.body.len);
    }
    error_free(err);
    http_client_response_free(&resp);
    return status;
}

static void test_https(void **s)
{
    struct http_server *srv = start(false);
    struct buf out = {0};
    assert_int_equal(get(srv, NULL, &out), 200);
    assert_string_equal(out.data, "hello (anonymous)");
    buf_free(&out);
    http_server_free(srv);
}

static void test_mutual_tls(void **s)
{
    struct http_server *srv = start(true);
    struct buf out = {0};
    /* A client with a certificate from the cloud's CA is served, by name. */
    assert_int_equal(get(srv, g_dir, &out), 200);
    assert_string_equal(out.data, "hello koala-cc");
    /* No certificate, or one from another CA: refused. */
    assert_int_equal(get(srv, NULL, &out), 403);
    long st = get(srv, g_other, &out);
    assert_true(st == 403 || st == -1);
    buf_free(&out);
    http_server_free(srv);
}

static void test_bad_tls_config(void **s)
{
    struct http_server_config cfg = {.address = "127.0.0.1",
                                     .tls_cert_file = "/nonexistent.pem",
                                     .tls_key_file = "/nonexistent.key"};
    struct koala_error *err = NULL;
    assert_null(http_server_new(&cfg, &handler, NULL, &err));
    assert_non_null(err);
    error_free(err);
    err = NULL;
    struct http_server_config half = {.address = "127.0.0.1",
                                      .tls_cert_file = "/x.pem"};
    assert_null(http_server_new(&half, &handler, NULL, &err));
    assert_string_equal(error_code(err), "InvalidConfiguration");
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_mutual_tls),
        cmocka_unit_test(test_bad_tls_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
