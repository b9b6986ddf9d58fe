/* test_cc_alloc.c: the CC's address allocation on a real SQLite database:
 * subnets, MACs derived from instance ids (and unique when two ids share
 * their last digits), first-free IPs that skip the network, router and
 * broadcast addresses, exhaustion, reuse after free, persistence across a
 * reopen; and what a node's instances use, as the scheduler counts it. */
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

static char g_dir[64], g_path[96];

static int setup(void **s)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/koala-cc-alloc-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_path, sizeof(g_path), "%s/cc.db", g_dir);
    return 0;
}

static int teardown(void **s)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct db *open_db(void)
{
    struct koala_error *err = NULL;
    struct db *db = db_open(g_path, &err);
    assert_non_null(db);
    assert_int_equal(db_migrate(db, cc_migrations, cc_n_migrations, &err), 0);
    return db;
}

static void test_subnet(void **s)
{
    struct cc_subnet sn;
    struct koala_error *err = NULL;
    assert_int_equal(cc_subnet_parse("10.111.0.0/16", NULL, &sn, &err), 0);
    char a[16];
    cc_ip_format(sn.router, a);
    assert_string_equal(a, "10.111.0.1");
    cc_ip_format(sn.broadcast, a);
    assert_string_equal(a, "10.111.255.255");
    assert_int_equal(sn.prefix, 16);
    assert_int_equal(cc_subnet_parse("10.1.2.0/24", "10.1.2.254", &sn, &err),
                     0);
    cc_ip_format(sn.router, a);
    assert_string_equal(a, "10.1.2.254");
    static const char *const bad[] = {"10.111.0.1/16", "10.0.0.0/31",
                                      "10.0.0.0",      "10.0.0.0/x",
                                      "nope/24",       "10.0.0.0/4"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(cc_subnet_parse(bad[i], NULL, &sn, &err), -1);
        assert_string_equal(error_code(err), "InvalidParameterValue");
        error_clear(&err);
    }
    assert_int_equal(cc_subnet_parse("10.1.2.0/24", "10.1.3.1", &sn, &err), -1);
    error_clear(&err);
    assert_int_equal(cc_subnet_parse("10.1.2.0/24", "10.1.2.255", &sn, &err),
                     -1);
    error_clear(&err);
}

static void test_mac(void **s)
{
    char mac[18], other[18];
    cc_mac_for("i-0123456789abcdef0", 0, mac);
    assert_string_equal(mac, "d0:0d:9a:bc:de:f0");
    cc_mac_for("i-89abcdef", 0, mac);
    assert_string_equal(mac, "d0:0d:89:ab:cd:ef");
    /* other attempts give other (but stable) candidates */
    cc_mac_for("i-0123456789abcdef0", 1, mac);
    cc_mac_for("i-0123456789abcdef0", 1, other);
    assert_string_equal(mac, other);
    assert_string_not_equal(mac, "d0:0d:9a:bc:de:f0");
    assert_true(str_has_prefix(mac, "d0:0d:"));
    cc_mac_for("i-0123456789abcdef0", 2, other);
    assert_string_not_equal(mac, other);
}

static void test_alloc_exhaust_reuse(void **s)
{
    struct db *db = open_db();
    struct koala_error *err = NULL;
    struct cc_subnet sn;
    /* /29: .0 network, .1 router, .7 broadcast; .2 to .6 for instances */
    assert_int_equal(cc_subnet_parse("10.9.0.0/29", NULL, &sn, &err), 0);
    char ids[6][32], mac[18], ip[16];
    for (int i = 0; i < 6; i++)
        snprintf(ids[i], 32, "i-%08x", 0xa0 + i);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(
            alloc_address(db, "default", &sn, ids[i], mac, ip, &err), 0);
        char want[16];
        snprintf(want, sizeof(want), "10.9.0.%d", 2 + i);
        assert_string_equal(ip, want);
        char wmac[18];
        snprintf(wmac, sizeof(wmac), "d0:0d:00:00:00:%02x", 0xa0 + i);
        assert_string_equal(mac, wmac);
    }
    assert_int_equal(alloc_address(db, "default", &sn, ids[5], mac, ip, &err),
                     -1);
    assert_string_equal(error_code(err), "InsufficientAddressCapacity");
    error_clear(&err);
    /* Another network has its own addresses. */
    assert_int_equal(alloc_address(db, "sg-1", &sn, ids[5], mac, ip, &err), 0);
    assert_string_equal(ip, "10.9.0.2");
    bool freed = false;
    assert_int_equal(alloc_release(db, ids[5], &freed, &err), 0);
    assert_true(freed);
    /* Free the middle one: it is the next handed out. */
    assert_int_equal(alloc_release(db, ids[2], &freed, &err), 0);
    assert_true(freed);
    assert_int_equal(alloc_release(db, ids[2], &freed, &err), 0);
    assert_false(freed);
    assert_int_equal(alloc_address(db, "default", &sn, ids[5], mac, ip, &err),
                     0);
    assert_string_equal(ip, "10.9.0.4");
    db_close(db);
}

static void test_alloc_router_in_middle_and_mac_clash(void **s)
{
    struct db *db = open_db();
    struct koala_error *err = NULL;
    struct cc_subnet sn;
    assert_int_equal(cc_subnet_parse("10.8.0.0/29", "10.8.0.3", &sn, &err), 0);
    char mac[18], mac2[18], ip[16];
    assert_int_equal(
        alloc_address(db, "n", &sn, "i-0000000000000abcd", mac, ip, &err), 0);
    assert_string_equal(ip, "10.8.0.1");
    assert_int_equal(
        alloc_address(db, "n", &sn, "i-1111111100000abcd", mac2, ip, &err), 0);
    assert_string_equal(ip, "10.8.0.2");
    /* same last 8 digits: the second got another MAC */
    assert_string_equal(mac, "d0:0d:00:00:ab:cd");
    assert_string_not_equal(mac, mac2);
    assert_int_equal(alloc_address(db, "n", &sn, "i-22222222", mac2, ip, &err),
                     0);
    assert_string_equal(ip, "10.8.0.4"); /* .3 is the router */
    db_close(db);
}

static void test_persistence(void **s)
{
    /* The allocations of the tests above survived closing the database. */
    struct db *db = open_db();
    struct koala_error *err = NULL;
    _cleanup_buf_ struct buf hosts = {0};
    assert_int_equal(store_dhcp_hosts(db, "default", &hosts, &err), 0);
    assert_string_equal(hosts.data, "d0:0d:00:00:00:a0,10.9.0.2,i-000000a0\n"
                                    "d0:0d:00:00:00:a1,10.9.0.3,i-000000a1\n"
                                    "d0:0d:00:00:00:a5,10.9.0.4,i-000000a5\n"
                                    "d0:0d:00:00:00:a3,10.9.0.5,i-000000a3\n"
                                    "d0:0d:00:00:00:a4,10.9.0.6,i-000000a4\n");
    struct cc_subnet sn;
    assert_int_equal(cc_subnet_parse("10.9.0.0/29", NULL, &sn, &err), 0);
    char mac[18], ip[16];
    assert_int_equal(
        alloc_address(db, "default", &sn, "i-000000ff", mac, ip, &err), -1);
    error_free(err);
    db_close(db);
}

static struct cc_instance inst(const char *id, const char *node, bool seen,
                               const char *state)
{
    struct cc_instance in = {0};
    snprintf(in.id, sizeof(in.id), "%s", id);
    snprintf(in.reservation, sizeof(in.reservation), "r-1");
    snprintf(in.owner, sizeof(in.owner), "o");
    snprintf(in.state, sizeof(in.state), "%s", state);
    in.type = (struct cc_itype){"m1.small", 1, 256, 5};
    snprintf(in.image_id, sizeof(in.image_id), "emi-1");
    snprintf(in.node, sizeof(in.node), "%s", node);
    snprintf(in.network, sizeof(in.network), "default");
    in.seen = seen;
    return in;
}

static void test_node_usage(void **s)
{
    struct db *db = open_db();
    struct koala_error *err = NULL;
    struct cc_instance a = inst("i-00000001", "nc1", false, "pending");
    struct cc_instance b = inst("i-00000002", "nc1", true, "running");
    struct cc_instance c = inst("i-00000003", "nc1", false, "terminated");
    struct cc_instance d = inst("i-00000004", "nc2", false, "pending");
    assert_int_equal(store_instance_insert(db, &a, &err), 0);
    assert_int_equal(store_instance_insert(db, &b, &err), 0);
    assert_int_equal(store_instance_insert(db, &c, &err), 0);
    assert_int_equal(store_instance_insert(db, &d, &err), 0);
    struct cc_res r;
    /* what nc1's live instances use, listed by the NC or not yet */
    assert_int_equal(store_node_usage(db, "nc1", &r, &err), 0);
    assert_int_equal(r.cores, 2);
    assert_int_equal(r.memory_mb, 512);
    assert_int_equal(r.disk_gb, 10);
    a.seen = true;
    assert_int_equal(store_instance_update(db, &a, &err), 0);
    assert_int_equal(store_node_usage(db, "nc1", &r, &err), 0);
    assert_int_equal(r.cores, 2);
    snprintf(b.state, sizeof(b.state), "terminated");
    assert_int_equal(store_instance_update(db, &b, &err), 0);
    assert_int_equal(store_node_usage(db, "nc1", &r, &err), 0);
    assert_int_equal(r.cores, 1);
    assert_int_equal(store_node_usage(db, "nc3", &r, &err), 0);
    assert_int_equal(r.cores, 0);
    struct cc_instance *list;
    size_t n;
    assert_int_equal(store_instances_on_node(db, "nc1", &list, &n, &err), 0);
    assert_int_equal(n, 1);
    free(list);
    int purged = 0;
    assert_int_equal(store_purge_terminated(db, INT64_MAX, &purged, &err), 0);
    assert_int_equal(purged, 2);
    struct cc_instance got;
    assert_int_equal(store_instance_get(db, "i-00000003", &got, &err), 1);
    assert_int_equal(store_instance_get(db, "i-00000001", &got, &err), 0);
    assert_true(got.seen);
    assert_string_equal(got.type.name, "m1.small");
    db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subnet),
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_alloc_exhaust_reuse),
        cmocka_unit_test(test_alloc_router_in_middle_and_mac_clash),
        cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_node_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
