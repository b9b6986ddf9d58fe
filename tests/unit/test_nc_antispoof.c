/* test_nc_antispoof.c: the node's anti-spoofing rule set as text (golden
 * output for a tap with an address and one without, both directions), what
 * fails closed (malformed MAC or address: a chain that drops everything; ids
 * and tap names that cannot be written: left out; repeats: once), the empty
 * table, the launch-time check, and, where nft and the privilege to use it are
 * there, that nft accepts the script (`nft -c` in a namespace of its own). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "antispoof.h"

static const struct nc_antispoof_tap two[] = {
    {"i-0123456789abcdef0", "tap56789abcdef0", "D0:0D:01:02:03:04",
     "10.111.0.5"},
    {"i-00000000000000aa", "tap0000000000aa", "d0:0d:01:02:03:05", NULL},
};

static const char *const golden_two =
    "add table bridge koala_nc\n"
    "delete table bridge koala_nc\n"
    "table bridge koala_nc {\n"
    "  chain tap_0123456789abcdef0 {\n"
    "    ether saddr != d0:0d:01:02:03:04 counter drop\n"
    "    arp saddr ether != d0:0d:01:02:03:04 counter drop\n"
    "    arp saddr ip != { 10.111.0.5, 0.0.0.0 } counter drop\n"
    "    udp sport 67 counter drop\n"
    "    ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n"
    "    ip saddr != 10.111.0.5 counter drop\n"
    "    ether type { ip, arp } accept\n"
    "    counter drop\n"
    "  }\n"
    "  chain to_0123456789abcdef0 {\n"
    "    ether type arp accept\n"
    "    ip daddr { 10.111.0.5, 255.255.255.255 } accept\n"
    "    ether daddr ff:ff:ff:ff:ff:ff ether type ip accept\n"
    "    counter drop\n"
    "  }\n"
    "  chain tap_00000000000000aa {\n"
    "    ether saddr != d0:0d:01:02:03:05 counter drop\n"
    "    arp saddr ether != d0:0d:01:02:03:05 counter drop\n"
    "    arp saddr ip != 0.0.0.0 counter drop\n"
    "    udp sport 67 counter drop\n"
    "    ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n"
    "    ether type arp accept\n"
    "    counter drop\n"
    "  }\n"
    "  chain to_00000000000000aa {\n"
    "    ether type arp accept\n"
    "    udp sport 67 udp dport 68 accept\n"
    "    ether daddr ff:ff:ff:ff:ff:ff ether type ip accept\n"
    "    counter drop\n"
    "  }\n"
    "  map tap_chain {\n"
    "    type ifname : verdict\n"
    "    elements = { \"tap56789abcdef0\" : jump tap_0123456789abcdef0,\n"
    "                 \"tap0000000000aa\" : jump tap_00000000000000aa }\n"
    "  }\n"
    "  map tap_out {\n"
    "    type ifname : verdict\n"
    "    elements = { \"tap56789abcdef0\" : jump to_0123456789abcdef0,\n"
    "                 \"tap0000000000aa\" : jump to_00000000000000aa }\n"
    "  }\n"
    "  chain from_guests {\n"
    "    type filter hook prerouting priority -200; policy accept;\n"
    "    iifname vmap @tap_chain\n"
    "  }\n"
    "  chain to_guests {\n"
    "    type filter hook postrouting priority 200; policy accept;\n"
    "    oifname vmap @tap_out\n"
    "  }\n"
    "}\n";

static char *script(const struct nc_antispoof_tap *t, size_t n, int want)
{
    struct buf b = {0};
    assert_int_equal(nc_antispoof_script(t, n, &b), want);
    return buf_steal(&b);
}

static void test_golden(void **state)
{
    (void)state;
    char *s = script(two, 2, 2);
    assert_string_equal(s, golden_two);
    free(s);
}

static void test_empty_deletes_the_table(void **state)
{
    (void)state;
    char *s = script(NULL, 0, 0);
    assert_string_equal(s, "add table bridge koala_nc\n"
                           "delete table bridge koala_nc\n");
    free(s);
    /* Only unusable entries: the same. */
    const struct nc_antispoof_tap bad[] = {
        {"i-0123456789abcdef0", "tap\"; flush", "d0:0d:01:02:03:04", NULL},
        {"instance-1", "tap1", "d0:0d:01:02:03:04", NULL},
        {"i-0123456789abcdef0", "", "d0:0d:01:02:03:04", NULL},
        {"i-0123456789abcdef0", "tap0123456789abcdef", "d0:0d:01:02:03:04",
         NULL},
    };
    s = script(bad, 4, 0);
    assert_string_equal(s, "add table bridge koala_nc\n"
                           "delete table bridge koala_nc\n");
    free(s);
}

static void test_fails_closed(void **state)
{
    (void)state;
    const struct nc_antispoof_tap t[] = {
        {"i-000000000000000a", "tapa", "d1:0d:01:02:03:04", "10.0.0.1"},
        {"i-000000000000000b", "tapb", "d0:0d:01:02:03", "10.0.0.2"},
        {"i-000000000000000c", "tapc", "d0:0d:01:02:03:06", "10.0.0.3; x"},
        {"i-000000000000000d", "tapd", "d0:0d:01:02:03:07", "0.0.0.0"},
        {"i-000000000000000e", "tape", "d0:0d:01:02:03:08", "224.0.0.1"},
        {"i-000000000000000f", "tapf", "d0:0d:01:02:03:09", "127.0.0.1"},
        {"i-0000000000000010", "tap10", "d0:0d:01:02:03:0a", "::1"},
    };
    char *s = script(t, 7, 7);
    const char *ids[] = {"a", "b", "c", "d", "e", "f", "10"};
    for (size_t i = 0; i < 7; i++) {
        char want[128];
        snprintf(want, sizeof(want),
                 "  chain tap_%016x {\n    counter drop\n  }\n",
                 (unsigned)strtoul(ids[i], NULL, 16));
        if (strstr(s, want) == NULL)
            fail_msg("no drop-all chain for %s in\n%s", ids[i], s);
    }
    assert_null(strstr(s, "; x"));
    assert_null(strstr(s, "saddr !="));
    assert_non_null(strstr(s, "\"tap10\" : jump tap_0000000000000010"));
    free(s);
}

static void test_repeats_once(void **state)
{
    (void)state;
    const struct nc_antispoof_tap t[] = {
        two[0],
        /* the same id on another tap, another id on the same tap */
        {"i-0123456789abcdef0", "tapother", "d0:0d:01:02:03:09", NULL},
        {"i-0000000000000bbb", "tap56789abcdef0", "d0:0d:01:02:03:09", NULL},
        two[1],
    };
    char *s = script(t, 4, 2);
    assert_string_equal(s, golden_two);
    free(s);
}

static void test_check(void **state)
{
    (void)state;
    struct koala_error *e = NULL;
    assert_int_equal(nc_antispoof_check("i-0123456789abcdef0",
                                        "tap56789abcdef0", "d0:0d:01:02:03:04",
                                        "10.111.0.5", &e),
                     0);
    assert_int_equal(nc_antispoof_check("i-0123456789abcdef0",
                                        "tap56789abcdef0", "d0:0d:01:02:03:04",
                                        NULL, &e),
                     0);
    assert_int_equal(nc_antispoof_check("i-0123456789abcdef0",
                                        "tap56789abcdef0", "d0:0d:01:02:03:04",
                                        "", &e),
                     0);
    assert_null(e);
    assert_int_equal(nc_antispoof_check("i-0123456789abcdef0",
                                        "tap56789abcdef0", "d0:0d:01:02:03:04",
                                        "10.111.0.256", &e),
                     -1);
    assert_non_null(strstr(error_message(e), "10.111.0.256"));
    error_clear(&e);
    assert_int_equal(nc_antispoof_check("i-0123456789abcdef0",
                                        "tap56789abcdef0", "01:0d:01:02:03:04",
                                        "10.111.0.5", &e),
                     -1);
    error_clear(&e);
    assert_int_equal(nc_antispoof_check("i-0123456789abcdef0", "tap x",
                                        "d0:0d:01:02:03:04", "10.111.0.5", &e),
                     -1);
    error_clear(&e);
    assert_int_equal(nc_antispoof_check("i-xyz", "tap1", "d0:0d:01:02:03:04",
                                        "10.111.0.5", &e),
                     -1);
    error_clear(&e);
}

/* nft -c: parsed and checked by the kernel, never committed, in a network
 * namespace of its own. */
static void test_nft_accepts_it(void **state)
{
    (void)state;
    if (geteuid() != 0 || access("/usr/sbin/nft", X_OK) != 0 ||
        system("unshare -n true >/dev/null 2>&1") != 0)
        skip();
    char path[] = "/tmp/test_nc_antispoof.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, golden_two, strlen(golden_two)),
                     (ssize_t)strlen(golden_two));
    close(fd);
    char cmd[256];
    /* Loaded for real twice (the add+delete replaces it), then checked. */
    snprintf(cmd, sizeof(cmd),
             "unshare -n sh -c '/usr/sbin/nft -f %s && /usr/sbin/nft -f %s "
             "&& /usr/sbin/nft -c -f %s'",
             path, path, path);
    int rc = system(cmd);
    unlink(path);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_empty_deletes_the_table),
        cmocka_unit_test(test_fails_closed),
        cmocka_unit_test(test_repeats_once),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_nft_accepts_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
