/* test_http_client.c: the libcurl-based client against the project's own
 * HTTP server, in process on 127.0.0.1: bodies from memory, files and
 * callbacks; replies to memory, files and callbacks; limits, errors,
 * redirects, timeouts and headers; and mutual TLS against a small OpenSSL
 * server with certificates made on the fly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"
#include "http_client.h"
#include "http_server.h"

static unsigned char pattern(uint64_t i)
{
    return (unsigned char)(i % 251);
}

/* ---- the server ---- */

struct upload {
    uint64_t len;
    uint64_t sum;
    int pieces;
};

static void on_request(struct http_request *req, void *ctx)
{
    const char *path = http_request_path(req);
    const char *query = http_request_query(req);
    if (strcmp(path, "/hello") == 0) {
        const char *echo = http_request_header(req, "X-Req");
        http_reply_header(req, "X-Test", "yes");
        http_reply_header(req, "X-Spaces", "  padded value  ");
        if (echo)
            http_reply_header(req, "X-Echo", echo);
        http_reply_buffer(req, 200, "text/plain", "hello world", 11);
        return;
    }
    if (strcmp(path, "/missing") == 0) {
        static const char doc[] = "<Error><Code>NoSuchKey</Code></Error>";
        http_reply_buffer(req, 404, "application/xml", doc, strlen(doc));
        return;
    }
    if (strcmp(path, "/big") == 0) {
        uint64_t n = 0;
        assert_true(str_has_prefix(query, "n="));
        assert_int_equal(str_to_u64(query + 2, &n), 0);
        char *data = malloc(n ? n : 1);
        for (uint64_t i = 0; i < n; i++)
            data[i] = (char)pattern(i);
        http_reply_take(req, 200, "application/octet-stream", data, n);
        return;
    }
    if (strcmp(path, "/slow") == 0) {
        usleep(1500 * 1000);
        http_reply_buffer(req, 200, "text/plain", "late", 4);
        return;
    }
    if (strcmp(path, "/redirect") == 0) {
        http_reply_header(req, "Location", query);
        http_reply_buffer(req, 307, "text/plain", "moved", 5);
        return;
    }
    http_request_set_data(req, calloc(1, sizeof(struct upload)));
}

static ssize_t on_body(struct http_request *req, const char *data, size_t len)
{
    struct upload *u = http_request_data(req);
    for (size_t i = 0; i < len; i++)
        u->sum += (unsigned char)data[i] * ((u->len + i) % 7 + 1);
    u->len += len;
    u->pieces++;
    return (ssize_t)len;
}

static void on_complete(struct http_request *req)
{
    struct upload *u = http_request_data(req);
    const char *te = http_request_header(req, "Transfer-Encoding");
    const char *cl = http_request_header(req, "Content-Length");
    struct buf out = {0};
    buf_printf(&out, "%s %s len=%llu sum=%llu cl=%s te=%s",
               http_request_method(req), http_request_path(req),
               (unsigned long long)u->len, (unsigned long long)u->sum,
               cl ? cl : "-", te ? te : "-");
    char pieces[16];
    snprintf(pieces, sizeof(pieces), "%d", u->pieces);
    http_reply_header(req, "X-Pieces", pieces);
    size_t len = out.len;
    http_reply_take(req, 200, "text/plain", buf_steal(&out), len);
}

static void on_done(struct http_request *req)
{
    free(http_request_data(req));
}

static struct http_server *g_srv;

static int setup(void **s)
{
    static const struct http_handler h = {
        .on_request = on_request,
        .on_body = on_body,
        .on_complete = on_complete,
        .on_done = on_done,
    };
    struct http_server_config cfg = {.address = "127.0.0.1"};
    struct koala_error *err = NULL;
    g_srv = http_server_new(&cfg, &h, NULL, &err);
    assert_non_null(g_srv);
    return 0;
}

static int teardown(void **s)
{
    http_server_free(g_srv);
    return 0;
}

static const char *url(const char *target)
{
    static char u[512];
    snprintf(u, sizeof(u), "http://127.0.0.1:%u%s",
             (unsigned)http_server_port(g_srv), target);
    return u;
}

/* The server's checksum of a body made of pattern(from ... from+len-1). */
static uint64_t expected_sum(uint64_t from, uint64_t len)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < len; i++)
        sum += pattern(from + i) * (i % 7 + 1);
    return sum;
}

static int temp_file(void)
{
    char tmpl[] = "/tmp/koala-http-client-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    unlink(tmpl);
    return fd;
}

/* ---- tests ---- */

static void test_get_to_memory(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_http_client_ struct http_client *c = http_client_new(&err);
    assert_non_null(c);
    static const char *const hdrs[] = {"X-Req: abc def", NULL};
    struct http_client_request req = {.url = url("/hello"), .headers = hdrs};
    _cleanup_http_response_ struct http_client_response resp = {0};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "hello world");
    assert_int_equal(resp.body.len, 11);
    assert_int_equal(resp.body_bytes, 11);
    assert_string_equal(http_client_response_header(&resp, "x-test"), "yes");
    assert_string_equal(http_client_response_header(&resp, "X-ECHO"),
                        "abc def");
    assert_string_equal(http_client_response_header(&resp, "Content-Length"),
                        "11");
    assert_string_equal(http_client_response_header(&resp, "X-Spaces"),
                        "padded value");
    assert_null(http_client_response_header(&resp, "X-Nope"));
    assert_true(resp.n_headers >= 4);

    /* The handle is reused; resp is reset by the next call. */
    req.headers = NULL;
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_string_equal(resp.body.data, "hello world");
    assert_null(http_client_response_header(&resp, "X-Echo"));
}

static void test_one_shot(void **s)
{
    struct koala_error *err = NULL;
    struct http_client_request req = {.url = url("/hello")};
    struct http_client_response resp = {0};
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    http_client_response_free(&resp);
    assert_null(resp.body.data);
    http_client_response_free(&resp); /* twice is fine */
    http_client_free(NULL);
}

static void test_put_from_fd(void **s)
{
    const uint64_t size = 5 * 1024 * 1024 + 123, off = 1000;
    int fd = temp_file();
    unsigned char block[65536];
    for (uint64_t done = 0; done < size;) {
        size_t n = size - done < sizeof(block) ? size - done : sizeof(block);
        for (size_t i = 0; i < n; i++)
            block[i] = pattern(done + i);
        assert_int_equal(write(fd, block, n), (ssize_t)n);
        done += n;
    }
    assert_int_equal(lseek(fd, 7, SEEK_SET), 7);

    struct koala_error *err = NULL;
    struct http_client_request req = {
        .method = "PUT",
        .url = url("/upload"),
        .body = {.kind = HTTP_CLIENT_BODY_FD,
                 .fd = fd,
                 .offset = off,
                 .len = size - off},
    };
    _cleanup_http_response_ struct http_client_response resp = {0};
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    char want[160];
    snprintf(want, sizeof(want), "PUT /upload len=%llu sum=%llu cl=%llu te=-",
             (unsigned long long)(size - off),
             (unsigned long long)expected_sum(off, size - off),
             (unsigned long long)(size - off));
    assert_string_equal(resp.body.data, want);
    /* Streamed: the server got it in many pieces. */
    assert_true(atoi(http_client_response_header(&resp, "X-Pieces")) > 4);
    /* pread: the descriptor's position is untouched. */
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 7);

    /* A file shorter than the announced length fails the request. */
    req.body.len = size; /* from offset 1000: 1000 bytes short */
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EIO);
    assert_null(err->code);
    assert_non_null(strstr(error_message(err), "ended early"));
    error_free(err);
    close(fd);
}

static void test_download_to_fd(void **s)
{
    const uint64_t size = 3 * 1000 * 1000 + 17;
    int fd = temp_file();
    char target[64];
    snprintf(target, sizeof(target), "/big?n=%llu", (unsigned long long)size);
    struct koala_error *err = NULL;
    struct http_client_request req = {
        .url = url(target),
        .sink = {.kind = HTTP_CLIENT_SINK_FD, .fd = fd},
    };
    _cleanup_http_response_ struct http_client_response resp = {0};
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_bytes, size);
    assert_int_equal(resp.body.len, 0); /* nothing kept in memory */
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, size);
    unsigned char block[65536];
    uint64_t pos = 0;
    ssize_t n;
    while ((n = pread(fd, block, sizeof(block), (off_t)pos)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (block[i] != pattern(pos + (uint64_t)i))
                fail_msg("byte %llu differs",
                         (unsigned long long)(pos + (uint64_t)i));
        pos += (uint64_t)n;
    }
    assert_int_equal(pos, size);
    close(fd);
}

static void test_error_reply_not_in_sink(void **s)
{
    int fd = temp_file();
    struct koala_error *err = NULL;
    struct http_client_request req = {
        .url = url("/missing"),
        .sink = {.kind = HTTP_CLIENT_SINK_FD, .fd = fd},
    };
    _cleanup_http_response_ struct http_client_response resp = {0};
    /* An HTTP error status is a reply, not a failure. */
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), 0);
    assert_null(err);
    assert_int_equal(resp.status, 404);
    assert_string_equal(resp.body.data,
                        "<Error><Code>NoSuchKey</Code></Error>");
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 0);
    close(fd);

    req.sink.kind = HTTP_CLIENT_SINK_DISCARD;
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 404);
    assert_non_null(strstr(resp.body.data, "NoSuchKey"));
    req.url = url("/hello");
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body.len, 0);
    assert_int_equal(resp.body_bytes, 11);
}

static void test_memory_limit(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_http_client_ struct http_client *c = http_client_new(&err);
    struct http_client_request req = {
        .url = url("/big?n=100000"),
        .sink = {.max_len = 1000},
    };
    _cleanup_http_response_ struct http_client_response resp = {0};
    assert_int_equal(http_client_do(c, &req, &resp, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->errnum, EFBIG);
    assert_null(err->code);
    assert_non_null(strstr(error_message(err), "1000"));
    assert_true(resp.body.len <= 1000);
    error_clear(&err);
    /* Exactly at the limit is fine. */
    req.url = url("/big?n=1000");
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.body.len, 1000);
    /* Default limit is large enough for ordinary replies; the handle still
     * works after a failed request. */
    req.url = url("/big?n=200000");
    req.sink.max_len = 0;
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.body.len, 200000);
}

static void test_connection_refused(void **s)
{
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(sock, (struct sockaddr *)&sa, &sl), 0);
    close(sock); /* nobody listens there now */
    char u[128];
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/b/k?X-Amz-Signature=s3cr3t",
             (unsigned)ntohs(sa.sin_port));
    struct koala_error *err = NULL;
    struct http_client_request req = {.url = u};
    _cleanup_http_response_ struct http_client_response resp = {0};
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), -1);
    assert_non_null(err);
    assert_int_equal(err->errnum, ECONNREFUSED);
    assert_null(err->code);
    assert_non_null(strstr(error_message(err), "/b/k"));
    /* The query of a presigned URL is a credential: never in messages. */
    assert_null(strstr(error_message(err), "s3cr3t"));
    assert_int_equal(resp.status, 0);
    error_free(err);
}

struct chunks {
    int left;
};

static ssize_t read_chunks(void *ctx, char *buf, size_t size)
{
    struct chunks *c = ctx;
    if (c->left == 0)
        return 0;
    c->left--;
    size_t n = size < 1000 ? size : 1000;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)pattern(i);
    return (ssize_t)n;
}

static ssize_t read_fails(void *ctx, char *buf, size_t size)
{
    errno = EBADMSG;
    return -1;
}

static int collect(void *ctx, const char *data, size_t len)
{
    return buf_append(ctx, data, len);
}

static int refuse(void *ctx, const char *data, size_t len)
{
    errno = ENOSPC;
    return -1;
}

static void test_memory_body_and_callbacks(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_http_client_ struct http_client *c = http_client_new(&err);
    struct buf got = {0};
    struct http_client_request req = {
        .method = "POST",
        .url = url("/post"),
        .body = {.kind = HTTP_CLIENT_BODY_MEMORY,
                 .data = "\x00\x01\x02",
                 .len = 3},
        .sink = {.kind = HTTP_CLIENT_SINK_CALLBACK,
                 .write = collect,
                 .ctx = &got},
    };
    _cleanup_http_response_ struct http_client_response resp = {0};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_string_equal(got.data, "POST /post len=3 sum=8 cl=3 te=-");
    assert_int_equal(resp.body.len, 0);
    buf_free(&got);

    /* A body of unknown length goes chunked. */
    struct chunks ch = {.left = 5};
    req.method = "PUT";
    req.body = (struct http_client_body){
        .kind = HTTP_CLIENT_BODY_CALLBACK,
        .read = read_chunks,
        .ctx = &ch,
        .len = HTTP_CLIENT_LEN_UNKNOWN,
    };
    req.sink = (struct http_client_sink){0};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    char want[128];
    uint64_t sum = 0; /* each chunk restarts the pattern */
    for (uint64_t i = 0; i < 5000; i++)
        sum += pattern(i % 1000) * (i % 7 + 1);
    snprintf(want, sizeof(want), "PUT /post len=5000 sum=%llu cl=- te=chunked",
             (unsigned long long)sum);
    assert_string_equal(resp.body.data, want);

    /* A failing source or sink fails the request with its errno. */
    req.body.read = read_fails;
    assert_int_equal(http_client_do(c, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EBADMSG);
    error_clear(&err);
    req.body = (struct http_client_body){0};
    req.method = NULL;
    req.url = url("/hello");
    req.sink = (struct http_client_sink){.kind = HTTP_CLIENT_SINK_CALLBACK,
                                         .write = refuse};
    assert_int_equal(http_client_do(c, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, ENOSPC);
    error_clear(&err);

    /* Inconsistent requests are refused before anything is sent. */
    req.sink = (struct http_client_sink){.kind = HTTP_CLIENT_SINK_CALLBACK};
    assert_int_equal(http_client_do(c, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EINVAL);
    error_clear(&err);
}

static void test_methods(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_http_client_ struct http_client *c = http_client_new(&err);
    _cleanup_http_response_ struct http_client_response resp = {0};
    struct http_client_request req = {.method = "HEAD", .url = url("/hello")};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_bytes, 0);
    assert_string_equal(http_client_response_header(&resp, "Content-Length"),
                        "11");
    req = (struct http_client_request){.method = "DELETE", .url = url("/x")};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_string_equal(resp.body.data, "DELETE /x len=0 sum=0 cl=- te=-");
    /* PUT and POST without a body still say Content-Length: 0. */
    req = (struct http_client_request){.method = "PUT", .url = url("/y")};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_string_equal(resp.body.data, "PUT /y len=0 sum=0 cl=0 te=-");
    req.method = "POST";
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_string_equal(resp.body.data, "POST /y len=0 sum=0 cl=0 te=-");
    /* GET after a PUT on the same handle is a plain GET again. */
    req = (struct http_client_request){.url = url("/z")};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_string_equal(resp.body.data, "GET /z len=0 sum=0 cl=- te=-");
}

static void test_redirects(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_http_client_ struct http_client *c = http_client_new(&err);
    _cleanup_http_response_ struct http_client_response resp = {0};
    struct http_client_request req = {.url = url("/redirect?/hello")};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 307);
    assert_string_equal(http_client_response_header(&resp, "Location"),
                        "/hello");
    assert_string_equal(resp.body.data, "moved");
    req.follow_redirects = true;
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "hello world");
    /* Only the final reply's headers are kept. */
    assert_null(http_client_response_header(&resp, "Location"));
    /* A 307 keeps the method and resends the body (rewound). */
    req.method = "PUT";
    req.url = url("/redirect?/dest");
    req.body = (struct http_client_body){
        .kind = HTTP_CLIENT_BODY_MEMORY, .data = "abcdef", .len = 6};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_true(str_has_prefix(resp.body.data, "PUT /dest len=6 "));
    /* Redirects to other schemes are refused. */
    req = (struct http_client_request){.url = url("/redirect?file:///etc/"),
                                       .follow_redirects = true};
    assert_int_equal(http_client_do(c, &req, &resp, &err), -1);
    assert_non_null(err);
    error_clear(&err);
}

static void test_timeout(void **s)
{
    struct koala_error *err = NULL;
    struct http_client_request req = {.url = url("/slow"), .timeout_ms = 300};
    _cleanup_http_response_ struct http_client_response resp = {0};
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, ETIMEDOUT);
    assert_null(err->code);
    error_free(err);
}

static void test_bad_urls(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_http_response_ struct http_client_response resp = {0};
    struct http_client_request req = {.url = "file:///etc/passwd"};
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EINVAL);
    assert_int_equal(resp.body.len, 0);
    error_clear(&err);
    req.url = NULL;
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EINVAL);
    error_clear(&err);
    req.url = "http://[bad";
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EINVAL);
    error_clear(&err);
}

static void test_tls_handshake_failure(void **s)
{
    /* TLS to a server that speaks plain HTTP: a TLS error, reported as
     * such, with the client certificate options accepted. */
    char u[128];
    snprintf(u, sizeof(u), "https://127.0.0.1:%u/hello",
             (unsigned)http_server_port(g_srv));
    struct http_client_tls tls = {.insecure = true};
    struct http_client_request req = {
        .url = u, .tls = &tls, .timeout_ms = 5000};
    struct koala_error *err = NULL;
    _cleanup_http_response_ struct http_client_response resp = {0};
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EPROTO);
    assert_null(err->code);
    error_clear(&err);
    /* A client certificate that does not exist is an error too. */
    tls = (struct http_client_tls){.cert_file = "/nonexistent/cert.pem",
                                   .key_file = "/nonexistent/key.pem",
                                   .ca_file = "/nonexistent/ca.pem"};
    assert_int_equal(http_client_do(NULL, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EPROTO);
    error_clear(&err);
}

/* ---- mutual TLS, against a small in-process OpenSSL server ---- */

static EVP_PKEY *make_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

/* A certificate for key signed by ca_key (self-signed when ca is NULL). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *ca,
                       EVP_PKEY *ca_key, const char *ext_bc,
                       const char *ext_san)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : name);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca ? ca : x, x, NULL, NULL, 0);
    const char *exts[][2] = {{"basicConstraints", ext_bc},
                             {"subjectAltName", ext_san}};
    for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
        if (exts[i][1] == NULL)
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, ca_key ? ca_key : key, EVP_sha256()) > 0);
    return x;
}

static void write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (cert)
        PEM_write_X509(f, cert);
    if (key)
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

struct tls_server {
    char dir[64];
    int listen_fd;
    uint16_t port;
    SSL_CTX *ctx;
    pthread_t thread;
    int served; /* requests answered (client certificate verified) */
};

static void *tls_serve(void *arg)
{
    struct tls_server *t = arg;
    for (;;) {
        int fd = accept(t->listen_fd, NULL, NULL);
        if (fd < 0)
            break; /* shut down */
        SSL *ssl = SSL_new(t->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            char req[4096];
            size_t got = 0;
            int n;
            while (got < sizeof(req) - 1 &&
                   (n = SSL_read(ssl, req + got,
                                 (int)(sizeof(req) - 1 - got))) > 0) {
                got += (size_t)n;
                req[got] = '\0';
                if (strstr(req, "\r\n\r\n"))
                    break;
            }
            static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: "
                                        "6\r\nConnection: close\r\n\r\nsecret";
            /* Counted before the reply, so the client sees it. */
            __atomic_add_fetch(&t->served, 1, __ATOMIC_SEQ_CST);
            SSL_write(ssl, reply, (int)strlen(reply));
            SSL_shutdown(ssl);
        } else {
            /* Let the alert reach the client before the socket goes:
             * closing with its request unread would reset the connection
             * and drop the alert. */
            struct timeval tv = {.tv_sec = 2};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            shutdown(fd, SHUT_WR);
            char junk[4096];
            while (read(fd, junk, sizeof(junk)) > 0)
                ;
        }
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

static void path_in(char *out, size_t size, const struct tls_server *t,
                    const char *name)
{
    snprintf(out, size, "%s/%s", t->dir, name);
}

static void tls_server_start(struct tls_server *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/koala-tls-test-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    EVP_PKEY *ca_key = make_key(), *srv_key = make_key(), *cli_key = make_key(),
             *other_key = make_key();
    X509 *ca = make_cert("Koala test CA", ca_key, NULL, NULL,
                         "critical,CA:TRUE", NULL);
    X509 *srv =
        make_cert("127.0.0.1", srv_key, ca, ca_key, "CA:FALSE", "IP:127.0.0.1");
    X509 *cli = make_cert("koala-nc", cli_key, ca, ca_key, "CA:FALSE", NULL);
    X509 *other =
        make_cert("Other CA", other_key, NULL, NULL, "critical,CA:TRUE", NULL);
    char p[128];
    path_in(p, sizeof(p), t, "ca.pem");
    write_pem(p, ca, NULL);
    path_in(p, sizeof(p), t, "other.pem");
    write_pem(p, other, NULL);
    path_in(p, sizeof(p), t, "cli.pem");
    write_pem(p, cli, NULL);
    path_in(p, sizeof(p), t, "cli.key");
    write_pem(p, NULL, cli_key);

    t->ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(t->ctx, srv), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(t->ctx, srv_key), 1);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(t->ctx), ca);
    SSL_CTX_set_verify(t->ctx,
                       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    X509_free(ca);
    X509_free(srv);
    X509_free(cli);
    X509_free(other);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(cli_key);
    EVP_PKEY_free(other_key);

    t->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(t->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(t->listen_fd, 8), 0);
    assert_int_equal(getsockname(t->listen_fd, (struct sockaddr *)&sa, &sl), 0);
    t->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&t->thread, NULL, tls_serve, t), 0);
}

static void tls_server_stop(struct tls_server *t)
{
    shutdown(t->listen_fd, SHUT_RDWR); /* wakes accept() */
    pthread_join(t->thread, NULL);
    close(t->listen_fd);
    SSL_CTX_free(t->ctx);
    static const char *const files[] = {"ca.pem", "other.pem", "cli.pem",
                                        "cli.key"};
    char p[128];
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        path_in(p, sizeof(p), t, files[i]);
        unlink(p);
    }
    rmdir(t->dir);
}

static void test_mutual_tls(void **s)
{
    struct tls_server t = {0};
    tls_server_start(&t);
    char u[128], ca[128], other[128], cert[128], key[128];
    snprintf(u, sizeof(u), "https://127.0.0.1:%u/x?sig=1", (unsigned)t.port);
    path_in(ca, sizeof(ca), &t, "ca.pem");
    path_in(other, sizeof(other), &t, "other.pem");
    path_in(cert, sizeof(cert), &t, "cli.pem");
    path_in(key, sizeof(key), &t, "cli.key");
    struct koala_error *err = NULL;
    _cleanup_http_client_ struct http_client *c = http_client_new(&err);
    _cleanup_http_response_ struct http_client_response resp = {0};

    /* Both sides check each other against the cloud's CA. */
    struct http_client_tls tls = {
        .ca_file = ca, .cert_file = cert, .key_file = key};
    struct http_client_request req = {
        .url = u, .tls = &tls, .timeout_ms = 10000};
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "secret");
    assert_int_equal(__atomic_load_n(&t.served, __ATOMIC_SEQ_CST), 1);

    /* No client certificate: the server refuses. */
    tls = (struct http_client_tls){.ca_file = ca};
    assert_int_equal(http_client_do(c, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EPROTO);
    assert_null(err->code);
    error_clear(&err);

    /* A server certificate from another CA: the client refuses. */
    tls = (struct http_client_tls){
        .ca_file = other, .cert_file = cert, .key_file = key};
    assert_int_equal(http_client_do(c, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EPROTO);
    error_clear(&err);
    /* The same with the system's CAs (no tls settings at all). */
    req.tls = NULL;
    assert_int_equal(http_client_do(c, &req, &resp, &err), -1);
    assert_int_equal(err->errnum, EPROTO);
    error_clear(&err);
    /* insecure skips the server check; the server still wants our cert. */
    tls = (struct http_client_tls){
        .insecure = true, .cert_file = cert, .key_file = key};
    req.tls = &tls;
    assert_int_equal(http_client_do(c, &req, &resp, &err), 0);
    assert_string_equal(resp.body.data, "secret");
    assert_int_equal(__atomic_load_n(&t.served, __ATOMIC_SEQ_CST), 2);
    tls_server_stop(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_to_memory),
        cmocka_unit_test(test_one_shot),
        cmocka_unit_test(test_put_from_fd),
        cmocka_unit_test(test_download_to_fd),
        cmocka_unit_test(test_error_reply_not_in_sink),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_memory_body_and_callbacks),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_tls_handshake_failure),
        cmocka_unit_test(test_mutual_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
