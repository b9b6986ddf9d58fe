/* test_http_server.c: the libmicrohttpd-based server: streamed bodies,
 * early replies, 100-continue, oversized headers, fd replies, keep-alive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "http_server.h"

struct state {
    int body_calls;
    size_t body_bytes;
    _Atomic int k_done; /* on_done calls for "/k" only */
    char last_target[256];
};

struct req_data {
    struct buf body;
    int pauses; /* "/pause*": times on_body declined a piece */
    int calls;
};

/* Deferred work: runs on a worker thread, may block. */
static void deferred_reply(struct http_request *req)
{
    struct req_data *d = http_request_data(req);
    usleep(300 * 1000);
    struct buf out = {0};
    buf_printf(&out, "deferred %s len=%zu", http_request_path(req),
               d ? d->body.len : 0);
    size_t len = out.len;
    http_reply_take(req, 200, "text/plain", buf_steal(&out), len);
}

static void *resume_later(void *arg)
{
    usleep(20 * 1000);
    http_request_resume(arg);
    return NULL;
}

static void on_request(struct http_request *req, void *ctx)
{
    struct state *st = ctx;
    snprintf(st->last_target, sizeof(st->last_target), "%s",
             http_request_target(req));
    const char *path = http_request_path(req);
    if (strcmp(path, "/reject") == 0) {
        http_reply_header(req, "X-Why", "rejected");
        http_reply_buffer(req, 403, "text/plain", "no", 2);
        return;
    }
    if (strcmp(path, "/file") == 0) {
        char tmpl[] = "/tmp/koala-http-test-XXXXXX";
        int fd = mkstemp(tmpl);
        assert_true(fd >= 0);
        unlink(tmpl);
        assert_int_equal(write(fd, "0123456789", 10), 10);
        http_reply_fd(req, 200, "application/octet-stream", fd, 2, 5);
        return;
    }
    struct req_data *d = calloc(1, sizeof(*d));
    http_request_set_data(req, d);
    if (strcmp(path, "/defer") == 0)
        http_request_defer(req, deferred_reply);
}

static ssize_t on_body(struct http_request *req, const char *data, size_t len)
{
    struct state *st = http_request_ctx(req);
    struct req_data *d = http_request_data(req);
    const char *path = http_request_path(req);
    /* "/pause-later": every third piece is declined, and resumed from
     * another thread; "/pause-now": declined and resumed at once, before
     * the server got to suspend (the race http_server must survive). */
    if (str_has_prefix(path, "/pause") && d->calls++ % 3 == 1) {
        d->pauses++;
        if (strcmp(path, "/pause-now") == 0) {
            http_request_resume(req);
        } else {
            pthread_t t;
            assert_int_equal(pthread_create(&t, NULL, resume_later, req), 0);
            pthread_detach(t);
        }
        return 0;
    }
    st->body_calls++;
    st->body_bytes += len;
    buf_append(&d->body, data, len);
    return (ssize_t)len;
}

static void on_complete_ok(struct http_request *req)
{
    struct req_data *d = http_request_data(req);
    if (strcmp(http_request_path(req), "/defer-body") == 0)
        return http_request_defer(req, deferred_reply);
    struct buf out = {0};
    buf_printf(&out, "%s %s q=%s len=%zu pauses=%d", http_request_method(req),
               http_request_path(req), http_request_query(req), d->body.len,
               d->pauses);
    size_t len = out.len;
    http_reply_take(req, 200, "text/plain", buf_steal(&out), len);
}

static void on_done(struct http_request *req)
{
    struct state *st = http_request_ctx(req);
    struct req_data *d = http_request_data(req);
    /* Connections of earlier tests may end late; count ours apart. */
    if (strcmp(http_request_path(req), "/k") == 0)
        st->k_done++;
    if (d) {
        buf_free(&d->body);
        free(d);
    }
}

static void on_oversized(struct http_request *req, void *ctx)
{
    http_reply_buffer(req, 400, "text/plain", "too big", 7);
}

static struct state g_state;
static struct http_server *g_srv;

static int setup(void **s)
{
    static const struct http_handler h = {
        .on_request = on_request,
        .on_body = on_body,
        .on_complete = on_complete_ok,
        .on_done = on_done,
        .on_oversized = on_oversized,
    };
    struct http_server_config cfg = {.address = "127.0.0.1",
                                     .max_header_bytes = 4096};
    struct koala_error *err = NULL;
    memset(&g_state, 0, sizeof(g_state));
    g_srv = http_server_new(&cfg, &h, &g_state, &err);
    assert_non_null(g_srv);
    assert_true(http_server_port(g_srv) > 0);
    return 0;
}

static int teardown(void **s)
{
    http_server_free(g_srv);
    return 0;
}

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    buf_append(ud, p, sz * n);
    return sz * n;
}

struct upload_src {
    size_t left;
};

static size_t read_cb(char *p, size_t sz, size_t n, void *ud)
{
    struct upload_src *u = ud;
    size_t want = sz * n < u->left ? sz * n : u->left;
    memset(p, 'x', want);
    u->left -= want;
    return want;
}

static long perform(CURL *c, const char *target, struct buf *out)
{
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s",
             (unsigned)http_server_port(g_srv), target);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

static void test_get_raw_target(void **s)
{
    CURL *c = curl_easy_init();
    struct buf out = {0};
    assert_int_equal(perform(c, "/b/a%20b%2Fc?x=1%2B2&acl", &out), 200);
    assert_string_equal(out.data,
                        "GET /b/a%20b%2Fc q=x=1%2B2&acl len=0 pauses=0");
    assert_string_equal(g_state.last_target, "/b/a%20b%2Fc?x=1%2B2&acl");
    buf_free(&out);
    curl_easy_cleanup(c);
}

static void test_streamed_chunked_put(void **s)
{
    CURL *c = curl_easy_init();
    struct buf out = {0};
    struct upload_src src = {.left = 3 * 1024 * 1024 + 7};
    struct curl_slist *h =
        curl_slist_append(NULL, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    g_state.body_calls = 0;
    assert_int_equal(perform(c, "/put", &out), 200);
    assert_string_equal(out.data, "PUT /put q= len=3145735 pauses=0");
    /* Delivered in many pieces: never gathered by the server. */
    assert_true(g_state.body_calls > 3);
    buf_free(&out);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void test_early_reject_skips_body(void **s)
{
    CURL *c = curl_easy_init();
    struct buf out = {0};
    struct upload_src src = {.left = 1024 * 1024};
    /* Odd casing: the server must still recognise it. */
    struct curl_slist *h = curl_slist_append(NULL, "Expect: 100-Continue");
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)src.left);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 5000L);
    assert_int_equal(perform(c, "/reject", &out), 403);
    assert_string_equal(out.data, "no");
    /* The client never got a 100 Continue, so it sent no body. */
    assert_int_equal(src.left, 1024 * 1024);
    buf_free(&out);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void test_100_continue_accepted(void **s)
{
    CURL *c = curl_easy_init();
    struct buf out = {0};
    struct upload_src src = {.left = 100000};
    struct curl_slist *h = curl_slist_append(NULL, "Expect: 100-continue");
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)src.left);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 60000L);
    assert_int_equal(perform(c, "/ok", &out), 200);
    assert_string_equal(out.data, "PUT /ok q= len=100000 pauses=0");
    buf_free(&out);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void test_oversized_headers(void **s)
{
    CURL *c = curl_easy_init();
    struct buf out = {0};
    struct buf big = {0};
    buf_append_str(&big, "X-Big: ");
    for (int i = 0; i < 5000; i++)
        buf_append_char(&big, 'a');
    struct curl_slist *h = curl_slist_append(NULL, big.data);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    assert_int_equal(perform(c, "/x", &out), 400);
    assert_string_equal(out.data, "too big");
    buf_free(&out);
    buf_free(&big);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static size_t header_cb(char *p, size_t sz, size_t n, void *ud)
{
    buf_append(ud, p, sz * n);
    return sz * n;
}

static void test_fd_reply_and_head(void **s)
{
    CURL *c = curl_easy_init();
    struct buf out = {0}, hdrs = {0};
    assert_int_equal(perform(c, "/file", &out), 200);
    assert_string_equal(out.data, "23456");
    buf_reset(&out);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
    assert_int_equal(perform(c, "/file", &out), 200);
    assert_non_null(strcasestr(hdrs.data, "Content-Length: 5\r\n"));
    assert_int_equal(out.len, 0);
    buf_free(&out);
    buf_free(&hdrs);
    curl_easy_cleanup(c);
}

static void test_keepalive_and_done(void **s)
{
    CURL *c = curl_easy_init();
    for (int i = 0; i < 5; i++) {
        struct buf out = {0};
        assert_int_equal(perform(c, "/k", &out), 200);
        buf_free(&out);
    }
    long conns = -1;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
    assert_int_equal(conns, 0); /* the last request reused the connection */
    curl_easy_cleanup(c);
    for (int i = 0; i < 100 && g_state.k_done < 5; i++)
        usleep(10000);
    assert_int_equal(g_state.k_done, 5);
}

/* A reply made while the headers are in (an error, or a GET answered at
 * once) keeps the connection alive when there is no body to skip. */
static void test_early_reply_keeps_connection(void **s)
{
    CURL *c = curl_easy_init();
    for (int i = 0; i < 3; i++) {
        struct buf out = {0};
        assert_int_equal(perform(c, "/reject", &out), 403);
        assert_int_equal(out.len, 2);
        buf_free(&out);
    }
    long conns = -1;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
    assert_int_equal(conns, 0);
    curl_easy_cleanup(c);
}

/* Deferred work runs off the event loop: other requests are served
 * meanwhile, and the deferred reply keeps the connection alive. */
struct bg_get {
    struct buf out;
    long code;
    double seconds;
};

static void *get_in_background(void *arg)
{
    struct bg_get *g = arg;
    CURL *c = curl_easy_init();
    g->code = perform(c, "/defer", &g->out);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &g->seconds);
    curl_easy_cleanup(c);
    return NULL;
}

static void test_defer(void **s)
{
    struct bg_get bg = {{0}, 0, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, get_in_background, &bg), 0);
    usleep(10 * 1000);
    CURL *c = curl_easy_init();
    struct buf out = {0};
    assert_int_equal(perform(c, "/quick", &out), 200);
    double quick;
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &quick);
    pthread_join(t, NULL);
    assert_int_equal(bg.code, 200);
    assert_string_equal(bg.out.data, "deferred /defer len=0");
    assert_true(bg.seconds >= 0.3);
    assert_true(quick < 0.25); /* not stuck behind the 300 ms job */
    buf_reset(&out);
    /* Deferred from on_complete, after a body; on the same connection. */
    struct upload_src src = {.left = 200000};
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)src.left);
    assert_int_equal(perform(c, "/defer-body", &out), 200);
    assert_string_equal(out.data, "deferred /defer-body len=200000");
    long conns = -1;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
    assert_int_equal(conns, 0);
    buf_free(&out);
    buf_free(&bg.out);
    curl_easy_cleanup(c);
}

/* A handler that declines pieces of a body pauses it; resumed, the rest
 * arrives whole and in order, however the resume races the pause. */
static void put_paused(const char *path)
{
    CURL *c = curl_easy_init();
    struct buf out = {0};
    struct upload_src src = {.left = 2 * 1024 * 1024 + 3};
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)src.left);
    assert_int_equal(perform(c, path, &out), 200);
    char want[128];
    snprintf(want, sizeof(want), "PUT %s q= len=2097155 pauses=", path);
    assert_true(str_has_prefix(out.data, want));
    assert_true(atoi(out.data + strlen(want)) >= 1);
    buf_free(&out);
    curl_easy_cleanup(c);
}

static void test_body_backpressure(void **s)
{
    put_paused("/pause-later");
    put_paused("/pause-now");
}

static void test_bad_address(void **s)
{
    static const struct http_handler h = {.on_request = on_request};
    struct http_server_config cfg = {.address = "not-an-ip"};
    struct koala_error *err = NULL;
    assert_null(http_server_new(&cfg, &h, NULL, &err));
    assert_string_equal(error_code(err), "InvalidConfiguration");
    error_free(err);
}

/* ---- shutdown with requests under way ---- */

static void slow_job(struct http_request *req)
{
    usleep(1000 * 1000); /* far past the grace period */
    http_reply_buffer(req, 200, "text/plain", "late", 4);
}

static void *resume_much_later(void *arg)
{
    usleep(800 * 1000);
    http_request_resume(arg);
    return NULL;
}

static void stop_on_request(struct http_request *req, void *ctx)
{
    if (strcmp(http_request_path(req), "/slow") == 0)
        http_request_defer(req, slow_job);
}

static ssize_t stop_on_body(struct http_request *req, const char *data,
                            size_t len)
{
    /* "/stuck": the first piece is declined, resumed long after. */
    if (strcmp(http_request_path(req), "/stuck") == 0 &&
        http_request_data(req) == NULL) {
        http_request_set_data(req, req);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, resume_much_later, req), 0);
        pthread_detach(t);
        return 0;
    }
    return (ssize_t)len;
}

static void stop_on_complete(struct http_request *req)
{
    http_reply_buffer(req, 200, "text/plain", "ok", 2);
}

static int raw_connect(uint16_t port, const char *head)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    return fd;
}

static void *get_slow(void *arg)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/slow", *(unsigned *)arg);
    CURL *c = curl_easy_init();
    struct buf out = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_perform(c); /* finished or cut: either is fine */
    curl_easy_cleanup(c);
    buf_free(&out);
    return NULL;
}

/* Stopping the server while a deferred job outlasts the grace period, a
 * body is paused by its handler and another trickles in: the server waits
 * for the job and the resume, cuts the rest and frees (MHD used to abort:
 * "called while we have suspended connections"). */
static void test_stop_cuts_requests(void **s)
{
    static const struct http_handler h = {
        .on_request = stop_on_request,
        .on_body = stop_on_body,
        .on_complete = stop_on_complete,
    };
    struct http_server_config cfg = {.address = "127.0.0.1",
                                     .stop_grace_ms = 100};
    struct koala_error *err = NULL;
    struct http_server *srv = http_server_new(&cfg, &h, NULL, &err);
    assert_non_null(srv);
    unsigned port = http_server_port(srv);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, get_slow, &port), 0);
    int trickle =
        raw_connect((uint16_t)port, "PUT /trickle HTTP/1.1\r\nHost: x\r\n"
                                    "Content-Length: 100000\r\n\r\n0123456789");
    int stuck =
        raw_connect((uint16_t)port, "PUT /stuck HTTP/1.1\r\nHost: x\r\n"
                                    "Content-Length: 100\r\n\r\n0123456789");
    usleep(200 * 1000);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    http_server_free(srv);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double took = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(took >= 0.5); /* it waited for the job and the resume */
    assert_true(took < 5.0);  /* and cut the trickling body */
    pthread_join(t, NULL);
    close(trickle);
    close(stuck);
}

/* A query of tens of thousands of arguments is answered: MHD (0.9.75)
 * ran out of its connection's memory recording them one by one and left
 * the connection hanging without a reply. */
static void test_many_query_arguments(void **s)
{
    struct buf req = {0};
    buf_append_str(&req, "GET /many?");
    for (int i = 0; i < 30000; i++)
        buf_append_str(&req, "a&");
    buf_append_str(&req, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    int fd = raw_connect(http_server_port(g_srv), req.data);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char reply[64] = "";
    ssize_t n = read(fd, reply, sizeof(reply) - 1);
    close(fd);
    assert_true(n > 0);
    assert_true(str_has_prefix(reply, "HTTP/1.1 200"));
    assert_true(strstr(g_state.last_target, "/many?a&a&a&") != NULL);
    buf_free(&req);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_raw_target),
        cmocka_unit_test(test_streamed_chunked_put),
        cmocka_unit_test(test_early_reject_skips_body),
        cmocka_unit_test(test_100_continue_accepted),
        cmocka_unit_test(test_oversized_headers),
        cmocka_unit_test(test_fd_reply_and_head),
        cmocka_unit_test(test_keepalive_and_done),
        cmocka_unit_test(test_early_reply_keeps_connection),
        cmocka_unit_test(test_defer),
        cmocka_unit_test(test_stop_cuts_requests),
        cmocka_unit_test(test_many_query_arguments),
        cmocka_unit_test(test_body_backpressure),
        cmocka_unit_test(test_bad_address),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
