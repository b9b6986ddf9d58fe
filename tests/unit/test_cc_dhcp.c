/* test_cc_dhcp.c: the CC's DHCP hosts file (its format, atomic rewrite)
 * and the supervision of the DHCP server process: started with the
 * expected dnsmasq arguments, told to reload with SIGHUP, started again
 * when it dies, stopped by its pid.  The process here is a small shell
 * script standing in for dnsmasq, so that supervision is tested without
 * root; the real dnsmasq handing out leases in a network namespace is
 * tested in tests/integration/test_cc.py.  Also the reading of its lease
 * file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cc.h"

static char g_dir[64];

static int setup(void **s)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-cc-dhcp-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **s)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    struct buf b = {0};
    char chunk[512];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    if (b.data == NULL)
        buf_append_str(&b, "");
    return buf_steal(&b);
}

static void test_format(void **s)
{
    const char *macs[] = {"d0:0d:00:00:00:01", "d0:0d:12:34:56:78"};
    const char *ips[] = {"10.111.0.2", "10.111.0.3"};
    const char *names[] = {"i-00000001", "i-0123456789a345678"};
    _cleanup_buf_ struct buf b = {0};
    assert_int_equal(dhcp_hosts_format(macs, ips, names, 2, &b), 0);
    assert_string_equal(b.data, "d0:0d:00:00:00:01,10.111.0.2,i-00000001\n"
                                "d0:0d:12:34:56:78,10.111.0.3,"
                                "i-0123456789a345678\n");
}

static void test_write_atomic(void **s)
{
    char path[128], tmp[140];
    snprintf(path, sizeof(path), "%s/dhcp-hosts", g_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    struct koala_error *err = NULL;
    assert_int_equal(dhcp_write_file(path, "a\n", 2, &err), 0);
    assert_int_equal(dhcp_write_file(path, "b,c\n", 4, &err), 0);
    char *got = slurp(path);
    assert_string_equal(got, "b,c\n");
    free(got);
    assert_int_equal(access(tmp, F_OK), -1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(dhcp_write_file(path, "", 0, &err), 0);
    got = slurp(path);
    assert_string_equal(got, "");
    free(got);
    assert_int_equal(dhcp_write_file("/nonexistent/dir/hosts", "x", 1, &err),
                     -1);
    error_free(err);
}

static bool wait_for(const char *path, const char *text, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        char *got = slurp(path);
        bool ok = got && strstr(got, text);
        free(got);
        if (ok)
            return true;
        usleep(10000);
    }
    return false;
}

static void test_supervision(void **s)
{
    char script[128], args[128], hups[128];
    snprintf(script, sizeof(script), "%s/fake-dnsmasq", g_dir);
    snprintf(args, sizeof(args), "%s/args", g_dir);
    snprintf(hups, sizeof(hups), "%s/hups", g_dir);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fprintf(f,
            "#!/bin/sh\n"
            "trap 'echo hup >> %s' HUP\n"
            "trap 'exit 0' TERM\n"
            "echo \"$@\" >> %s\n"
            "while :; do sleep 0.02; done\n",
            hups, args);
    fclose(f);
    chmod(script, 0755);
    struct cc_subnet sn;
    struct koala_error *err = NULL;
    assert_int_equal(cc_subnet_parse("10.111.0.0/16", NULL, &sn, &err), 0);
    struct dhcp_config cfg = {.dnsmasq = script,
                              .bridge = "klan0",
                              .subnet = &sn,
                              .dns = "192.0.2.53",
                              .lease = "1h",
                              .dir = g_dir,
                              .domain = "koala-1.compute.internal",
                              .upstream = "192.0.2.1,192.0.2.2",
                              .metadata = true};
    struct dhcp *d = dhcp_new(&cfg, &err);
    assert_non_null(d);
    assert_int_equal(dhcp_pid(d), 0);
    struct buf hosts = {0};
    buf_append_str(&hosts, "d0:0d:00:00:00:01,10.111.0.2,i-00000001\n");
    assert_int_equal(dhcp_update(d, &hosts, &err), 0);
    pid_t first = dhcp_pid(d);
    assert_true(first > 0);
    assert_true(
        wait_for(args, "--dhcp-range=10.111.0.0,static,255.255.0.0,1h", 10000));
    char *a = slurp(args);
    char dns_hosts[160];
    snprintf(dns_hosts, sizeof(dns_hosts), "%s/dns-hosts", g_dir);
    char *names = slurp(dns_hosts);
    assert_non_null(names);
    assert_non_null(strstr(names, "10.111.0.2 ip-10-111-0-2.koala-1.compute."
                                  "internal ip-10-111-0-2 i-00000001."));
    free(names);
    assert_non_null(strstr(a, "--no-daemon"));
    assert_non_null(strstr(a, "--conf-file=/dev/null"));
    assert_non_null(strstr(a, "--bind-interfaces"));
    assert_non_null(strstr(a, "--interface=klan0"));
    /* DNS: the cluster's names, the rest forwarded to the upstreams. */
    assert_null(strstr(a, "--port=0"));
    assert_non_null(strstr(a, "--no-resolv"));
    assert_non_null(strstr(a, "--no-hosts"));
    assert_non_null(strstr(a, "--addn-hosts="));
    assert_non_null(strstr(a, "--domain=koala-1.compute.internal"));
    assert_non_null(strstr(a, "--local=/koala-1.compute.internal/"));
    assert_non_null(strstr(a, "--server=192.0.2.1 --server=192.0.2.2"));
    assert_non_null(strstr(a, "--dhcp-hostsfile="));
    assert_non_null(strstr(a, "--dhcp-leasefile="));
    assert_non_null(strstr(a, "--pid-file="));
    assert_non_null(strstr(a, "--dhcp-option=option:router,10.111.0.1"));
    assert_non_null(strstr(a, "--dhcp-option=option:dns-server,192.0.2.53"));
    free(a);
    /* A change: the file is rewritten and the server told (SIGHUP). */
    buf_append_str(&hosts, "d0:0d:00:00:00:02,10.111.0.3,i-00000002\n");
    assert_int_equal(dhcp_update(d, &hosts, &err), 0);
    assert_true(wait_for(hups, "hup", 10000));
    assert_int_equal(dhcp_pid(d), first);
    char path[128];
    snprintf(path, sizeof(path), "%s/dhcp-hosts", g_dir);
    char *h = slurp(path);
    assert_string_equal(h, hosts.data);
    free(h);
    /* It dies: the check starts it again (at most once a second). */
    kill(first, SIGKILL);
    usleep(1100 * 1000);
    assert_true(dhcp_check(d));
    pid_t second = dhcp_pid(d);
    assert_true(second > 0 && second != first);
    dhcp_free(d); /* SIGTERM to second, waited for */
    assert_int_equal(kill(second, 0), -1);
    buf_free(&hosts);
}

static void test_missing_program(void **s)
{
    struct cc_subnet sn;
    struct koala_error *err = NULL;
    assert_int_equal(cc_subnet_parse("10.111.0.0/16", NULL, &sn, &err), 0);
    struct dhcp_config cfg = {
        .dnsmasq = NULL, .bridge = "klan0", .subnet = &sn, .dir = g_dir};
    assert_null(dhcp_new(&cfg, &err));
    assert_non_null(strstr(error_message(err), "dnsmasq"));
    error_free(err);
}

static void test_leases(void **s)
{
    struct cc_subnet sn;
    struct koala_error *err = NULL;
    assert_int_equal(cc_subnet_parse("10.111.0.0/16", NULL, &sn, &err), 0);
    struct dhcp_config cfg = {
        .dnsmasq = "/bin/true", .bridge = "klan0", .subnet = &sn, .dir = g_dir};
    struct dhcp *d = dhcp_new(&cfg, &err);
    assert_non_null(d);
    char path[128];
    snprintf(path, sizeof(path), "%s/dnsmasq.leases", g_dir);
    unlink(path);
    int64_t stamp = 0;
    struct dhcp_lease *ls = NULL;
    size_t n = 7;
    /* No lease file yet (dnsmasq gave none): none, not an error. */
    assert_int_equal(dhcp_leases(d, &stamp, &ls, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(ls);
    const char *file =
        "1796571576 d0:0d:2f:36:d9:5d 10.111.0.2 i-fa0e8612f2f36d95d "
        "01:d0:0d:2f:36:d9:5d\n"
        "garbage\n"
        "notanumber d0:0d:00:00:00:09 10.111.0.9 * *\n"
        "1796571999 d0:0d:00:00:00:03 10.111.0.3 * *\n";
    assert_int_equal(dhcp_write_file(path, file, strlen(file), &err), 0);
    assert_int_equal(dhcp_leases(d, &stamp, &ls, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ls[0].mac, "d0:0d:2f:36:d9:5d");
    assert_int_equal(ls[0].expiry, 1796571576);
    assert_string_equal(ls[1].mac, "d0:0d:00:00:00:03");
    assert_int_equal(ls[1].expiry, 1796571999);
    free(ls);
    assert_true(stamp != 0);
    /* Unchanged since: not read again. */
    assert_int_equal(dhcp_leases(d, &stamp, &ls, &n, &err), 0);
    assert_int_equal(n, 0);
    /* Rewritten (dnsmasq renewed a lease): read again. */
    const char *renewed = "1796575000 d0:0d:00:00:00:03 10.111.0.3 * *\n";
    usleep(10 * 1000);
    assert_int_equal(dhcp_write_file(path, renewed, strlen(renewed), &err), 0);
    assert_int_equal(dhcp_leases(d, &stamp, &ls, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ls[0].expiry, 1796575000);
    free(ls);
    dhcp_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_write_atomic),
        cmocka_unit_test(test_supervision),
        cmocka_unit_test(test_missing_program),
        cmocka_unit_test(test_leases),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
