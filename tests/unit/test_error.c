/* test_error.c: the error object: first error wins, errno capture,
 * prefixes, defaults for code and message, cleanup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static int fails_with(struct koala_error **err)
{
    return error_set(err, ENOENT, "NoSuchKey", "key %s not found", "k1");
}

static void test_set(void **s)
{
    struct koala_error *err = NULL;
    assert_int_equal(fails_with(&err), -1);
    assert_non_null(err);
    assert_int_equal(err->errnum, ENOENT);
    assert_string_equal(err->code, "NoSuchKey");
    assert_int_equal(err->status, 0);
    assert_string_equal(err->message, "key k1 not found");
    assert_string_equal(error_code(err), "NoSuchKey");
    assert_string_equal(error_message(err), "key k1 not found");
    error_free(err);
}

static void test_first_error_wins(void **s)
{
    struct koala_error *err = NULL;
    error_set(&err, EIO, NULL, "first");
    struct koala_error *first = err;
    assert_int_equal(error_set(&err, EINVAL, "Other", "second"), -1);
    assert_int_equal(error_set_status(&err, 409, "Conflict", "third"), -1);
    errno = EPERM;
    assert_int_equal(error_set_errno(&err, "fourth"), -1);
    assert_ptr_equal(err, first);
    assert_string_equal(err->message, "first");
    assert_int_equal(err->errnum, EIO);
    error_free(err);
}

static void test_null_err(void **s)
{
    /* Callers that do not want the details pass NULL. */
    assert_int_equal(error_set(NULL, EIO, NULL, "x"), -1);
    assert_int_equal(error_set_status(NULL, 400, "Bad", "x"), -1);
    errno = EACCES;
    assert_int_equal(error_set_errno(NULL, "open %s", "f"), -1);
    assert_int_equal(errno, EACCES);
    error_prefix(NULL, "ctx");
    error_free(NULL);
    error_clear(NULL);
    struct koala_error *none = NULL;
    error_clear(&none);
    assert_null(none);
}

static void test_status(void **s)
{
    struct koala_error *err = NULL;
    error_set_status(&err, 409, "BucketNotEmpty", "bucket %d", 7);
    assert_int_equal(err->status, 409);
    assert_int_equal(err->errnum, 0);
    assert_string_equal(err->code, "BucketNotEmpty");
    assert_string_equal(err->message, "bucket 7");
    error_clear(&err);
    assert_null(err);
}

static void test_errno(void **s)
{
    struct koala_error *err = NULL;
    errno = ENOSPC;
    assert_int_equal(error_set_errno(&err, "writing %s", "blob"), -1);
    assert_int_equal(errno, ENOSPC); /* preserved for the caller */
    assert_int_equal(err->errnum, ENOSPC);
    assert_null(err->code);
    assert_string_equal(error_code(err), "InternalError");
    char want[128];
    snprintf(want, sizeof(want), "writing blob: %s", strerror(ENOSPC));
    assert_string_equal(err->message, want);
    error_free(err);
}

static void test_prefix(void **s)
{
    struct koala_error *err = NULL;
    error_set(&err, EIO, NULL, "disk on fire");
    error_prefix(err, "storing %s/%s", "b", "k");
    error_prefix(err, "PUT");
    assert_string_equal(err->message, "PUT: storing b/k: disk on fire");
    assert_int_equal(err->errnum, EIO);
    error_free(err);
    /* A message that could not be made: the prefix still applies. */
    struct koala_error *bare = calloc(1, sizeof(*bare));
    error_prefix(bare, "ctx");
    assert_string_equal(bare->message, "ctx: ");
    error_free(bare);
}

static void test_defaults(void **s)
{
    assert_string_equal(error_code(NULL), "InternalError");
    assert_string_equal(error_message(NULL), "unknown error");
    struct koala_error e = {0};
    assert_string_equal(error_code(&e), "InternalError");
    assert_string_equal(error_message(&e), "unknown error");
}

static void test_long_message(void **s)
{
    char big[10000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct koala_error *err = NULL;
    error_set(&err, 0, NULL, "%s|%s", big, big);
    assert_int_equal(strlen(err->message), 2 * (sizeof(big) - 1) + 1);
    error_free(err);
}

static int cleanup_user(void)
{
    _cleanup_error_ struct koala_error *err = NULL;
    fails_with(&err);
    return err != NULL; /* freed on return: ASan would see a leak */
}

static void test_cleanup(void **s)
{
    assert_int_equal(cleanup_user(), 1);
    _cleanup_error_ struct koala_error *none = NULL;
    (void)none;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_null_err),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_errno),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_long_message),
        cmocka_unit_test(test_cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
