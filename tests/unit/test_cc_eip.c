/* test_cc_eip.c: the CC's public pool (parsing, ordering, overlaps,
 * limits) and the router's NAT table for a map (eipnat_format): the
 * rules each association gets, the masquerade for the rest, hairpin, the
 * pool's drop; checked by nft itself (nft -c) when it is installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cc.h"

static void test_pool_parse(void **s)
{
    (void)s;
    struct cc_pool p;
    struct koala_error *err = NULL;
    assert_int_equal(cc_pool_parse("198.51.100.20-198.51.100.30, "
                                   "198.51.100.0/28 203.0.113.7",
                                   &p, &err),
                     0);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.count, 16 + 11 + 1);
    char a[16];
    cc_ip_format(p.r[0].first, a);
    assert_string_equal(a, "198.51.100.0");
    cc_ip_format(p.r[0].last, a);
    assert_string_equal(a, "198.51.100.15");
    cc_ip_format(p.r[1].first, a);
    assert_string_equal(a, "198.51.100.20");
    uint32_t ip;
    assert_int_equal(cc_ip_parse("198.51.100.30", &ip), 0);
    assert_true(cc_pool_has(&p, ip));
    assert_int_equal(cc_ip_parse("198.51.100.16", &ip), 0);
    assert_false(cc_pool_has(&p, ip));
    assert_int_equal(cc_pool_parse(NULL, &p, &err), 0);
    assert_int_equal(p.n, 0);
    assert_int_equal(cc_pool_parse("", &p, &err), 0);
    assert_int_equal(p.n, 0);
}

static void test_pool_bad(void **s)
{
    (void)s;
    const char *bad[] = {
        "198.51.100.1/24",               /* host bits */
        "198.51.100.0/8",                /* too big a prefix */
        "198.51.100.9-198.51.100.3",     /* backwards */
        "300.1.1.1",                     /* not an address */
        "198.51.100.0/28,198.51.100.15", /* overlaps */
        "10.0.0.0/16",                   /* more than the limit */
        "x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cc_pool p;
        struct koala_error *err = NULL;
        assert_int_equal(cc_pool_parse(bad[i], &p, &err), -1);
        assert_string_equal(error_code(err), "InvalidParameterValue");
        error_free(err);
    }
}

static void net_for(struct cc_network *net, const char *pool, char *uplink)
{
    memset(net, 0, sizeof(*net));
    snprintf(net->name, sizeof(net->name), "default");
    struct koala_error *err = NULL;
    assert_int_equal(cc_subnet_parse("10.111.0.0/16", NULL, &net->subnet, &err),
                     0);
    assert_int_equal(cc_pool_parse(pool, &net->pool, &err), 0);
    net->uplink = uplink;
}

/* nft -c: the script parses and would load (needs CAP_NET_ADMIN for the
 * check; skipped when nft is missing or we may not). */
static void nft_check(const char *script)
{
    char *nft = proc_find("nft");
    if (nft == NULL || geteuid() != 0) {
        free(nft);
        return;
    }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "%s -c -f - >/dev/null", nft);
    free(nft);
    FILE *f = popen(cmd, "w");
    assert_non_null(f);
    fputs(script, f);
    assert_int_equal(pclose(f), 0);
}

static void test_nat_format(void **s)
{
    (void)s;
    char up[] = "uplink0";
    struct cc_network net;
    net_for(&net, "100.64.112.16/28", up);
    struct cc_eip map[] = {
        {"100.64.112.17", "10.111.0.5", "i-0123456789abcdef0"},
        {"100.64.112.18", "10.111.0.6", "i-0123456789abcdef1"},
    };
    struct buf out = {0};
    assert_int_equal(eipnat_format(&net, map, 2, &out), 0);
    const char *t = out.data;
    assert_non_null(strstr(t, "add table ip koala_cc_default\n"
                              "delete table ip koala_cc_default\n"));
    assert_non_null(strstr(t, "elements = { 100.64.112.17 : 10.111.0.5, "
                              "100.64.112.18 : 10.111.0.6 }"));
    assert_non_null(strstr(t, "elements = { 10.111.0.5 : 100.64.112.17, "
                              "10.111.0.6 : 100.64.112.18 }"));
    assert_non_null(strstr(t, "dnat to ip daddr map @eip_in"));
    assert_non_null(strstr(t, "ip saddr 10.111.0.0/16 ip daddr 10.111.0.0/16"
                              " ct status dnat snat to 10.111.0.1"));
    assert_non_null(strstr(t, "oifname \"uplink0\" snat to ip saddr map "
                              "@eip_out\n"));
    assert_non_null(strstr(t, "oifname \"uplink0\" masquerade"));
    assert_non_null(strstr(t, "elements = { 100.64.112.16-100.64.112.31 }"));
    assert_non_null(strstr(t, "ip daddr @pool drop"));
    assert_non_null(strstr(t, "elements = { 100.64.112.17 . 10.111.0.5, "
                              "100.64.112.18 . 10.111.0.6 }"));
    assert_non_null(strstr(t, "ct original ip daddr . ct reply ip saddr != "
                              "@pairs drop"));
    assert_non_null(strstr(t, "ct reply ip daddr . ct original ip saddr != "
                              "@pairs drop"));
    /* the instance's snat comes before the masquerade */
    assert_true(strstr(t, "snat to ip saddr map @eip_out\n    ip saddr "
                          "10.111.0.0/16 oifname") != NULL);
    nft_check(t);
    buf_free(&out);

    /* A pool and an empty map: empty maps and sets. */
    net_for(&net, "100.64.112.16/28", up);
    assert_int_equal(eipnat_format(&net, NULL, 0, &out), 0);
    assert_null(strstr(out.data, ": 10."));
    assert_null(strstr(out.data, ". 10."));
    assert_non_null(strstr(out.data, "@pairs drop"));
    nft_check(out.data);
    buf_free(&out);

    /* An empty map and no pool: only the masquerade's work. */
    net_for(&net, NULL, up);
    assert_int_equal(eipnat_format(&net, NULL, 0, &out), 0);
    assert_null(strstr(out.data, "elements"));
    assert_null(strstr(out.data, "@pool"));
    assert_non_null(strstr(out.data, "masquerade"));
    nft_check(out.data);
    buf_free(&out);

    /* No uplink: nothing at all. */
    net_for(&net, NULL, NULL);
    assert_int_equal(eipnat_format(&net, NULL, 0, &out), 0);
    assert_null(out.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_parse),
        cmocka_unit_test(test_pool_bad),
        cmocka_unit_test(test_nat_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
