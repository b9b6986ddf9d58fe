/* test_nc_sgfilter.c: the node's security-group table compiled from a
 * policy document and the node's instances (golden text: a group with
 * tcp/icmp/all/protocol-number rules from CIDRs and groups, egress rules,
 * an instance in two groups, one absent from the document, one with a bad
 * address left out, repeats once; the same whatever the instances'
 * order), no document (the table only deleted),
 * no router known, and, where nft and the privilege to use it are there,
 * that nft loads the script (in a network namespace of its own). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sgfilter.h"

#define SG_WEB "sg-0000000000000000a"
#define SG_DB "sg-0000000000000000b"

static const char *const doc =
    "{\"version\": 7,\n"
    " \"groups\": {\n"
    "   \"" SG_WEB "\": {\n"
    "     \"ingress\": [ {\"proto\": \"tcp\", \"from\": 8080, \"to\": 8080,\n"
    "                   \"cidr\": \"10.0.0.0/8\"},\n"
    "                  {\"proto\": \"all\", \"group\": \"" SG_WEB "\"},\n"
    "                  {\"proto\": \"icmp\", \"from\": 8, \"to\": 0,\n"
    "                   \"cidr\": \"0.0.0.0/0\"} ],\n"
    "     \"egress\":  [ {\"proto\": \"all\", \"cidr\": \"0.0.0.0/0\"} ] },\n"
    "   \"" SG_DB "\": {\n"
    "     \"ingress\": [ {\"proto\": \"udp\", \"from\": 5000, \"to\": 5010,\n"
    "                   \"group\": \"" SG_WEB "\"},\n"
    "                  {\"proto\": \"icmp\", \"cidr\": \"192.168.1.7/32\"},\n"
    "                  {\"proto\": 47, \"cidr\": \"172.16.0.0/12\"} ],\n"
    "     \"egress\":  [ {\"proto\": \"tcp\", \"from\": 0, \"to\": 65535,\n"
    "                   \"group\": \"" SG_DB "\"},\n"
    "                  {\"proto\": \"icmp\", \"from\": 3, \"to\": -1,\n"
    "                   \"cidr\": \"10.111.0.0/16\"} ] } },\n"
    " \"members\": { \"" SG_WEB "\": [\"10.111.0.5\", \"10.110.0.9\"] },\n"
    " \"instances\": { \"i-00000000000000001\": [\"" SG_WEB "\"],\n"
    "                \"i-00000000000000002\": [\"" SG_WEB "\", \"" SG_DB
    "\"] } }\n";

static const struct nc_sg_inst insts[] = {
    {"i-00000000000000001", "10.111.0.5"},
    {"i-00000000000000002", "10.111.0.6"},
    {"i-00000000000000003", "10.111.0.7"},   /* not in the document */
    {"i-00000000000000004", "10.111.0.256"}, /* left out */
    {"i-00000000000000001", "10.111.0.8"},   /* a repeated id: once */
    {"i-00000000000000005", "10.111.0.6"},   /* a repeated address: once */
    {"instance-6", "10.111.0.9"},            /* left out */
};

static const char *const golden =
    "add table inet koala_nc_sg\n"
    "delete table inet koala_nc_sg\n"
    "table inet koala_nc_sg {\n"
    "  set grp_0000000000000000a {\n"
    "    type ipv4_addr\n"
    "    elements = { 10.110.0.9,\n"
    "                 10.111.0.5 }\n"
    "  }\n"
    "  set grp_0000000000000000b {\n"
    "    type ipv4_addr\n"
    "  }\n"
    "  map egress {\n"
    "    type ipv4_addr : verdict\n"
    "    elements = { 10.111.0.5 : jump out_00000000000000001,\n"
    "                 10.111.0.6 : jump out_00000000000000002,\n"
    "                 10.111.0.7 : jump out_00000000000000003 }\n"
    "  }\n"
    "  map ingress {\n"
    "    type ipv4_addr : verdict\n"
    "    elements = { 10.111.0.5 : jump in_00000000000000001,\n"
    "                 10.111.0.6 : jump in_00000000000000002,\n"
    "                 10.111.0.7 : jump in_00000000000000003 }\n"
    "  }\n"
    "  chain forward {\n"
    "    type filter hook forward priority 0; policy accept;\n"
    "    ct state established,related accept\n"
    "    ct state invalid drop\n"
    "    ip saddr vmap @egress\n"
    "    ip daddr vmap @ingress\n"
    "  }\n"
    "  chain egress_ok {\n"
    "    ip daddr vmap @ingress\n"
    "    accept\n"
    "  }\n"
    "  chain gin_0000000000000000a {\n"
    "    ip saddr 10.0.0.0/8 tcp dport 8080 accept\n"
    "    ip saddr @grp_0000000000000000a accept\n"
    "    icmp type 8 icmp code 0 accept\n"
    "  }\n"
    "  chain gout_0000000000000000a {\n"
    "    goto egress_ok\n"
    "  }\n"
    "  chain gin_0000000000000000b {\n"
    "    ip saddr @grp_0000000000000000a udp dport 5000-5010 accept\n"
    "    ip saddr 192.168.1.7 meta l4proto icmp accept\n"
    "    ip saddr 172.16.0.0/12 meta l4proto 47 accept\n"
    "  }\n"
    "  chain gout_0000000000000000b {\n"
    "    ip daddr @grp_0000000000000000b meta l4proto tcp goto egress_ok\n"
    "    ip daddr 10.111.0.0/16 icmp type 3 goto egress_ok\n"
    "  }\n"
    "  chain out_00000000000000001 {\n"
    "    udp sport 68 udp dport 67 goto egress_ok\n"
    "    ip daddr 10.111.0.1 udp dport 53 goto egress_ok\n"
    "    ip daddr 10.111.0.1 tcp dport 53 goto egress_ok\n"
    "    ip daddr 169.254.169.254 tcp dport 80 goto egress_ok\n"
    "    jump gout_0000000000000000a\n"
    "    counter drop\n"
    "  }\n"
    "  chain in_00000000000000001 {\n"
    "    ip saddr 10.111.0.1 udp sport 67 udp dport 68 accept\n"
    "    jump gin_0000000000000000a\n"
    "    counter drop\n"
    "  }\n"
    "  chain out_00000000000000002 {\n"
    "    udp sport 68 udp dport 67 goto egress_ok\n"
    "    ip daddr 10.111.0.1 udp dport 53 goto egress_ok\n"
    "    ip daddr 10.111.0.1 tcp dport 53 goto egress_ok\n"
    "    ip daddr 169.254.169.254 tcp dport 80 goto egress_ok\n"
    "    jump gout_0000000000000000a\n"
    "    jump gout_0000000000000000b\n"
    "    counter drop\n"
    "  }\n"
    "  chain in_00000000000000002 {\n"
    "    ip saddr 10.111.0.1 udp sport 67 udp dport 68 accept\n"
    "    jump gin_0000000000000000a\n"
    "    jump gin_0000000000000000b\n"
    "    counter drop\n"
    "  }\n"
    "  chain out_00000000000000003 {\n"
    "    udp sport 68 udp dport 67 goto egress_ok\n"
    "    ip daddr 10.111.0.1 udp dport 53 goto egress_ok\n"
    "    ip daddr 10.111.0.1 tcp dport 53 goto egress_ok\n"
    "    ip daddr 169.254.169.254 tcp dport 80 goto egress_ok\n"
    "    counter drop\n"
    "  }\n"
    "  chain in_00000000000000003 {\n"
    "    ip saddr 10.111.0.1 udp sport 67 udp dport 68 accept\n"
    "    counter drop\n"
    "  }\n"
    "}\n";

static struct netpolicy *policy(void)
{
    struct koala_error *err = NULL;
    struct netpolicy *p = netpolicy_parse(doc, strlen(doc), &err);
    if (p == NULL)
        fail_msg("%s", error_message(err));
    return p;
}

static char *script(const struct netpolicy *p, const char *router,
                    const struct nc_sg_inst *in, size_t n, int want)
{
    struct buf b = {0};
    assert_int_equal(nc_sgfilter_script(p, router, in, n, &b), want);
    return buf_steal(&b);
}

static void test_golden(void **state)
{
    (void)state;
    struct netpolicy *p = policy();
    char *s =
        script(p, "10.111.0.1", insts, sizeof(insts) / sizeof(insts[0]), 3);
    if (strcmp(s, golden) != 0)
        fail_msg("got:\n%s", s);
    free(s);
    netpolicy_free(p);
}

/* The NC lists its instances newest first while it runs and in the order
 * it finds them after a restart: the table must not depend on it (a
 * restarted NC compares and rewrites the same table). */
static void test_order_of_instances_does_not_matter(void **state)
{
    (void)state;
    struct netpolicy *p = policy();
    size_t n = sizeof(insts) / sizeof(insts[0]);
    struct nc_sg_inst rev[sizeof(insts) / sizeof(insts[0])];
    for (size_t i = 0; i < n; i++)
        rev[i] = insts[n - 1 - i];
    char *a = script(p, "10.111.0.1", insts, n, 3);
    char *b = script(p, "10.111.0.1", rev, n, 3);
    assert_string_equal(a, golden);
    assert_string_equal(b, golden);
    free(a);
    free(b);
    netpolicy_free(p);
}

static void test_no_document(void **state)
{
    (void)state;
    char *s = script(NULL, "10.111.0.1", insts, 3, 0);
    assert_string_equal(s, "add table inet koala_nc_sg\n"
                           "delete table inet koala_nc_sg\n");
    free(s);
}

static void test_no_instances(void **state)
{
    (void)state;
    struct netpolicy *p = policy();
    char *s = script(p, NULL, NULL, 0, 0);
    assert_string_equal(s, "add table inet koala_nc_sg\n"
                           "delete table inet koala_nc_sg\n"
                           "table inet koala_nc_sg {\n"
                           "  map egress {\n"
                           "    type ipv4_addr : verdict\n"
                           "  }\n"
                           "  map ingress {\n"
                           "    type ipv4_addr : verdict\n"
                           "  }\n"
                           "  chain forward {\n"
                           "    type filter hook forward priority 0; "
                           "policy accept;\n"
                           "    ct state established,related accept\n"
                           "    ct state invalid drop\n"
                           "    ip saddr vmap @egress\n"
                           "    ip daddr vmap @ingress\n"
                           "  }\n"
                           "  chain egress_ok {\n"
                           "    ip daddr vmap @ingress\n"
                           "    accept\n"
                           "  }\n"
                           "}\n");
    free(s);
    netpolicy_free(p);
}

static void test_unknown_router(void **state)
{
    (void)state;
    struct netpolicy *p = policy();
    /* NULL or not an address: DHCP and DNS to anyone. */
    const char *routers[] = {NULL, "10.111.0.1; flush ruleset"};
    for (int i = 0; i < 2; i++) {
        char *s = script(p, routers[i], &insts[2], 1, 1);
        assert_non_null(strstr(s, "  chain out_00000000000000003 {\n"
                                  "    udp sport 68 udp dport 67 goto "
                                  "egress_ok\n"
                                  "    udp dport 53 goto egress_ok\n"
                                  "    tcp dport 53 goto egress_ok\n"));
        assert_non_null(strstr(s, "  chain in_00000000000000003 {\n"
                                  "    udp sport 67 udp dport 68 accept\n"
                                  "    counter drop\n"));
        assert_null(strstr(s, "flush"));
        free(s);
    }
    netpolicy_free(p);
}

static int nft_runs(const char *text)
{
    char path[] = "/tmp/test_nc_sgfilter.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char cmd[256];
    /* Loaded twice (the add+delete replaces it), then checked. */
    snprintf(cmd, sizeof(cmd),
             "unshare -n sh -c '/usr/sbin/nft -f %s && /usr/sbin/nft -f %s "
             "&& /usr/sbin/nft -c -f %s'",
             path, path, path);
    int rc = system(cmd);
    unlink(path);
    return rc;
}

static void test_nft_accepts_it(void **state)
{
    (void)state;
    if (geteuid() != 0 || access("/usr/sbin/nft", X_OK) != 0 ||
        system("unshare -n true >/dev/null 2>&1") != 0)
        skip();
    assert_int_equal(nft_runs(golden), 0);
    struct netpolicy *p = policy();
    char *s = script(p, NULL, NULL, 0, 0);
    assert_int_equal(nft_runs(s), 0);
    free(s);
    netpolicy_free(p);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* What a rewrite costs at the size of issue 10's bench: 200 instances, 10
 * groups of 100 rules (1000 rules; every instance in two groups, so each
 * instance's chains hold 200 rules), 200 members.  Prints the time to
 * compile and to load (nft -f, replacing a table as large); checks only
 * that both work. */
static void test_rewrite_200_instances_1000_rules(void **state)
{
    (void)state;
    struct buf d = {0};
    buf_printf(&d, "{\"version\": 3, \"groups\": {");
    for (int g = 0; g < 10; g++) {
        buf_printf(&d, "%s\"sg-%08x\": {\"ingress\": [", g ? "," : "", g);
        for (int r = 0; r < 100; r++) {
            if (r % 4 == 0)
                buf_printf(&d,
                           "%s{\"proto\": \"all\", \"group\": "
                           "\"sg-%08x\"}",
                           r ? "," : "", (g + r) % 10);
            else
                buf_printf(&d,
                           "%s{\"proto\": \"tcp\", \"from\": %d, "
                           "\"to\": %d, \"cidr\": \"10.%d.%d.0/24\"}",
                           r ? "," : "", 1000 + r, 1000 + r + g, g, r);
        }
        buf_printf(&d, "], \"egress\": [{\"proto\": \"all\", \"cidr\": "
                       "\"0.0.0.0/0\"}]}");
    }
    buf_printf(&d, "}, \"members\": {");
    for (int g = 0; g < 10; g++) {
        buf_printf(&d, "%s\"sg-%08x\": [", g ? "," : "", g);
        for (int i = 0; i < 20; i++)
            buf_printf(&d, "%s\"10.111.%d.%d\"", i ? "," : "", g, i + 2);
        buf_printf(&d, "]");
    }
    buf_printf(&d, "}, \"instances\": {");
    static char ids[200][24], ips[200][16];
    struct nc_sg_inst in[200];
    for (int i = 0; i < 200; i++) {
        snprintf(ids[i], sizeof(ids[i]), "i-%08x", 0x100 + i);
        snprintf(ips[i], sizeof(ips[i]), "10.111.%d.%d", i / 20, i % 20 + 2);
        in[i] = (struct nc_sg_inst){ids[i], ips[i]};
        buf_printf(&d, "%s\"%s\": [\"sg-%08x\", \"sg-%08x\"]", i ? "," : "",
                   ids[i], i % 10, (i + 1) % 10);
    }
    buf_printf(&d, "}}");
    assert_non_null(d.data);
    struct koala_error *err = NULL;
    double t0 = now_ms();
    struct netpolicy *p = netpolicy_parse(d.data, d.len, &err);
    if (p == NULL)
        fail_msg("%s", error_message(err));
    double t1 = now_ms();
    char *s = script(p, "10.111.0.1", in, 200, 200);
    double t2 = now_ms();
    printf("# parse %.1f ms (%zu bytes), compile %.1f ms (%zu bytes of "
           "nft)\n",
           t1 - t0, d.len, t2 - t1, strlen(s));
    if (geteuid() == 0 && access("/usr/sbin/nft", X_OK) == 0 &&
        system("unshare -n true >/dev/null 2>&1") == 0) {
        char path[] = "/tmp/test_nc_sgfilter.XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
        close(fd);
        char cmd[512];
        /* The first load creates, the second replaces (what a rule
         * change does); each timed. */
        snprintf(cmd, sizeof(cmd),
                 "unshare -n sh -c 'for i in 1 2; do "
                 "a=$(date +%%s%%N); /usr/sbin/nft -f %s || exit 1; "
                 "b=$(date +%%s%%N); echo \"# nft -f load $i: "
                 "$(( (b - a) / 1000000 )) ms\"; done'",
                 path);
        int rc = system(cmd);
        unlink(path);
        assert_int_equal(rc, 0);
    }
    free(s);
    netpolicy_free(p);
    buf_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_order_of_instances_does_not_matter),
        cmocka_unit_test(test_no_document),
        cmocka_unit_test(test_no_instances),
        cmocka_unit_test(test_unknown_router),
        cmocka_unit_test(test_nft_accepts_it),
        cmocka_unit_test(test_rewrite_200_instances_1000_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
