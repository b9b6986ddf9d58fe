/* policy.h: the bucket policy language (policy.c), apart from requests:
 * what authz.c and the policy unit tests use. */
#ifndef KOALA_WALRUS_POLICY_H
#define KOALA_WALRUS_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

struct policy; /* a checked document */

enum policy_effect { POLICY_NONE, POLICY_ALLOW, POLICY_DENY };

/* The request's values of one condition key (none: absent). */
struct policy_values {
    char **v;
    size_t n;
};
void policy_values_clear(struct policy_values *v);
int policy_values_add(struct policy_values *v, const char *s);

struct policy_request {
    const char *action;   /* "s3:GetObject" */
    const char *resource; /* "arn:aws:s3:::bucket/key" */
    bool anonymous;
    const char *account;      /* 12 digits */
    const char *canonical_id; /* S3 canonical user id */
    /* PublicAccessBlock's RestrictPublicBuckets, and whose bucket it is. */
    bool restrict_public;
    const char *owner_account;
    /* Fills *out with the values of a condition key (names as written in
     * the policy; compare them without case). */
    void (*lookup)(void *ctx, const char *key, struct policy_values *out);
    void *ctx;
};

/* Checks a document for this bucket: MalformedPolicy when it is not one. */
struct policy *policy_parse(const char *text, size_t len, const char *bucket,
                            struct koala_error **err);
/* Documents are reference counted (thread-safe: jansson's atomic counts;
 * evaluation only reads): policy_ref takes one, policy_free drops one. */
struct policy *policy_ref(struct policy *p);
void policy_free(struct policy *p);
enum policy_effect policy_evaluate(const struct policy *policy,
                                   const struct policy_request *pr);
/* Does it grant anything to everyone (Principal "*" without a condition
 * that ties it to known callers)? */
bool policy_is_public(const struct policy *policy);
bool policy_statement_public(const void *statement);
/* '*' any run of characters, '?' one. */
bool policy_glob(const char *pattern, const char *s, bool nocase);

#endif
