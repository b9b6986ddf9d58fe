/* test_ca.c: the cloud's CA: a CA that verifies what it issues, the names,
 * key usages and key file modes, and no overwriting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ca.h"

static char g_dir[64];

static int setup(void **s)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-ca-test-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **s)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static X509 *load(const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static mode_t mode_of(const char *name)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 0777;
}

static void test_create_and_issue(void **s)
{
    struct koala_error *err = NULL;
    assert_int_equal(ca_create(g_dir, "Koala test CA", 0, &err), 0);
    assert_int_equal(mode_of("ca.key"), 0600);
    /* A second CA in the same place would orphan every certificate. */
    assert_int_equal(ca_create(g_dir, "again", 0, &err), -1);
    error_free(err);
    err = NULL;

    char cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/nc.pem", g_dir);
    snprintf(key, sizeof(key), "%s/nc.key", g_dir);
    const char *sans[] = {"IP:127.0.0.1", "DNS:node1.koala", NULL};
    struct ca_request rq = {.cn = "koala-nc",
                            .sans = sans,
                            .server = true,
                            .client = true,
                            .days = 30};
    assert_int_equal(ca_issue(g_dir, &rq, cert, key, &err), 0);
    assert_int_equal(mode_of("nc.key"), 0600);

    X509 *ca = load("ca.pem"), *nc = load("nc.pem");
    /* The chain verifies. */
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, ca);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, nc, NULL);
    assert_int_equal(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    /* Names and usages. */
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(nc), NID_commonName, cn,
                              sizeof(cn));
    assert_string_equal(cn, "koala-nc");
    assert_int_equal(X509_check_host(nc, "node1.koala", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(nc, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(nc, "10.0.0.1", 0), 0);
    assert_true(X509_get_extended_key_usage(nc) & XKU_SSL_SERVER);
    assert_true(X509_get_extended_key_usage(nc) & XKU_SSL_CLIENT);
    assert_int_equal(X509_check_ca(nc), 0);
    assert_true(X509_check_ca(ca) > 0);
    X509_free(ca);
    X509_free(nc);

    /* Client-only certificate; existing files are never replaced. */
    struct ca_request cli = {.cn = "koala-clc", .client = true};
    snprintf(cert, sizeof(cert), "%s/clc.pem", g_dir);
    snprintf(key, sizeof(key), "%s/clc.key", g_dir);
    assert_int_equal(ca_issue(g_dir, &cli, cert, key, &err), 0);
    X509 *clc = load("clc.pem");
    assert_false(X509_get_extended_key_usage(clc) & XKU_SSL_SERVER);
    X509_free(clc);
    assert_int_equal(ca_issue(g_dir, &cli, cert, key, &err), -1);
    error_free(err);
}

static void test_errors(void **s)
{
    struct koala_error *err = NULL;
    struct ca_request rq = {.cn = "x", .client = true};
    assert_int_equal(ca_issue("/nonexistent", &rq, "/tmp/x", "/tmp/y", &err),
                     -1);
    assert_non_null(err);
    error_free(err);
    err = NULL;
    struct ca_request noname = {.cn = ""};
    assert_int_equal(ca_issue(g_dir, &noname, "/tmp/x", "/tmp/y", &err), -1);
    assert_string_equal(error_code(err), "InvalidParameterValue");
    error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_issue),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
