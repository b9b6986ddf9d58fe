/* test_log.c: levels, per-module overrides, level specs, the line format
 * and whole-line writes from several threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_MODULE "testmod"
#include "buf.h"
#include "log.h"

static int g_pipe[2] = {-1, -1};

static int setup(void **s)
{
    assert_int_equal(pipe2(g_pipe, O_NONBLOCK), 0);
    log_reset();
    log_set_fd(g_pipe[1]);
    return 0;
}

static int teardown(void **s)
{
    log_reset();
    close(g_pipe[0]);
    close(g_pipe[1]);
    return 0;
}

/* Everything logged since the last call. */
static char *drain(void)
{
    struct buf b = {0};
    char chunk[4096];
    ssize_t n;
    while ((n = read(g_pipe[0], chunk, sizeof(chunk))) > 0)
        buf_append(&b, chunk, (size_t)n);
    return buf_steal(&b);
}

static void test_level_parse(void **s)
{
    enum log_level l;
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_LVL_ERROR);
    assert_int_equal(log_level_parse("WARN", &l), 0);
    assert_int_equal(l, LOG_LVL_WARN);
    assert_int_equal(log_level_parse("warning", &l), 0);
    assert_int_equal(l, LOG_LVL_WARN);
    assert_int_equal(log_level_parse("Info", &l), 0);
    assert_int_equal(l, LOG_LVL_INFO);
    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_LVL_DEBUG);
    l = LOG_LVL_INFO;
    assert_int_equal(log_level_parse("trace", &l), -1);
    assert_int_equal(log_level_parse("", &l), -1);
    assert_int_equal(log_level_parse("debugx", &l), -1);
    assert_int_equal(l, LOG_LVL_INFO);
}

static void test_default_threshold(void **s)
{
    /* Info by default. */
    assert_true(log_enabled("any", LOG_LVL_ERROR));
    assert_true(log_enabled("any", LOG_LVL_INFO));
    assert_false(log_enabled("any", LOG_LVL_DEBUG));
    log_debug("hidden %d", 1);
    log_info("shown %d", 2);
    _cleanup_free_ char *out = drain();
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "shown 2"));
}

static void test_line_format(void **s)
{
    log_error("boom: %s=%d", "x", 42);
    log_warn("careful");
    log_msg(LOG_LVL_INFO, "other", "from %s", "elsewhere");
    _cleanup_free_ char *out = drain();
    /* "2024-01-02T03:04:05.678Z error [testmod] boom: x=42\n" */
    char *line = out;
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_int_equal(strlen(line), 24 + 1 + 5 + 1 + 9 + 1 + 10);
    assert_int_equal(line[4], '-');
    assert_int_equal(line[10], 'T');
    assert_int_equal(line[19], '.');
    assert_int_equal(line[23], 'Z');
    assert_string_equal(line + 24, " error [testmod] boom: x=42");
    line = nl + 1;
    nl = strchr(line, '\n');
    *nl = '\0';
    assert_string_equal(line + 24, " warn  [testmod] careful");
    line = nl + 1;
    nl = strchr(line, '\n');
    *nl = '\0';
    assert_string_equal(line + 24, " info  [other] from elsewhere");
    assert_string_equal(nl + 1, "");
}

static void test_module_overrides(void **s)
{
    log_set_level(NULL, LOG_LVL_WARN);
    log_set_level("walrus", LOG_LVL_DEBUG);
    log_set_level("http", LOG_LVL_ERROR);
    assert_false(log_enabled("clc", LOG_LVL_INFO));
    assert_true(log_enabled("clc", LOG_LVL_WARN));
    assert_true(log_enabled("walrus", LOG_LVL_DEBUG));
    assert_false(log_enabled("http", LOG_LVL_WARN));
    assert_true(log_enabled("http", LOG_LVL_ERROR));
    /* Overrides are exact names, not prefixes. */
    assert_false(log_enabled("walrus2", LOG_LVL_INFO));
    /* Replacing an override. */
    log_set_level("walrus", LOG_LVL_ERROR);
    assert_false(log_enabled("walrus", LOG_LVL_WARN));
    /* The global level does not change overrides. */
    log_set_level(NULL, LOG_LVL_DEBUG);
    assert_false(log_enabled("walrus", LOG_LVL_WARN));
    assert_true(log_enabled("clc", LOG_LVL_DEBUG));
    log_msg(LOG_LVL_INFO, "http", "dropped");
    log_msg(LOG_LVL_ERROR, "http", "kept");
    _cleanup_free_ char *out = drain();
    assert_null(strstr(out, "dropped"));
    assert_non_null(strstr(out, "kept"));
    /* Reset drops them all. */
    log_reset();
    log_set_fd(g_pipe[1]);
    assert_true(log_enabled("http", LOG_LVL_INFO));
    assert_false(log_enabled("walrus", LOG_LVL_DEBUG));
}

static void test_many_modules(void **s)
{
    /* More overrides than the table holds: the extra ones are ignored,
     * nothing breaks. */
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "mod%d", i);
        log_set_level(name, LOG_LVL_DEBUG);
    }
    assert_true(log_enabled("mod0", LOG_LVL_DEBUG));
    assert_false(log_enabled("unrelated", LOG_LVL_DEBUG));
}

static void test_spec(void **s)
{
    assert_int_equal(log_set_level_spec("warn,walrus=debug,http=error"), 0);
    assert_false(log_enabled("x", LOG_LVL_INFO));
    assert_true(log_enabled("walrus", LOG_LVL_DEBUG));
    assert_false(log_enabled("http", LOG_LVL_WARN));
    /* Just overrides: the global level stays. */
    assert_int_equal(log_set_level_spec("cc=info"), 0);
    assert_true(log_enabled("cc", LOG_LVL_INFO));
    assert_false(log_enabled("x", LOG_LVL_INFO));
    assert_int_equal(log_set_level_spec("DEBUG"), 0);
    assert_true(log_enabled("x", LOG_LVL_DEBUG));
    /* Empty items are skipped. */
    assert_int_equal(log_set_level_spec(",info,,nc=warn,"), 0);
    assert_false(log_enabled("nc", LOG_LVL_INFO));
}

static void test_spec_malformed(void **s)
{
    assert_int_equal(log_set_level_spec("info,walrus=debug"), 0);
    static const char *const bad[] = {
        "verbose",
        "info,walrus", /* a module without a level */
        "info,walrus=",
        "=debug",
        "info,walrus=debug=x",
        "error,clc=loud",
        "info,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=debug", /* too long */
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (log_set_level_spec(bad[i]) != -1)
            fail_msg("'%s' accepted", bad[i]);
    /* Nothing of a bad spec was applied, not even its valid first part. */
    assert_int_equal(log_set_level_spec("error,walrus=warn,x=bogus"), -1);
    assert_true(log_enabled("y", LOG_LVL_INFO));
    assert_true(log_enabled("walrus", LOG_LVL_DEBUG));
    /* Too many items. */
    struct buf spec = {0};
    buf_append_str(&spec, "info");
    for (int i = 0; i < 40; i++)
        buf_printf(&spec, ",m%d=debug", i);
    assert_int_equal(log_set_level_spec(spec.data), -1);
    buf_free(&spec);
}

static void test_long_lines(void **s)
{
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_info("%s", big);
    _cleanup_free_ char *out = drain();
    /* Truncated to one line that still ends in a newline. */
    size_t len = strlen(out);
    assert_true(len < 2048);
    assert_true(len > 2000);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1);

    /* A module name longer than a whole line. */
    char mod[3000];
    memset(mod, 'm', sizeof(mod) - 1);
    mod[sizeof(mod) - 1] = '\0';
    log_msg(LOG_LVL_ERROR, mod, "tail %s", big);
    _cleanup_free_ char *out2 = drain();
    len = strlen(out2);
    assert_true(len > 0 && len < 2048);
    assert_int_equal(out2[len - 1], '\n');
}

struct writer_arg {
    int id;
};

static void *writer(void *p)
{
    struct writer_arg *a = p;
    for (int i = 0; i < 200; i++)
        log_msg(LOG_LVL_INFO, "thr", "writer %d line %d %s", a->id, i,
                "padding-padding-padding-padding-padding-padding");
    return NULL;
}

static void test_threads_whole_lines(void **s)
{
    char path[] = "/tmp/koala-log-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(fcntl(fd, F_SETFL, O_APPEND), 0);
    log_set_fd(fd);
    pthread_t t[8];
    struct writer_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, writer, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    log_set_fd(g_pipe[1]);
    off_t size = lseek(fd, 0, SEEK_END);
    char *data = malloc((size_t)size + 1);
    assert_int_equal(pread(fd, data, (size_t)size, 0), size);
    data[size] = '\0';
    close(fd);
    int lines = 0;
    int next[8] = {0};
    for (char *line = data, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        int id = -1, n = -1;
        char *msg = strstr(line, "[thr] ");
        assert_non_null(msg);
        assert_int_equal(sscanf(msg, "[thr] writer %d line %d", &id, &n), 2);
        assert_true(id >= 0 && id < 8);
        assert_int_equal(n, next[id]); /* each thread's lines in order */
        next[id]++;
        assert_true(strlen(msg) > 7 &&
                    strcmp(msg + strlen(msg) - 7, "padding") == 0);
        lines++;
    }
    assert_int_equal(lines, 8 * 200);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_level_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_threshold, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_module_overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_modules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spec_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_whole_lines, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
