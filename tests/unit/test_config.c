/* test_config.c: INI configuration: parsing from memory and files,
 * missing and malformed input, lookups, getters with defaults and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static const char sample[] = "; a comment\n"
                             "# another comment\n"
                             "[walrus]\n"
                             "listen = 127.0.0.1:8773\n"
                             "data_dir=/var/lib/koala/walrus\n"
                             "  max_object_size =  5G  \n"
                             "verify = yes\n"
                             "workers = -4\n"
                             "empty =\n"
                             "\n"
                             "[CLC]\n"
                             "Region = eu-1\n"
                             "listen = 0.0.0.0:8773\n";

static void test_parse_and_get(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_config_ struct config *cfg = config_parse_string(sample, &err);
    assert_non_null(cfg);
    assert_null(err);
    assert_string_equal(config_get(cfg, "walrus", "listen", NULL),
                        "127.0.0.1:8773");
    assert_string_equal(config_get(cfg, "walrus", "data_dir", NULL),
                        "/var/lib/koala/walrus");
    /* Whitespace around keys and values is trimmed. */
    assert_string_equal(config_get(cfg, "walrus", "max_object_size", NULL),
                        "5G");
    assert_string_equal(config_get(cfg, "walrus", "empty", "def"), "");
    /* Same key in two sections; names are case insensitive. */
    assert_string_equal(config_get(cfg, "clc", "listen", NULL), "0.0.0.0:8773");
    assert_string_equal(config_get(cfg, "CLC", "region", NULL), "eu-1");
    assert_string_equal(config_get(cfg, "WALRUS", "LISTEN", NULL),
                        "127.0.0.1:8773");
    /* Absent: the default. */
    assert_string_equal(config_get(cfg, "walrus", "nope", "dflt"), "dflt");
    assert_null(config_get(cfg, "nosection", "listen", NULL));
    assert_string_equal(config_get(NULL, "a", "b", "d"), "d");
}

static void test_getters(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_config_ struct config *cfg = config_parse_string(sample, &err);
    int64_t i = 0;
    bool b = false;
    uint64_t u = 0;
    assert_int_equal(config_get_int(cfg, "walrus", "workers", 1, &i, &err), 0);
    assert_int_equal(i, -4);
    assert_int_equal(config_get_int(cfg, "walrus", "nope", 17, &i, &err), 0);
    assert_int_equal(i, 17);
    assert_int_equal(config_get_bool(cfg, "walrus", "verify", false, &b, &err),
                     0);
    assert_true(b);
    assert_int_equal(config_get_bool(cfg, "walrus", "nope", true, &b, &err), 0);
    assert_true(b);
    assert_int_equal(
        config_get_size(cfg, "walrus", "max_object_size", 0, &u, &err), 0);
    assert_true(u == 5ull << 30);
    assert_int_equal(config_get_size(cfg, "walrus", "nope", 99, &u, &err), 0);
    assert_int_equal(u, 99);
    assert_null(err);
}

static void expect_bad(int rc, struct koala_error **err, const char *what)
{
    assert_int_equal(rc, -1);
    assert_non_null(*err);
    assert_string_equal(error_code(*err), "InvalidConfiguration");
    assert_int_equal((*err)->errnum, EINVAL);
    if (strstr(error_message(*err), what) == NULL)
        fail_msg("'%s' does not mention '%s'", error_message(*err), what);
    error_clear(err);
}

static void test_getter_errors(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_config_ struct config *cfg = config_parse_string(
        "[a]\nint = 12x\nbig = 99999999999999999999\nbool = maybe\n"
        "size = 10Q\nneg = -1M\nempty =\n",
        &err);
    assert_non_null(cfg);
    int64_t i = 5;
    bool b;
    uint64_t u;
    expect_bad(config_get_int(cfg, "a", "int", 0, &i, &err), &err, "a.int");
    expect_bad(config_get_int(cfg, "a", "big", 0, &i, &err), &err, "a.big");
    expect_bad(config_get_int(cfg, "a", "empty", 0, &i, &err), &err, "a.empty");
    expect_bad(config_get_bool(cfg, "a", "bool", false, &b, &err), &err,
               "'maybe'");
    expect_bad(config_get_size(cfg, "a", "size", 0, &u, &err), &err, "a.size");
    expect_bad(config_get_size(cfg, "a", "neg", 0, &u, &err), &err, "a.neg");
}

static void test_bools(void **s)
{
    static const char *const yes[] = {"1", "true", "YES", "On", "TRUE"};
    static const char *const no[] = {"0", "false", "no", "OFF"};
    _cleanup_config_ struct config *cfg = config_new_empty();
    struct koala_error *err = NULL;
    bool b;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        config_set(cfg, "s", "k", yes[i]);
        b = false;
        assert_int_equal(config_get_bool(cfg, "s", "k", false, &b, &err), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        config_set(cfg, "s", "k", no[i]);
        b = true;
        assert_int_equal(config_get_bool(cfg, "s", "k", true, &b, &err), 0);
        assert_false(b);
    }
    config_set(cfg, "s", "k", "2");
    assert_int_equal(config_get_bool(cfg, "s", "k", true, &b, &err), -1);
    error_free(err);
}

static void test_set(void **s)
{
    _cleanup_config_ struct config *cfg = config_new_empty();
    assert_non_null(cfg);
    assert_null(config_get(cfg, "a", "b", NULL));
    /* Many entries: the table grows. */
    char key[16], val[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        assert_int_equal(config_set(cfg, "sec", key, val), 0);
    }
    assert_string_equal(config_get(cfg, "sec", "k57", NULL), "v57");
    /* Replacing keeps one entry, case-insensitively. */
    assert_int_equal(config_set(cfg, "SEC", "K57", "new"), 0);
    assert_string_equal(config_get(cfg, "sec", "k57", NULL), "new");
    config_free(NULL);
}

static void test_duplicate_keys(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_config_ struct config *cfg =
        config_parse_string("[a]\nk = 1\nk = 2\n[a]\nk = 3\n", &err);
    assert_non_null(cfg);
    assert_string_equal(config_get(cfg, "a", "k", NULL), "3");
}

static void test_malformed(void **s)
{
    static const struct {
        const char *text;
        int line;
    } cases[] = {
        {"[walrus\nlisten = x\n", 1},
        {"[a]\nk = v\njust words\n", 3},
        {"[a]\n\n\n= value\n", 4},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct koala_error *err = NULL;
        assert_null(config_parse_string(cases[i].text, &err));
        assert_non_null(err);
        assert_string_equal(error_code(err), "InvalidConfiguration");
        char want[32];
        snprintf(want, sizeof(want), "line %d", cases[i].line);
        if (strstr(error_message(err), want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, error_message(err), want);
        error_free(err);
    }
}

static void test_indented_keys(void **s)
{
    /* Keys indented under their section are keys, not continuation lines
     * of the value before them. */
    struct koala_error *err = NULL;
    _cleanup_config_ struct config *cfg = config_parse_string(
        "[walrus]\n    listen = 127.0.0.1:8773\n\tdata_dir = /srv\n"
        "  [cc]  \n  scheduler = GREEDY ; inline comment\n",
        &err);
    assert_non_null(cfg);
    assert_string_equal(config_get(cfg, "walrus", "listen", NULL),
                        "127.0.0.1:8773");
    assert_string_equal(config_get(cfg, "walrus", "data_dir", NULL), "/srv");
    assert_string_equal(config_get(cfg, "cc", "scheduler", NULL), "GREEDY");
    /* An indented line without a key is an error, not a continuation. */
    assert_null(config_parse_string("[a]\nk = one\n  two\n", &err));
    assert_non_null(strstr(error_message(err), "line 3"));
    error_clear(&err);
}

static void test_long_lines(void **s)
{
    /* Lines up to inih's limit are whole; a longer one is an error rather
     * than a truncated value. */
    char text[600];
    char value[190];
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    snprintf(text, sizeof(text), "[a]\nk=%s\n", value);
    struct koala_error *err = NULL;
    struct config *cfg = config_parse_string(text, &err);
    assert_non_null(cfg);
    assert_string_equal(config_get(cfg, "a", "k", NULL), value);
    config_free(cfg);
    char longer[400];
    memset(longer, 'w', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    snprintf(text, sizeof(text), "[a]\nx=1\nk=%s:%s\ny=2\n", longer, "tail=1");
    assert_null(config_parse_string(text, &err));
    assert_non_null(err);
    assert_non_null(strstr(error_message(err), "line 3: longer than"));
    error_free(err);
}

static void test_load_file(void **s)
{
    char path[] = "/tmp/koala-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, sample, strlen(sample)),
                     (ssize_t)strlen(sample));
    close(fd);
    struct koala_error *err = NULL;
    struct config *cfg = config_load(path, &err);
    assert_non_null(cfg);
    assert_string_equal(config_get(cfg, "clc", "region", NULL), "eu-1");
    config_free(cfg);

    /* A malformed file names itself and the line. */
    FILE *f = fopen(path, "w");
    fputs("[ok]\na = 1\n[broken\n", f);
    fclose(f);
    assert_null(config_load(path, &err));
    assert_non_null(strstr(error_message(err), path));
    assert_non_null(strstr(error_message(err), "line 3"));
    error_clear(&err);
    unlink(path);

    /* A missing file. */
    assert_null(config_load(path, &err));
    assert_non_null(err);
    assert_string_equal(error_code(err), "InvalidConfiguration");
    assert_int_equal(err->errnum, ENOENT);
    assert_non_null(strstr(error_message(err), path));
    error_free(err);
}

static void test_empty(void **s)
{
    struct koala_error *err = NULL;
    _cleanup_config_ struct config *cfg = config_parse_string("", &err);
    assert_non_null(cfg);
    assert_null(config_get(cfg, "a", "b", NULL));
    /* Keys before any section belong to the section "". */
    _cleanup_config_ struct config *top = config_parse_string("k = v\n", &err);
    assert_non_null(top);
    assert_string_equal(config_get(top, "", "k", NULL), "v");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_get),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_getter_errors),
        cmocka_unit_test(test_bools),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_indented_keys),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
