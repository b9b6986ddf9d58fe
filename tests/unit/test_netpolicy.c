/* test_netpolicy.c: the network policy document: a full document parsed
 * (groups, rules of every kind, members sorted and deduplicated, instances,
 * lookups), and every kind of malformed document refused with
 * InvalidParameterValue and a message naming the fault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netpolicy.h"

#define SG_A "sg-0a1b2c3d4e5f60718"
#define SG_B "sg-000000000000000bb"
#define I_1 "i-0123456789abcdef0"
#define I_2 "i-000000000000000aa"

static const char *const full =
    "{\"version\": 17,\n"
    " \"groups\": {\n"
    "   \"" SG_A "\": {\n"
    "     \"ingress\": [ {\"proto\": \"tcp\", \"from\": 8080, \"to\": 8080,\n"
    "                   \"cidr\": \"10.0.0.9/8\"},\n"
    "                  {\"proto\": \"all\", \"group\": \"" SG_A "\"},\n"
    "                  {\"proto\": \"icmp\", \"from\": 8, \"to\": -1,\n"
    "                   \"cidr\": \"0.0.0.0/0\"},\n"
    "                  {\"proto\": 47, \"cidr\": \"192.168.1.1/32\"} ],\n"
    "     \"egress\":  [ {\"proto\": \"udp\", \"from\": 1, \"to\": 65535,\n"
    "                   \"group\": \"" SG_B "\", \"description\": \"x\"} ] },\n"
    "   \"" SG_B "\": {} },\n"
    " \"members\": { \"" SG_A "\": [\"10.111.0.9\", \"10.110.0.5\",\n"
    "                            \"10.111.0.9\"], \"" SG_B "\": [] },\n"
    " \"instances\": { \"" I_1 "\": [\"" SG_A "\", \"" SG_B "\"],\n"
    "                \"" I_2 "\": [] } }\n";

static struct netpolicy *parse(const char *s)
{
    struct koala_error *err = NULL;
    struct netpolicy *p = netpolicy_parse(s, strlen(s), &err);
    if (p == NULL)
        fail_msg("refused: %s", error_message(err));
    return p;
}

static void test_full(void **state)
{
    (void)state;
    struct netpolicy *p = parse(full);
    assert_int_equal(p->version, 17);
    assert_int_equal(p->n_groups, 2);
    const struct netpolicy_group *a = netpolicy_group(p, SG_A);
    assert_non_null(a);
    assert_int_equal(a->n_ingress, 4);
    assert_int_equal(a->n_egress, 1);
    const struct netpolicy_rule *r = &a->ingress[0];
    assert_int_equal(r->proto, NETPOLICY_TCP);
    assert_int_equal(r->from, 8080);
    assert_int_equal(r->to, 8080);
    assert_true(r->has_cidr);
    assert_int_equal(r->net, 0x0a000000); /* host bits cleared */
    assert_int_equal(r->prefix, 8);
    r = &a->ingress[1];
    assert_int_equal(r->proto, NETPOLICY_ALL);
    assert_false(r->has_cidr);
    assert_string_equal(r->group, SG_A);
    assert_int_equal(r->from, -1);
    r = &a->ingress[2];
    assert_int_equal(r->proto, NETPOLICY_ICMP);
    assert_int_equal(r->from, 8);
    assert_int_equal(r->to, -1);
    assert_int_equal(r->prefix, 0);
    r = &a->ingress[3];
    assert_int_equal(r->proto, 47);
    assert_int_equal(r->net, 0xc0a80101);
    r = &a->egress[0];
    assert_int_equal(r->proto, NETPOLICY_UDP);
    assert_int_equal(r->from, 1);
    assert_int_equal(r->to, 65535);
    assert_string_equal(r->group, SG_B);
    const struct netpolicy_group *b = netpolicy_group(p, SG_B);
    assert_non_null(b);
    assert_int_equal(b->n_ingress + b->n_egress, 0);
    assert_null(netpolicy_group(p, "sg-12345678"));
    const struct netpolicy_members *m = netpolicy_members(p, SG_A);
    assert_non_null(m);
    assert_int_equal(m->n, 2);
    assert_int_equal(m->addrs[0], 0x0a6e0005);
    assert_int_equal(m->addrs[1], 0x0a6f0009);
    assert_int_equal(netpolicy_members(p, SG_B)->n, 0);
    const struct netpolicy_instance *i = netpolicy_instance(p, I_1);
    assert_non_null(i);
    assert_int_equal(i->n_groups, 2);
    assert_string_equal(i->groups[0], SG_A);
    assert_int_equal(netpolicy_instance(p, I_2)->n_groups, 0);
    assert_null(netpolicy_instance(p, "i-12345678"));
    netpolicy_free(p);
}

static void test_minimal(void **state)
{
    (void)state;
    struct netpolicy *p = parse(" {\"version\": 1}\n");
    assert_int_equal(p->version, 1);
    assert_int_equal(p->n_groups + p->n_members + p->n_instances, 0);
    assert_null(netpolicy_instance(p, I_1));
    netpolicy_free(p);
}

/* A document with one rule in group SG_A's ingress. */
static char *with_rule(const char *rule)
{
    char *s = NULL;
    if (asprintf(&s,
                 "{\"version\": 2, \"groups\": {\"" SG_A "\": "
                 "{\"ingress\": [%s]}}}",
                 rule) < 0)
        return NULL;
    return s;
}

static void refused(const char *doc, const char *why)
{
    struct koala_error *err = NULL;
    struct netpolicy *p = netpolicy_parse(doc, strlen(doc), &err);
    if (p != NULL)
        fail_msg("accepted: %s", doc);
    assert_non_null(err);
    assert_string_equal(error_code(err), "InvalidParameterValue");
    if (strstr(error_message(err), why) == NULL)
        fail_msg("'%s' does not say '%s' (%s)", error_message(err), why, doc);
    error_free(err);
}

static void refused_rule(const char *rule, const char *why)
{
    char *doc = with_rule(rule);
    assert_non_null(doc);
    refused(doc, why);
    free(doc);
}

static void test_bad_rules(void **state)
{
    (void)state;
    refused_rule("{\"proto\": \"sctp\", \"cidr\": \"0.0.0.0/0\"}", "proto");
    refused_rule("{\"proto\": 256, \"cidr\": \"0.0.0.0/0\"}", "proto");
    refused_rule("{\"proto\": -1, \"cidr\": \"0.0.0.0/0\"}", "proto");
    refused_rule("{\"cidr\": \"0.0.0.0/0\"}", "proto");
    refused_rule("{\"proto\": \"TCP\", \"from\": 1, \"to\": 2, "
                 "\"cidr\": \"0.0.0.0/0\"}",
                 "proto");
    refused_rule("{\"proto\": \"tcp\", \"from\": 0, \"to\": 65536, "
                 "\"cidr\": \"0.0.0.0/0\"}",
                 "'to' must be an integer from 0 to 65535");
    refused_rule("{\"proto\": \"udp\", \"from\": -1, \"to\": 5, "
                 "\"cidr\": \"0.0.0.0/0\"}",
                 "'from'");
    refused_rule("{\"proto\": \"tcp\", \"from\": 90, \"to\": 80, "
                 "\"cidr\": \"0.0.0.0/0\"}",
                 "reversed");
    refused_rule("{\"proto\": \"tcp\", \"cidr\": \"0.0.0.0/0\"}",
                 "needs from and to");
    refused_rule("{\"proto\": \"tcp\", \"from\": \"80\", \"to\": 80, "
                 "\"cidr\": \"0.0.0.0/0\"}",
                 "'from'");
    refused_rule("{\"proto\": \"icmp\", \"from\": 256, "
                 "\"cidr\": \"0.0.0.0/0\"}",
                 "'from'");
    refused_rule("{\"proto\": \"icmp\", \"from\": -1, \"to\": 3, "
                 "\"cidr\": \"0.0.0.0/0\"}",
                 "code needs a type");
    refused_rule("{\"proto\": \"all\", \"from\": 1, \"to\": 2, "
                 "\"cidr\": \"0.0.0.0/0\"}",
                 "'from'");
    refused_rule("{\"proto\": \"all\"}", "exactly one of cidr and group");
    refused_rule("{\"proto\": \"all\", \"cidr\": \"0.0.0.0/0\", "
                 "\"group\": \"" SG_A "\"}",
                 "exactly one of cidr and group");
    static const char *const cidrs[] = {
        "10.0.0.0",      "10.0.0.0/33",  "10.0.0/8",
        "10.0.0.0/",     "/8",           "10.0.0.0/-1",
        "::/0",          "10.0.0.256/8", "10.0.0.0/8 ",
        " 10.0.0.0/8",   "10.0.0.0/08x", "010.0.0.0/8",
        "10.0.0.0/0008",
    };
    for (size_t i = 0; i < sizeof(cidrs) / sizeof(cidrs[0]); i++) {
        char rule[128];
        snprintf(rule, sizeof(rule), "{\"proto\": \"all\", \"cidr\": \"%s\"}",
                 cidrs[i]);
        refused_rule(rule, "not an IPv4 prefix");
    }
    refused_rule("{\"proto\": \"all\", \"cidr\": 10}", "cidr must be");
    refused_rule("{\"proto\": \"all\", \"group\": \"sg-xyz\"}",
                 "not a security group id");
    refused_rule("{\"proto\": \"all\", \"group\": \"default\"}",
                 "not a security group id");
    refused_rule("{\"proto\": \"all\", \"cidr\": \"0.0.0.0/0\", "
                 "\"port\": 1}",
                 "unknown key 'port'");
    refused_rule("\"all\"", "a rule is an object");
}

static void test_bad_documents(void **state)
{
    (void)state;
    refused("", "not JSON");
    refused("{\"version\": 1", "not JSON");
    refused("{\"version\": 1} x", "not JSON");
    refused("[]", "is an object");
    refused("{}", "no version");
    refused("{\"version\": 0}", "version");
    refused("{\"version\": -3}", "version");
    refused("{\"version\": \"3\"}", "version");
    refused("{\"version\": 1.5}", "version");
    refused("{\"version\": 1, \"version\": 2}", "not JSON");
    refused("{\"version\": 1, \"extra\": {}}", "unknown key 'extra'");
    refused("{\"version\": 1, \"groups\": []}", "groups must be an object");
    refused("{\"version\": 1, \"groups\": {\"web\": {}}}",
            "not a security group id");
    refused("{\"version\": 1, \"groups\": {\"" SG_A "\": {\"in\": []}}}",
            "unknown key 'in'");
    refused("{\"version\": 1, \"groups\": {\"" SG_A "\": "
            "{\"ingress\": {}}}}",
            "must be an array");
    refused("{\"version\": 1, \"members\": {\"" SG_A "\": [\"10.0.0.1/32\"]}}",
            "not an IPv4 address");
    refused("{\"version\": 1, \"members\": {\"" SG_A "\": [\"10.0.0\"]}}",
            "not an IPv4 address");
    refused("{\"version\": 1, \"members\": {\"" SG_A "\": [167772161]}}",
            "not an IPv4 address");
    refused("{\"version\": 1, \"members\": {\"sg-1\": []}}",
            "not a security group id");
    refused("{\"version\": 1, \"instances\": {\"i-xyz\": []}}",
            "not an instance id");
    refused("{\"version\": 1, \"instances\": {\"" I_1 "\": [\"sg-1\"]}}",
            "not a security group id");
    refused("{\"version\": 1, \"instances\": {\"" I_1 "\": \"" SG_A "\"}}",
            "array of at most 5");
    refused("{\"version\": 1, \"instances\": {\"" I_1 "\": [\"sg-00000001\","
            "\"sg-00000002\",\"sg-00000003\",\"sg-00000004\",\"sg-00000005\","
            "\"sg-00000006\"]}}",
            "array of at most 5");
}

static void test_too_large(void **state)
{
    (void)state;
    /* Over the byte limit. */
    size_t n = NETPOLICY_MAX_TEXT + 16;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, "{\"version\": 1}", 14);
    big[n] = '\0';
    refused(big, "larger than");
    free(big);
    /* Over the rules of one group. */
    size_t cap = (NETPOLICY_MAX_RULES + 1) * 48 + 128;
    char *doc = malloc(cap);
    assert_non_null(doc);
    size_t len = (size_t)snprintf(
        doc, cap, "{\"version\": 1, \"groups\": {\"" SG_A "\": {\"egress\": [");
    for (unsigned i = 0; i <= NETPOLICY_MAX_RULES; i++)
        len += (size_t)snprintf(doc + len, cap - len,
                                "%s{\"proto\": \"all\", \"cidr\": "
                                "\"10.0.0.0/8\"}",
                                i ? "," : "");
    snprintf(doc + len, cap - len, "]}}}");
    refused(doc, "more than 1000 rules");
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),      cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_bad_rules), cmocka_unit_test(test_bad_documents),
        cmocka_unit_test(test_too_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
