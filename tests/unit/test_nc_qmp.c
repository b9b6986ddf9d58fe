/* test_nc_qmp.c: the QMP client against a real QEMU (microvm, paused with
 * -S, no kernel needed): greeting and capabilities over a socket path too
 * long for sun_path, commands and their errors, events read by one thread
 * while another runs commands, and the end of the connection when QEMU
 * quits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "exec.h"
#include "qmp.h"
#include "util.h"

static char g_dir[512];
static char g_sock[600];
static pid_t g_pid;

static pid_t read_pid(const char *path)
{
    char *s = nc_read_file(path, 64, NULL, NULL);
    pid_t p = s ? (pid_t)atoi(s) : 0;
    free(s);
    return p;
}

/* A paused microvm with its QMP socket in a deep directory. */
static int start_qemu(void **state)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-qmp-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    strcat(g_dir, "/a-directory-name-long-enough-to-push-the-socket-path-"
                  "past-the-108-bytes-of-sun-path-0123456789");
    assert_int_equal(nc_mkdir_p(g_dir, NULL), 0);
    snprintf(g_sock, sizeof(g_sock), "%s/qmp.sock", g_dir);
    assert_true(strlen(g_sock) > 108);
    char pidfile[600];
    snprintf(pidfile, sizeof(pidfile), "%s/qemu.pid", g_dir);
    const char *argv[] = {"qemu-system-x86_64",
                          "-M",
                          "microvm",
                          "-S",
                          "-nodefaults",
                          "-display",
                          "none",
                          "-qmp",
                          "unix:qmp.sock,server=on,wait=off",
                          "-daemonize",
                          "-pidfile",
                          pidfile,
                          NULL};
    struct nc_exec_opts o = {.netns_fd = -1, .cwd = g_dir, .timeout_ms = 20000};
    struct koala_error *err = NULL;
    int rc = nc_exec(argv, &o, NULL, &err);
    if (rc < 0)
        fprintf(stderr, "qemu: %s\n", error_message(err));
    assert_int_equal(rc, 0);
    g_pid = read_pid(pidfile);
    assert_true(g_pid > 0);
    return 0;
}

static int stop_qemu(void **state)
{
    if (g_pid > 0 && kill(g_pid, 0) == 0)
        kill(g_pid, SIGKILL);
    char *slash = strrchr(g_dir, '/');
    *slash = '\0';
    assert_int_equal(nc_rmtree(g_dir, NULL), 0);
    return 0;
}

struct reader {
    struct qmp *q;
    char seen[16][32];
    int n;
    int rc;
};

static void *read_events(void *arg)
{
    struct reader *r = arg;
    for (;;) {
        json_t *ev = NULL;
        r->rc = qmp_next_event(r->q, 10000, &ev, NULL);
        if (r->rc <= 0)
            break;
        if (r->n < 16)
            snprintf(r->seen[r->n++], 32, "%s", qmp_event_name(ev));
        json_decref(ev);
    }
    return NULL;
}

static bool saw(const struct reader *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->seen[i], name) == 0)
            return true;
    return false;
}

static void test_qmp(void **state)
{
    struct koala_error *err = NULL;
    struct qmp *q = qmp_connect(g_sock, 5000, &err);
    if (q == NULL)
        fprintf(stderr, "connect: %s\n", error_message(err));
    assert_non_null(q);

    json_t *r = qmp_execute(q, "query-status", NULL, 5000, &err);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "status")),
                        "prelaunch");
    json_decref(r);

    /* A command QEMU does not know: its error class and text. */
    assert_null(qmp_execute(q, "no-such-command", NULL, 5000, &err));
    assert_non_null(strstr(error_message(err), "CommandNotFound"));
    error_clear(&err);

    /* Arguments. */
    r = qmp_execute(
        q, "qom-get",
        json_pack("{s:s, s:s}", "path", "/machine", "property", "type"), 5000,
        &err);
    assert_non_null(r);
    assert_string_equal(json_string_value(r), "microvm-machine");
    json_decref(r);

    /* Nothing happens: no event. */
    json_t *ev = NULL;
    int64_t t0 = time_mono_ms();
    assert_int_equal(qmp_next_event(q, 200, &ev, &err), 0);
    assert_true(time_mono_ms() - t0 >= 190);

    /* Events read by one thread while this one runs commands. */
    struct reader rd = {.q = q};
    pthread_t th;
    pthread_create(&th, NULL, read_events, &rd);
    usleep(100000); /* the reader is polling now */
    for (const char *const *c =
             (const char *const[]){"stop", "system_powerdown", "system_reset",
                                   NULL};
         *c; c++) {
        t0 = time_mono_ms();
        r = qmp_execute(q, *c, NULL, 5000, &err);
        assert_non_null(r);
        json_decref(r);
        assert_true(time_mono_ms() - t0 < 2000);
    }
    r = qmp_execute(q, "quit", NULL, 5000, &err);
    assert_non_null(r);
    json_decref(r);
    pthread_join(th, NULL);
    assert_int_equal(rd.rc, -1);
    assert_true(saw(&rd, "POWERDOWN"));
    assert_true(saw(&rd, "RESET"));
    assert_true(saw(&rd, "SHUTDOWN"));
    assert_true(qmp_closed(q));
    /* The connection is gone: commands fail at once with EPIPE. */
    assert_null(qmp_execute(q, "query-status", NULL, 5000, &err));
    assert_int_equal(err->errnum, EPIPE);
    error_clear(&err);
    qmp_free(q);
    for (int i = 0; i < 100 && kill(g_pid, 0) == 0; i++)
        usleep(20000);
    assert_int_equal(kill(g_pid, 0), -1);
}

static void test_connect_fails(void **state)
{
    struct koala_error *err = NULL;
    char path[700];
    snprintf(path, sizeof(path), "%s/nothing.sock", g_dir);
    int64_t t0 = time_mono_ms();
    assert_null(qmp_connect(path, 300, &err));
    assert_true(time_mono_ms() - t0 >= 290);
    assert_int_equal(err->errnum, ENOENT);
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qmp, start_qemu, stop_qemu),
        cmocka_unit_test_setup_teardown(test_connect_fails, start_qemu,
                                        stop_qemu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
