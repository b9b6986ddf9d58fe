/* test_daemon.c: the daemons' command line and configuration file merged
 * (daemon_config): options over the file, only the daemon's keys, unknown
 * keys and options refused, --help, a missing file, the log level. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "log.h"

static const char *const keys[] = {"listen", "data_dir", "max_cores",
                                   "log_level", NULL};
static const struct daemon_spec spec = {"koala-test", "nc", keys,
                                        "  --listen ADDR:PORT\n"};

/* A configuration file in a fresh temporary directory. */
static char *write_conf(const char *text)
{
    char *path = strdup("/tmp/koala-test-daemon-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* Runs daemon_config with the arguments given (NULL-terminated). */
static struct config *run(int *status, ...)
{
    char *argv[32];
    int argc = 0;
    static char prog[] = "koala-test";
    argv[argc++] = prog;
    va_list ap;
    va_start(ap, status);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return daemon_config(&spec, argc, argv, status);
}

static void test_file_and_options_merge(void **s)
{
    (void)s;
    char *conf = write_conf("[nc]\nlisten = 127.0.0.1:1\ndata_dir = /d\n"
                            "max_cores = 4\n[cc]\nwhatever = x\n");
    int status = -1;
    _cleanup_config_ struct config *cfg =
        run(&status, "--config", conf, "--listen", "127.0.0.1:2", "--max-cores",
            "8", NULL);
    assert_non_null(cfg);
    /* The command line wins; the file fills in the rest. */
    assert_string_equal(config_get(cfg, "nc", "listen", NULL), "127.0.0.1:2");
    assert_string_equal(config_get(cfg, "nc", "data_dir", NULL), "/d");
    assert_string_equal(config_get(cfg, "nc", "max_cores", NULL), "8");
    /* Only the daemon's own section is in the view. */
    assert_null(config_get(cfg, "cc", "whatever", NULL));
    unlink(conf);
    free(conf);

    /* Without a file, options alone. */
    _cleanup_config_ struct config *only =
        run(&status, "--data-dir", "/x", NULL);
    assert_non_null(only);
    assert_string_equal(config_get(only, "nc", "data_dir", NULL), "/x");
    assert_null(config_get(only, "nc", "listen", NULL));

    /* --key=value, and a value that looks like an option. */
    _cleanup_config_ struct config *eq =
        run(&status, "--data-dir=/y", "--listen", "--not-an-option", NULL);
    assert_non_null(eq);
    assert_string_equal(config_get(eq, "nc", "data_dir", NULL), "/y");
    assert_string_equal(config_get(eq, "nc", "listen", NULL),
                        "--not-an-option");
}

static void test_refusals(void **s)
{
    (void)s;
    int status = -1;
    /* A misspelt key in the daemon's section of the file. */
    char *conf = write_conf("[nc]\nlisten = 127.0.0.1:1\nmax_core = 4\n");
    assert_null(run(&status, "--config", conf, NULL));
    assert_int_equal(status, 2);
    unlink(conf);
    free(conf);
    /* An option that is no key (nor a prefix of one), a stray argument, a
     * missing value. */
    status = -1;
    assert_null(run(&status, "--max-cores=4", "--no-such-key", "4", NULL));
    assert_int_equal(status, 2);
    status = -1;
    assert_null(run(&status, "--max-core", "4", NULL));
    assert_int_equal(status, 2);
    status = -1;
    assert_null(run(&status, "--data", "/d", NULL));
    assert_int_equal(status, 2);
    status = -1;
    assert_null(run(&status, "--listen", "127.0.0.1:1", "extra", NULL));
    assert_int_equal(status, 2);
    status = -1;
    assert_null(run(&status, "--listen", NULL));
    assert_int_equal(status, 2);
    /* A file that is not there. */
    status = -1;
    assert_null(run(&status, "--config", "/nonexistent/koala.conf", NULL));
    assert_int_equal(status, 1);
    /* A log level that makes no sense. */
    status = -1;
    assert_null(run(&status, "--log-level", "loud", NULL));
    assert_int_equal(status, 2);
    /* --help: exit 0. */
    status = -1;
    assert_null(run(&status, "--help", NULL));
    assert_int_equal(status, 0);
}

static void test_log_level(void **s)
{
    (void)s;
    int status = -1;
    _cleanup_config_ struct config *cfg =
        run(&status, "--log-level", "warn", NULL);
    assert_non_null(cfg);
    assert_false(log_enabled("nc", LOG_LVL_INFO));
    assert_true(log_enabled("nc", LOG_LVL_WARN));
    config_free(run(&status, "--log-level", "info", NULL));
    assert_true(log_enabled("nc", LOG_LVL_INFO));
}

static void test_unknown_key(void **s)
{
    (void)s;
    struct koala_error *err = NULL;
    _cleanup_config_ struct config *cfg =
        config_parse_string("[nc]\nlisten = a\n[other]\nzzz = 1\n", &err);
    assert_non_null(cfg);
    assert_null(config_unknown_key(cfg, "nc", keys));
    assert_null(config_unknown_key(cfg, "absent", keys));
    assert_null(config_unknown_key(NULL, "nc", keys));
    assert_string_equal(config_unknown_key(cfg, "other", keys), "zzz");
    /* Keys are matched regardless of case, as config_get does. */
    _cleanup_config_ struct config *upper =
        config_parse_string("[NC]\nLISTEN = a\n", &err);
    assert_null(config_unknown_key(upper, "nc", keys));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_and_options_merge),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_log_level),
        cmocka_unit_test(test_unknown_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
