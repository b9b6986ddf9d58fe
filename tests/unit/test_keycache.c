/* test_keycache.c: the access key cache: hits and misses, expiry, owner
 * blobs, forgetting, and signing keys cached per scope and secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keycache.h"
#include "sigv4.h"

struct owner {
    long id;
    char name[16];
};

static void test_put_get(void **s)
{
    struct keycache *kc = keycache_new(16, 60000);
    char secret[KEYCACHE_MAX_SECRET];
    struct owner o = {0}, in = {42, "alice"};
    assert_false(keycache_get(kc, "AK1", secret, &o, sizeof(o)));
    keycache_put(kc, "AK1", "s3cr3t", &in, sizeof(in));
    assert_true(keycache_get(kc, "AK1", secret, &o, sizeof(o)));
    assert_string_equal(secret, "s3cr3t");
    assert_int_equal(o.id, 42);
    assert_string_equal(o.name, "alice");
    /* A different owner size is a miss, not a short copy. */
    long small;
    assert_false(keycache_get(kc, "AK1", secret, &small, sizeof(small)));
    assert_false(keycache_get(kc, "AK2", secret, &o, sizeof(o)));
    keycache_forget(kc, "AK1");
    assert_false(keycache_get(kc, "AK1", secret, &o, sizeof(o)));
    keycache_free(kc);
    keycache_free(NULL);
    assert_false(keycache_get(NULL, "AK1", secret, &o, sizeof(o)));
}

static void test_expiry(void **s)
{
    struct keycache *kc = keycache_new(16, 50);
    char secret[KEYCACHE_MAX_SECRET];
    struct owner o, in = {1, "x"};
    keycache_put(kc, "AK", "sec", &in, sizeof(in));
    assert_true(keycache_get(kc, "AK", secret, &o, sizeof(o)));
    usleep(80 * 1000);
    assert_false(keycache_get(kc, "AK", secret, &o, sizeof(o)));
    keycache_free(kc);
}

static void test_collisions_replace(void **s)
{
    /* One slot: every key evicts the previous one, never mixes them. */
    struct keycache *kc = keycache_new(1, 60000);
    char secret[KEYCACHE_MAX_SECRET];
    struct owner o, a = {1, "a"}, b = {2, "b"};
    keycache_put(kc, "AKA", "secret-a", &a, sizeof(a));
    keycache_put(kc, "AKB", "secret-b", &b, sizeof(b));
    assert_false(keycache_get(kc, "AKA", secret, &o, sizeof(o)));
    assert_true(keycache_get(kc, "AKB", secret, &o, sizeof(o)));
    assert_string_equal(secret, "secret-b");
    assert_int_equal(o.id, 2);
    keycache_free(kc);
}

static void test_too_long_not_cached(void **s)
{
    struct keycache *kc = keycache_new(4, 60000);
    char secret[KEYCACHE_MAX_SECRET], big[KEYCACHE_MAX_SECRET + 10];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct owner o, in = {1, "x"};
    keycache_put(kc, "AK", big, &in, sizeof(in));
    assert_false(keycache_get(kc, "AK", secret, &o, sizeof(o)));
    keycache_free(kc);
}

static void test_signing_key(void **s)
{
    struct keycache *kc = keycache_new(8, 60000);
    struct owner in = {1, "x"};
    unsigned char want[32], got[32];
    const char *secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    sigv4_signing_key(secret, "20150830", "us-east-1", "iam", want);
    /* Without an entry: derived, correct, not remembered. */
    keycache_signing_key(kc, "AK", secret, "20150830", "us-east-1", "iam", got);
    assert_memory_equal(got, want, 32);
    keycache_put(kc, "AK", secret, &in, sizeof(in));
    for (int i = 0; i < 3; i++) {
        memset(got, 0, 32);
        keycache_signing_key(kc, "AK", secret, "20150830", "us-east-1", "iam",
                             got);
        assert_memory_equal(got, want, 32);
    }
    /* Another scope or another secret never gets the cached key. */
    sigv4_signing_key(secret, "20150831", "us-east-1", "iam", want);
    keycache_signing_key(kc, "AK", secret, "20150831", "us-east-1", "iam", got);
    assert_memory_equal(got, want, 32);
    sigv4_signing_key("other", "20150831", "us-east-1", "iam", want);
    keycache_signing_key(kc, "AK", "other", "20150831", "us-east-1", "iam",
                         got);
    assert_memory_equal(got, want, 32);
    keycache_free(kc);
    keycache_signing_key(NULL, "AK", "other", "20150831", "us-east-1", "iam",
                         got);
    assert_memory_equal(got, want, 32);
}

static struct keycache *g_kc;

static void *hammer(void *arg)
{
    long id = (long)(intptr_t)arg;
    char key[16], sec[32], secret[KEYCACHE_MAX_SECRET];
    struct owner o, in = {id, "t"};
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "AK%ld-%d", id, i % 7);
        snprintf(sec, sizeof(sec), "secret-%ld-%d", id, i % 7);
        keycache_put(g_kc, key, sec, &in, sizeof(in));
        if (keycache_get(g_kc, key, secret, &o, sizeof(o)) &&
            (strcmp(secret, sec) != 0 || o.id != id))
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **s)
{
    g_kc = keycache_new(5, 60000);
    pthread_t t[8];
    for (intptr_t i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)i), 0);
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    keycache_free(g_kc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_collisions_replace),
        cmocka_unit_test(test_too_long_not_cached),
        cmocka_unit_test(test_signing_key),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
