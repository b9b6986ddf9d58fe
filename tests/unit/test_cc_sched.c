/* test_cc_sched.c: the CC's scheduler: how many instances of a type fit,
 * the cluster's capacity per type, GREEDY against ROUNDROBIN placement,
 * nodes that are not usable, and all-or-nothing placement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cc.h"

static const struct cc_itype small = {"m1.small", 1, 256, 5};
static const struct cc_itype large = {"m1.large", 2, 1024, 10};

static struct sched_node node(const char *name, int64_t cores, int64_t mem,
                              int64_t disk)
{
    struct sched_node n = {.name = name, .usable = true};
    n.max = (struct cc_res){cores, mem, disk};
    n.free = n.max;
    return n;
}

static void test_fits(void **s)
{
    struct cc_res r = {4, 2048, 100};
    /* cores allow 4, memory 8, disk 20: the least wins. */
    assert_int_equal(sched_fits(&r, &small), 4);
    /* cores 2, memory 2, disk 10 */
    assert_int_equal(sched_fits(&r, &large), 2);
    r.memory_mb = 1000;
    assert_int_equal(sched_fits(&r, &large), 0);
    r = (struct cc_res){0, 0, 0};
    assert_int_equal(sched_fits(&r, &small), 0);
    r = (struct cc_res){-1, 100, 100}; /* over-committed by reservations */
    assert_int_equal(sched_fits(&r, &small), 0);
    /* A type without disk only counts cores and memory. */
    struct cc_itype nodisk = {"x", 1, 128, 0};
    r = (struct cc_res){3, 1024, 0};
    assert_int_equal(sched_fits(&r, &nodisk), 3);
}

static void test_capacity(void **s)
{
    struct sched_node n[3] = {node("a", 4, 4096, 100), node("b", 2, 512, 100),
                              node("c", 8, 8192, 100)};
    n[0].free.cores = 1; /* three cores in use on a */
    n[2].usable = false; /* c is BROKEN: counts for nothing */
    int64_t max, avail;
    sched_capacity(n, 3, &small, &max, &avail);
    assert_int_equal(max, 4 + 2);
    assert_int_equal(avail, 1 + 2);
    sched_capacity(n, 3, &large, &max, &avail);
    assert_int_equal(max, 2 + 0);
    assert_int_equal(avail, 0);
}

static void test_greedy(void **s)
{
    struct sched_node n[2] = {node("a", 2, 4096, 100), node("b", 2, 4096, 100)};
    size_t cursor = SIZE_MAX, out[4];
    assert_int_equal(
        sched_place(CC_SCHED_GREEDY, n, 2, &small, 3, &cursor, out), 0);
    /* fills a first, then b */
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], 1);
    assert_int_equal(n[0].free.cores, 0);
    assert_int_equal(n[1].free.cores, 1);
    assert_int_equal(n[0].free.memory_mb, 4096 - 512);
    /* a later request still starts with the first node with room */
    assert_int_equal(
        sched_place(CC_SCHED_GREEDY, n, 2, &small, 1, &cursor, out), 0);
    assert_int_equal(out[0], 1);
}

static void test_roundrobin(void **s)
{
    struct sched_node n[3] = {node("a", 4, 4096, 100), node("b", 4, 4096, 100),
                              node("c", 4, 4096, 100)};
    size_t cursor = SIZE_MAX, out[4];
    assert_int_equal(
        sched_place(CC_SCHED_ROUNDROBIN, n, 3, &small, 4, &cursor, out), 0);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 2);
    assert_int_equal(out[3], 0);
    assert_int_equal(cursor, 0);
    /* the next request continues after the node used last */
    assert_int_equal(
        sched_place(CC_SCHED_ROUNDROBIN, n, 3, &small, 1, &cursor, out), 0);
    assert_int_equal(out[0], 1);
    assert_int_equal(cursor, 1);
    /* a node without room is passed over */
    n[2].free.cores = 0;
    assert_int_equal(
        sched_place(CC_SCHED_ROUNDROBIN, n, 3, &small, 2, &cursor, out), 0);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
}

static void test_skips_unusable(void **s)
{
    struct sched_node n[3] = {node("a", 4, 4096, 100), node("b", 4, 4096, 100),
                              node("c", 4, 4096, 100)};
    n[0].usable = false;
    size_t cursor = SIZE_MAX, out[4];
    assert_int_equal(
        sched_place(CC_SCHED_GREEDY, n, 3, &small, 2, &cursor, out), 0);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 1);
    assert_int_equal(
        sched_place(CC_SCHED_ROUNDROBIN, n, 3, &small, 3, &cursor, out), 0);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 2);
    assert_int_equal(out[2], 1);
    for (int i = 0; i < 3; i++)
        n[i].usable = false;
    assert_int_equal(
        sched_place(CC_SCHED_GREEDY, n, 3, &small, 1, &cursor, out), -1);
}

static void test_all_or_nothing(void **s)
{
    struct sched_node n[2] = {node("a", 2, 4096, 100), node("b", 1, 4096, 100)};
    size_t cursor = 1, out[8];
    /* room for 3, 4 asked: nothing placed, nothing changed */
    assert_int_equal(
        sched_place(CC_SCHED_ROUNDROBIN, n, 2, &small, 4, &cursor, out), -1);
    assert_int_equal(n[0].free.cores, 2);
    assert_int_equal(n[1].free.cores, 1);
    assert_int_equal(cursor, 1);
    assert_int_equal(
        sched_place(CC_SCHED_GREEDY, n, 2, &small, 4, &cursor, out), -1);
    assert_int_equal(n[0].free.cores, 2);
    /* exactly the capacity fits */
    assert_int_equal(
        sched_place(CC_SCHED_GREEDY, n, 2, &small, 3, &cursor, out), 0);
    int64_t max, avail;
    sched_capacity(n, 2, &small, &max, &avail);
    assert_int_equal(max, 3);
    assert_int_equal(avail, 0);
    /* no nodes at all */
    assert_int_equal(
        sched_place(CC_SCHED_GREEDY, n, 0, &small, 1, &cursor, out), -1);
    assert_int_equal(
        sched_place(CC_SCHED_GREEDY, n, 0, &small, 0, &cursor, out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fits),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_roundrobin),
        cmocka_unit_test(test_skips_unusable),
        cmocka_unit_test(test_all_or_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
