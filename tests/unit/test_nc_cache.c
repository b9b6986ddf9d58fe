/* test_nc_cache.c: the node's image cache against a local HTTP server
 * that serves image files slowly: one download shared by concurrent
 * launches (single flight) and by waiters of a failing one; size, digest
 * and HTTP failures; qcow2 images naming a backing file; LRU eviction that
 * never removes a pinned image; the index across restarts, and stray
 * files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cache.h"
#include "checksum.h"
#include "exec.h"
#include "http_server.h"
#include "id.h"
#include "util.h"

#define IMG_SIZE (1u << 20)

static char g_dir[64];     /* everything of the test */
static char g_srv_dir[96]; /* files the server serves */
static char g_cache_dir[96];
static struct http_server *g_srv;
static atomic_int g_gets;
static unsigned g_port;

/* ---- a slow file server: GET /NAME serves g_srv_dir/NAME after 300 ms */

static void serve(struct http_request *req)
{
    usleep(300000);
    char path[256];
    const char *p = http_request_path(req);
    snprintf(path, sizeof(path), "%s%s", g_srv_dir, p);
    int fd = strstr(p, "..") ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        http_reply_buffer(req, 404, "text/plain", "no\n", 3);
        return;
    }
    struct stat st;
    fstat(fd, &st);
    http_reply_fd(req, 200, "application/octet-stream", fd, 0,
                  (uint64_t)st.st_size);
}

static void on_request(struct http_request *req, void *ctx)
{
    atomic_fetch_add(&g_gets, 1);
}

static void on_complete(struct http_request *req)
{
    http_request_defer(req, serve);
}

static void on_done(struct http_request *req)
{
}

static const struct http_handler handler = {on_request, NULL, on_complete,
                                            on_done, NULL};

/* Writes an image file of IMG_SIZE bytes whose content depends on seed;
 * fills ref (url, size, sha256). */
static void make_image(const char *name, int seed, struct nc_image_ref *ref)
{
    unsigned char *data = malloc(IMG_SIZE);
    for (size_t i = 0; i < IMG_SIZE; i++)
        data[i] = (unsigned char)(i * 31 + (size_t)seed * 7 + i / 4096);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", g_srv_dir, name);
    assert_int_equal(nc_write_atomic(path, data, IMG_SIZE, NULL), 0);
    memset(ref, 0, sizeof(*ref));
    ref->id = strdup(name);
    assert_true(asprintf(&ref->url,
                         "http://127.0.0.1:%u/%s?X-Amz-Signature="
                         "secret",
                         g_port, name) > 0);
    ref->size = IMG_SIZE;
    checksum_sha256_hex(data, IMG_SIZE, ref->sha256);
    free(data);
}

static int count_files(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
    FILE *f = popen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    return n;
}

static bool cached(const char *sha)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", g_cache_dir, sha);
    return access(path, F_OK) == 0;
}

static int setup(void **state)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-cache-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_srv_dir, sizeof(g_srv_dir), "%s/srv", g_dir);
    snprintf(g_cache_dir, sizeof(g_cache_dir), "%s/cache", g_dir);
    assert_int_equal(nc_mkdir_p(g_srv_dir, NULL), 0);
    struct http_server_config cfg = {.address = "127.0.0.1", .workers = 16};
    g_srv = http_server_new(&cfg, &handler, NULL, NULL);
    assert_non_null(g_srv);
    g_port = http_server_port(g_srv);
    atomic_store(&g_gets, 0);
    return 0;
}

static int teardown(void **state)
{
    http_server_free(g_srv);
    assert_int_equal(nc_rmtree(g_dir, NULL), 0);
    return 0;
}

struct getter {
    struct nc_cache *c;
    const struct nc_image_ref *ref;
    char *path;
    const char *format;
    struct koala_error *err;
    int rc;
};

static void *get_thread(void *arg)
{
    struct getter *g = arg;
    g->rc = nc_cache_get(g->c, g->ref, &g->path, &g->format, &g->err);
    return NULL;
}

#define N_GETTERS 8

static void test_single_flight(void **state)
{
    struct nc_image_ref ref;
    make_image("emi-1", 1, &ref);
    struct nc_cache *c = nc_cache_new(g_cache_dir, 0, NULL, NULL);
    assert_non_null(c);
    struct getter g[N_GETTERS];
    pthread_t th[N_GETTERS];
    for (int i = 0; i < N_GETTERS; i++) {
        g[i] = (struct getter){.c = c, .ref = &ref};
        pthread_create(&th[i], NULL, get_thread, &g[i]);
    }
    for (int i = 0; i < N_GETTERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(g[i].rc, 0);
        assert_string_equal(g[i].format, "raw");
        assert_string_equal(g[i].path, g[0].path);
    }
    assert_int_equal(atomic_load(&g_gets), 1);
    struct nc_cache_stats st;
    nc_cache_stats(c, &st);
    assert_int_equal(st.downloads, 1);
    assert_int_equal(st.images, 1);
    assert_int_equal(st.bytes, IMG_SIZE);
    struct stat sb;
    assert_int_equal(stat(g[0].path, &sb), 0);
    assert_int_equal(sb.st_size, IMG_SIZE);
    for (int i = 0; i < N_GETTERS; i++) {
        nc_cache_unpin(c, ref.sha256);
        free(g[i].path);
    }
    /* Cached now: no request at all. */
    char *path = NULL;
    const char *fmt;
    assert_int_equal(nc_cache_get(c, &ref, &path, &fmt, NULL), 0);
    free(path);
    assert_int_equal(atomic_load(&g_gets), 1);

    /* A failing download shared by concurrent waiters: each gets the
     * error; nothing is left behind. */
    struct nc_image_ref bad;
    make_image("emi-2", 2, &bad);
    bad.sha256[0] = bad.sha256[0] == '0' ? '1' : '0';
    for (int i = 0; i < N_GETTERS; i++) {
        g[i] = (struct getter){.c = c, .ref = &bad};
        pthread_create(&th[i], NULL, get_thread, &g[i]);
    }
    for (int i = 0; i < N_GETTERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(g[i].rc, -1);
        assert_string_equal(error_code(g[i].err), "Client.InvalidImage");
        assert_non_null(strstr(error_message(g[i].err), "SHA-256"));
        error_free(g[i].err);
    }
    assert_int_equal(atomic_load(&g_gets), 2);
    assert_int_equal(count_files(g_cache_dir), 2); /* emi-1 + index */
    nc_cache_free(c);
    nc_image_ref_clear(&ref);
    nc_image_ref_clear(&bad);
}

static void expect_fail(struct nc_cache *c, struct nc_image_ref *ref,
                        const char *code, const char *text)
{
    char *path = NULL;
    const char *fmt;
    struct koala_error *err = NULL;
    assert_int_equal(nc_cache_get(c, ref, &path, &fmt, &err), -1);
    assert_null(path);
    if (strcmp(error_code(err), code) != 0 ||
        strstr(error_message(err), text) == NULL)
        fail_msg("got %s: %s", error_code(err), error_message(err));
    /* The presigned URL's signature never shows in messages. */
    assert_null(strstr(error_message(err), "secret"));
    error_free(err);
}

static void test_bad_images(void **state)
{
    struct nc_cache *c = nc_cache_new(g_cache_dir, 0, NULL, NULL);
    struct nc_image_ref ref;
    make_image("emi-3", 3, &ref);
    ref.size = IMG_SIZE + 1;
    expect_fail(c, &ref, "Client.InvalidImage", "expected");
    ref.size = IMG_SIZE - 1;
    expect_fail(c, &ref, "Client.InvalidImage", "larger than its size");
    ref.size = IMG_SIZE;
    free(ref.url);
    assert_true(asprintf(&ref.url, "http://127.0.0.1:%u/missing?sig=secret",
                         g_port) > 0);
    expect_fail(c, &ref, "Client.InvalidImage", "HTTP 404");
    free(ref.url);
    ref.url = strdup("http://127.0.0.1:1/nobody-listens");
    expect_fail(c, &ref, "InternalError", "emi-3");
    strcpy(ref.sha256, "not-hex");
    expect_fail(c, &ref, "InvalidParameterValue", "sha256");

    /* A qcow2 image that names a backing file of the node's. */
    char path[256];
    snprintf(path, sizeof(path), "%s/evil.qcow2", g_srv_dir);
    const char *argv[] = {"qemu-img",    "create", "-q",  "-f",
                          "qcow2",       "-F",     "raw", "-b",
                          "/etc/passwd", path,     "1M",  NULL};
    assert_int_equal(nc_exec(argv, NULL, NULL, NULL), 0);
    size_t len;
    char *data = nc_read_file(path, 1 << 20, &len, NULL);
    nc_image_ref_clear(&ref);
    ref.id = strdup("emi-evil");
    assert_true(asprintf(&ref.url, "http://127.0.0.1:%u/evil.qcow2", g_port) >
                0);
    ref.size = len;
    checksum_sha256_hex(data, len, ref.sha256);
    free(data);
    expect_fail(c, &ref, "Client.InvalidImage", "backing file");

    /* A good qcow2 is recognised as such. */
    snprintf(path, sizeof(path), "%s/good.qcow2", g_srv_dir);
    const char *argv2[] = {"qemu-img", "create", "-q", "-f",
                           "qcow2",    path,     "1M", NULL};
    assert_int_equal(nc_exec(argv2, NULL, NULL, NULL), 0);
    data = nc_read_file(path, 1 << 20, &len, NULL);
    nc_image_ref_clear(&ref);
    ref.id = strdup("emi-good");
    assert_true(asprintf(&ref.url, "http://127.0.0.1:%u/good.qcow2", g_port) >
                0);
    ref.size = len;
    checksum_sha256_hex(data, len, ref.sha256);
    free(data);
    char *p = NULL;
    const char *fmt = NULL;
    assert_int_equal(nc_cache_get(c, &ref, &p, &fmt, NULL), 0);
    assert_string_equal(fmt, "qcow2");
    free(p);
    nc_cache_unpin(c, ref.sha256);
    /* Only the good image and the index remain: no partial downloads. */
    assert_int_equal(count_files(g_cache_dir), 2);
    nc_image_ref_clear(&ref);
    nc_cache_free(c);
}

static void get_ok(struct nc_cache *c, struct nc_image_ref *ref)
{
    char *p = NULL;
    const char *fmt;
    struct koala_error *err = NULL;
    if (nc_cache_get(c, ref, &p, &fmt, &err) < 0)
        fail_msg("%s", error_message(err));
    free(p);
    usleep(2000); /* distinct last-use times */
}

static void test_lru_and_pins(void **state)
{
    struct nc_image_ref a, b, d;
    make_image("emi-a", 10, &a);
    make_image("emi-b", 11, &b);
    make_image("emi-d", 12, &d);
    /* Room for two and a half images. */
    struct nc_cache *c =
        nc_cache_new(g_cache_dir, IMG_SIZE * 5 / 2, NULL, NULL);
    get_ok(c, &a);
    nc_cache_unpin(c, a.sha256);
    get_ok(c, &b);
    nc_cache_unpin(c, b.sha256);
    get_ok(c, &a); /* a is now the more recently used */
    nc_cache_unpin(c, a.sha256);
    get_ok(c, &d); /* past the limit: b, the least recently used, goes */
    assert_true(cached(a.sha256));
    assert_false(cached(b.sha256));
    assert_true(cached(d.sha256));
    struct nc_cache_stats st;
    nc_cache_stats(c, &st);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.images, 2);

    /* d stays pinned (an instance's backing file); a and b come and go. */
    get_ok(c, &b); /* a is unpinned and least recent: a goes */
    assert_false(cached(a.sha256));
    assert_true(cached(b.sha256));
    assert_true(cached(d.sha256));
    get_ok(c, &a); /* over the limit with all three pinned: all stay */
    assert_true(cached(a.sha256) && cached(b.sha256) && cached(d.sha256));
    nc_cache_unpin(c, b.sha256); /* b unpinned: evicted to fit */
    assert_false(cached(b.sha256));
    assert_true(cached(a.sha256) && cached(d.sha256));
    nc_cache_unpin(c, a.sha256);
    assert_true(cached(a.sha256) && cached(d.sha256));

    /* Restart: the index brings the images back; d is pinned again by
     * its instance before anything is trimmed. */
    nc_cache_free(c);
    int gets = atomic_load(&g_gets);
    c = nc_cache_new(g_cache_dir, IMG_SIZE, NULL, NULL);
    nc_cache_stats(c, &st);
    assert_int_equal(st.images, 2);
    char *p = NULL;
    const char *fmt;
    assert_int_equal(nc_cache_pin(c, d.sha256, &p, &fmt), 0);
    assert_string_equal(fmt, "raw");
    free(p);
    assert_int_equal(nc_cache_pin(c, b.sha256, NULL, NULL), -1);
    nc_cache_trim(c); /* max is one image now: a goes, d is pinned */
    assert_false(cached(a.sha256));
    assert_true(cached(d.sha256));
    get_ok(c, &d); /* from the cache: no request */
    assert_int_equal(atomic_load(&g_gets), gets);
    nc_cache_free(c);

    /* Stray files: a part of an interrupted download goes; an image file
     * without an index entry is kept if its content matches its name. */
    char path[256];
    snprintf(path, sizeof(path), "%s/.part-%s-0011223344556677", g_cache_dir,
             a.sha256);
    assert_int_equal(nc_write_atomic(path, "xx", 2, NULL), 0);
    snprintf(path, sizeof(path), "%s/index.json", g_cache_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/%s", g_cache_dir, b.sha256);
    assert_int_equal(nc_write_atomic(path, "not b", 5, NULL), 0);
    c = nc_cache_new(g_cache_dir, 0, NULL, NULL);
    nc_cache_stats(c, &st);
    assert_int_equal(st.images, 1);
    assert_true(cached(d.sha256));
    assert_false(cached(b.sha256));
    assert_int_equal(count_files(g_cache_dir), 2);
    get_ok(c, &d);
    assert_int_equal(atomic_load(&g_gets), gets);
    nc_cache_free(c);
    nc_image_ref_clear(&a);
    nc_image_ref_clear(&b);
    nc_image_ref_clear(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_and_pins, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
