/* test_walrus_policy.c: the bucket policy language of Walrus (policy.c)
 * apart from any request: wildcards, what a document must be
 * (MalformedPolicy), and evaluation: Deny over Allow, principals, NotAction
 * and NotResource, and the condition operators with their IfExists and
 * ForAnyValue/ForAllValues forms over keys a table here answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

/* The request's condition keys: "name=value" pairs, a name repeated for a
 * multi-valued key. */
static const char *const *keys_now;

static void lookup(void *ctx, const char *key, struct policy_values *out)
{
    (void)ctx;
    for (const char *const *k = keys_now; k && *k; k++) {
        const char *eq = strchr(*k, '=');
        if (strlen(key) == (size_t)(eq - *k) &&
            strncasecmp(*k, key, (size_t)(eq - *k)) == 0)
            policy_values_add(out, eq + 1);
    }
}

static struct policy *parse(const char *json)
{
    struct koala_error *err = NULL;
    struct policy *p = policy_parse(json, strlen(json), "bkt", &err);
    if (p == NULL)
        fail_msg("policy refused: %s", error_message(err));
    return p;
}

static enum policy_effect eval(const struct policy *p, const char *action,
                               const char *resource, const char *account,
                               const char *const *keys)
{
    keys_now = keys;
    struct policy_request pr = {
        .action = action,
        .resource = resource,
        .anonymous = account == NULL,
        .account = account ? account : "",
        .canonical_id = "c0ffee",
        .owner_account = "000000000001",
        .lookup = lookup,
    };
    return policy_evaluate(p, &pr);
}

static void test_glob(void **state)
{
    (void)state;
    assert_true(policy_glob("s3:Get*", "s3:GetObject", false));
    assert_true(policy_glob("S3:get*", "s3:GetObject", true));
    assert_false(policy_glob("S3:get*", "s3:GetObject", false));
    assert_true(policy_glob("arn:aws:s3:::b/a?c/*", "arn:aws:s3:::b/abc/d",
                            false));
    assert_false(policy_glob("arn:aws:s3:::b/a?c/*", "arn:aws:s3:::b/ac/d",
                             false));
    assert_true(policy_glob("*", "", false));
    assert_true(policy_glob("a*b*c", "aXXbYYc", false));
    assert_false(policy_glob("a*b*c", "aXXbYY", false));
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "{\"Statement\": []}",
        "{\"Version\": \"2000-01-01\", \"Statement\": {\"Effect\": \"Allow\","
        " \"Principal\": \"*\", \"Action\": \"s3:GetObject\","
        " \"Resource\": \"arn:aws:s3:::bkt/*\"}}",
        "{\"Statement\": {\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\","
        " \"Resource\": \"arn:aws:s3:::bkt/*\"}}",
        "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\","
        " \"Action\": \"s3:Nope\", \"Resource\": \"arn:aws:s3:::bkt/*\"}}",
        "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\","
        " \"Action\": \"s3:GetObject\", \"Resource\": \"arn:aws:s3:::other/*\"}}",
        "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\","
        " \"Action\": \"s3:GetObject\", \"Resource\": \"arn:aws:s3:::bkt/*\","
        " \"Condition\": {\"NullIfExists\": {\"aws:SourceIp\": \"true\"}}}}",
        "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\","
        " \"Action\": \"s3:GetObject\", \"Resource\": \"arn:aws:s3:::bkt/*\","
        " \"Condition\": {\"StringEquals\": {\"s3:prefix\": {\"a\": 1}}}}}",
        "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\","
        " \"Principal\": \"*\", \"Action\": \"s3:GetObject\","
        " \"Resource\": \"arn:aws:s3:::bkt/*\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct koala_error *err = NULL;
        struct policy *p = policy_parse(bad[i], strlen(bad[i]), "bkt", &err);
        if (p)
            fail_msg("accepted: %s", bad[i]);
        assert_string_equal(error_code(err), "MalformedPolicy");
        error_free(err);
    }
}

static void test_deny_wins_and_principals(void **state)
{
    (void)state;
    struct policy *p = parse(
        "{\"Version\": \"2012-10-17\", \"Statement\": ["
        "{\"Effect\": \"Allow\", \"Principal\": {\"AWS\": "
        "[\"111111111111\", \"arn:aws:iam::222222222222:root\"]},"
        " \"Action\": \"s3:*\", \"Resource\": \"arn:aws:s3:::bkt/*\"},"
        "{\"Effect\": \"Deny\", \"Principal\": \"*\", \"Action\":"
        " \"s3:DeleteObject\", \"Resource\": \"arn:aws:s3:::bkt/keep/*\"},"
        "{\"Effect\": \"Allow\", \"Principal\": {\"CanonicalUser\":"
        " \"c0ffee\"}, \"Action\": \"s3:GetObject\","
        " \"Resource\": \"arn:aws:s3:::bkt/c/*\"}]}");
    assert_int_equal(eval(p, "s3:PutObject", "arn:aws:s3:::bkt/x",
                          "111111111111", NULL),
                     POLICY_ALLOW);
    assert_int_equal(eval(p, "s3:PutObject", "arn:aws:s3:::bkt/x",
                          "222222222222", NULL),
                     POLICY_ALLOW);
    assert_int_equal(eval(p, "s3:PutObject", "arn:aws:s3:::bkt/x",
                          "333333333333", NULL),
                     POLICY_NONE);
    assert_int_equal(eval(p, "s3:DeleteObject", "arn:aws:s3:::bkt/keep/a",
                          "111111111111", NULL),
                     POLICY_DENY);
    assert_int_equal(eval(p, "s3:DeleteObject", "arn:aws:s3:::bkt/keep/a",
                          NULL, NULL),
                     POLICY_DENY);
    /* the canonical user: any signed caller with that id */
    assert_int_equal(eval(p, "s3:GetObject", "arn:aws:s3:::bkt/c/1",
                          "333333333333", NULL),
                     POLICY_ALLOW);
    assert_int_equal(eval(p, "s3:GetObject", "arn:aws:s3:::bkt/c/1", NULL,
                          NULL),
                     POLICY_NONE);
    assert_false(policy_is_public(p));
    policy_free(p);
}

static void test_not_forms(void **state)
{
    (void)state;
    struct policy *p = parse(
        "{\"Statement\": [{\"Effect\": \"Allow\", \"NotPrincipal\":"
        " {\"AWS\": \"111111111111\"}, \"NotAction\": \"s3:Put*\","
        " \"NotResource\": \"arn:aws:s3:::bkt/private/*\"}]}");
    assert_int_equal(eval(p, "s3:GetObject", "arn:aws:s3:::bkt/a",
                          "222222222222", NULL),
                     POLICY_ALLOW);
    assert_int_equal(eval(p, "s3:GetObject", "arn:aws:s3:::bkt/a",
                          "111111111111", NULL),
                     POLICY_NONE);
    assert_int_equal(eval(p, "s3:PutObject", "arn:aws:s3:::bkt/a",
                          "222222222222", NULL),
                     POLICY_NONE);
    assert_int_equal(eval(p, "s3:GetObject", "arn:aws:s3:::bkt/private/a",
                          "222222222222", NULL),
                     POLICY_NONE);
    assert_true(policy_is_public(p));
    policy_free(p);
}

#define ALLOW_IF(cond)                                                         \
    "{\"Statement\": {\"Effect\": \"Allow\", \"Principal\": \"*\","           \
    " \"Action\": \"s3:*\", \"Resource\": \"arn:aws:s3:::bkt*\","             \
    " \"Condition\": " cond "}}"

static enum policy_effect with(const char *json, const char *const *keys)
{
    struct policy *p = parse(json);
    enum policy_effect e =
        eval(p, "s3:GetObject", "arn:aws:s3:::bkt/k", "111111111111", keys);
    policy_free(p);
    return e;
}

static void test_conditions(void **state)
{
    (void)state;
    const char *ip[] = {"aws:SourceIp=10.1.2.3", NULL};
    const char *ip6[] = {"aws:SourceIp=2001:db8::1", NULL};
    const char *mapped[] = {"aws:SourceIp=::ffff:10.9.9.9", NULL};
    const char *none[] = {NULL};
    assert_int_equal(
        with(ALLOW_IF("{\"IpAddress\": {\"aws:SourceIp\": \"10.0.0.0/8\"}}"),
             ip),
        POLICY_ALLOW);
    assert_int_equal(
        with(ALLOW_IF("{\"IpAddress\": {\"aws:SourceIp\": \"10.0.0.0/8\"}}"),
             mapped),
        POLICY_ALLOW);
    assert_int_equal(
        with(ALLOW_IF("{\"IpAddress\": {\"aws:SourceIp\":"
                      " [\"192.168.0.0/16\", \"2001:db8::/32\"]}}"),
             ip6),
        POLICY_ALLOW);
    assert_int_equal(
        with(ALLOW_IF("{\"NotIpAddress\": {\"aws:SourceIp\": \"10.0.0.0/8\"}}"),
             ip),
        POLICY_NONE);
    /* an absent key: false, but true for negated operators and IfExists */
    assert_int_equal(
        with(ALLOW_IF("{\"StringEquals\": {\"s3:prefix\": \"a\"}}"), none),
        POLICY_NONE);
    assert_int_equal(
        with(ALLOW_IF("{\"StringNotEquals\": {\"s3:prefix\": \"a\"}}"), none),
        POLICY_ALLOW);
    assert_int_equal(
        with(ALLOW_IF("{\"StringEqualsIfExists\": {\"s3:prefix\": \"a\"}}"),
             none),
        POLICY_ALLOW);
    assert_int_equal(
        with(ALLOW_IF("{\"Null\": {\"s3:prefix\": \"true\"}}"), none),
        POLICY_ALLOW);
    const char *pre[] = {"S3:Prefix=home/bob/x", "s3:max-keys=50",
                         "aws:CurrentTime=2030-06-01T00:00:00Z",
                         "aws:SecureTransport=true", NULL};
    assert_int_equal(
        with(ALLOW_IF("{\"StringLike\": {\"s3:prefix\": \"home/*/x\"},"
                      " \"NumericLessThan\": {\"s3:max-keys\": 100},"
                      " \"DateGreaterThan\": {\"aws:CurrentTime\":"
                      " \"2030-01-01\"}, \"Bool\": {\"aws:SecureTransport\":"
                      " true}}"),
             pre),
        POLICY_ALLOW);
    /* keys and operators are ANDed */
    assert_int_equal(
        with(ALLOW_IF("{\"StringLike\": {\"s3:prefix\": \"home/*/x\"},"
                      " \"NumericGreaterThan\": {\"s3:max-keys\": 100}}"),
             pre),
        POLICY_NONE);
    assert_int_equal(
        with(ALLOW_IF("{\"StringEqualsIgnoreCase\": {\"s3:prefix\":"
                      " \"HOME/BOB/X\"}}"),
             pre),
        POLICY_ALLOW);
    const char *tags[] = {"s3:RequestObjectTagKeys=a",
                          "s3:RequestObjectTagKeys=b", NULL};
    assert_int_equal(
        with(ALLOW_IF("{\"ForAllValues:StringEquals\":"
                      " {\"s3:RequestObjectTagKeys\": [\"a\", \"b\", \"c\"]}}"),
             tags),
        POLICY_ALLOW);
    assert_int_equal(
        with(ALLOW_IF("{\"ForAllValues:StringEquals\":"
                      " {\"s3:RequestObjectTagKeys\": [\"a\"]}}"),
             tags),
        POLICY_NONE);
    assert_int_equal(
        with(ALLOW_IF("{\"ForAnyValue:StringEquals\":"
                      " {\"s3:RequestObjectTagKeys\": [\"b\", \"z\"]}}"),
             tags),
        POLICY_ALLOW);
    assert_int_equal(
        with(ALLOW_IF("{\"ForAnyValue:StringEquals\":"
                      " {\"s3:RequestObjectTagKeys\": [\"z\"]}}"),
             tags),
        POLICY_NONE);
    /* ForAllValues over no values holds; ForAnyValue does not */
    assert_int_equal(
        with(ALLOW_IF("{\"ForAllValues:StringEquals\":"
                      " {\"s3:RequestObjectTagKeys\": [\"a\"]}}"),
             none),
        POLICY_ALLOW);
}

static void test_public(void **state)
{
    (void)state;
    struct policy *p = parse(
        ALLOW_IF("{\"IpAddress\": {\"aws:SourceIp\": \"10.0.0.0/8\"}}"));
    assert_false(policy_is_public(p));
    policy_free(p);
    p = parse(ALLOW_IF("{\"StringLike\": {\"s3:prefix\": \"a*\"}}"));
    assert_true(policy_is_public(p));
    policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_deny_wins_and_principals),
        cmocka_unit_test(test_not_forms),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_public),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
