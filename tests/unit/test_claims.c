/* test_claims.c: the set of keys under way: one holder per key, given
 * back, many keys, and many threads racing for the same keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "claims.h"

static void test_one_holder(void **s)
{
    (void)s;
    struct claims *c = claims_new();
    assert_non_null(c);
    assert_true(claims_take(c, "r-1"));
    assert_false(claims_take(c, "r-1"));
    assert_true(claims_take(c, "r-2"));
    assert_int_equal(claims_count(c), 2);
    claims_drop(c, "r-1");
    assert_int_equal(claims_count(c), 1);
    assert_true(claims_take(c, "r-1"));
    claims_drop(c, "never-taken"); /* ignored */
    assert_int_equal(claims_count(c), 2);
    claims_free(c);
    claims_free(NULL);
}

static void test_many_keys(void **s)
{
    (void)s;
    struct claims *c = claims_new();
    char k[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof(k), "i-%d", i);
        assert_true(claims_take(c, k));
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(k, sizeof(k), "i-%d", i);
        claims_drop(c, k);
    }
    assert_int_equal(claims_count(c), 500);
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof(k), "i-%d", i);
        /* the even ones were given back, the odd ones are still held */
        assert_int_equal(claims_take(c, k), i % 2 == 0);
    }
    claims_free(c); /* frees the keys still held */
}

#define THREADS 8
#define ROUNDS 20000

struct race {
    struct claims *c;
    int holders[4]; /* how many hold key k now: never above 1 */
    int worst;
    pthread_mutex_t mu;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    char k[8];
    for (int i = 0; i < ROUNDS; i++) {
        int key = i % 4;
        snprintf(k, sizeof(k), "k%d", key);
        if (!claims_take(r->c, k))
            continue;
        pthread_mutex_lock(&r->mu);
        int now = ++r->holders[key];
        if (now > r->worst)
            r->worst = now;
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_lock(&r->mu);
        r->holders[key]--;
        pthread_mutex_unlock(&r->mu);
        claims_drop(r->c, k);
    }
    return NULL;
}

static void test_threads_race(void **s)
{
    (void)s;
    struct race r = {.c = claims_new()};
    pthread_mutex_init(&r.mu, NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer, &r), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(r.worst, 1);
    assert_int_equal(claims_count(r.c), 0);
    pthread_mutex_destroy(&r.mu);
    claims_free(r.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_holder),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_threads_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
