/* test_id.c: random identifiers: formats, lengths, uniqueness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"

static bool all_of(const char *s, const char *set)
{
    return s[strspn(s, set)] == '\0';
}

static void test_random_bytes(void **s)
{
    unsigned char a[4096], b[4096];
    assert_int_equal(id_random_bytes(a, sizeof(a)), 0);
    assert_int_equal(id_random_bytes(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(id_random_bytes(a, 0), 0);
    /* Large requests (getrandom may return them in parts). */
    size_t big = 4 * 1024 * 1024;
    unsigned char *p = calloc(1, big);
    assert_int_equal(id_random_bytes(p, big), 0);
    size_t zeros = 0;
    for (size_t i = big - 4096; i < big; i++)
        zeros += p[i] == 0;
    assert_true(zeros < 100); /* ~16 expected: the tail was filled too */
    free(p);
}

static void test_random_hex(void **s)
{
    char out[2 * 200 + 1];
    memset(out, 'Z', sizeof(out));
    assert_int_equal(id_random_hex(out, 200), 0);
    assert_int_equal(strlen(out), 400);
    assert_true(all_of(out, "0123456789abcdef"));
    char small[3];
    assert_int_equal(id_random_hex(small, 1), 0);
    assert_int_equal(strlen(small), 2);
    char none[1] = {'Z'};
    assert_int_equal(id_random_hex(none, 0), 0);
    assert_string_equal(none, "");
}

static void test_resource(void **s)
{
    char id[32];
    assert_int_equal(id_resource(id, sizeof(id), "i"), 0);
    assert_int_equal(strlen(id), 19);
    assert_memory_equal(id, "i-", 2);
    assert_true(all_of(id + 2, "0123456789abcdef"));
    char vol[4 + 19];
    assert_int_equal(id_resource(vol, sizeof(vol), "vol"), 0);
    assert_int_equal(strlen(vol), 21);
    assert_memory_equal(vol, "vol-", 4);
    /* Too small a buffer. */
    char tiny[3 + 18]; /* "vol-" + 17 digits + NUL needs 22 */
    errno = 0;
    assert_int_equal(id_resource(tiny, sizeof(tiny), "vol"), -1);
    assert_int_equal(errno, ERANGE);
    /* Different each time. */
    char a[32], b[32];
    id_resource(a, sizeof(a), "ami");
    id_resource(b, sizeof(b), "ami");
    assert_string_not_equal(a, b);
}

static void test_request(void **s)
{
    char a[17], b[17];
    assert_int_equal(id_request(a), 0);
    assert_int_equal(id_request(b), 0);
    assert_int_equal(strlen(a), 16);
    assert_true(all_of(a, "0123456789ABCDEF"));
    assert_string_not_equal(a, b);
}

static void test_uuid(void **s)
{
    for (int i = 0; i < 200; i++) {
        char u[37];
        assert_int_equal(id_uuid(u), 0);
        assert_int_equal(strlen(u), 36);
        for (int k = 0; k < 36; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                assert_int_equal(u[k], '-');
            else
                assert_non_null(strchr("0123456789abcdef", u[k]));
        }
        assert_int_equal(u[14], '4');           /* version */
        assert_non_null(strchr("89ab", u[19])); /* variant */
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_unique(void **s)
{
    enum { N = 10000 };
    char(*ids)[20] = calloc(N, sizeof(*ids));
    for (int i = 0; i < N; i++)
        assert_int_equal(id_resource(ids[i], sizeof(ids[i]), "i"), 0);
    qsort(ids, N, sizeof(*ids), cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

static void test_resource_valid(void **s)
{
    char id[32];
    assert_int_equal(id_resource(id, sizeof(id), "i"), 0);
    assert_true(id_resource_valid(id, "i-"));
    assert_true(id_resource_valid("i-0123abcd", "i-"));
    assert_false(id_resource_valid(id, "ami-"));
    assert_false(id_resource_valid("i-0123ABCD", "i-"));
    assert_false(id_resource_valid("i-0123abc", "i-"));
    assert_false(id_resource_valid("i-0123abcd ", "i-"));
    assert_false(id_resource_valid("i-", "i-"));
    assert_false(id_resource_valid("", "i-"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_random_hex),
        cmocka_unit_test(test_resource),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_resource_valid),
        cmocka_unit_test(test_unique),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
