/* test_sigv2.c: S3 Signature Version 2: the examples of the S3 developer
 * guide (AKIAIOSFODNN7EXAMPLE, bucket johnsmith), the presigned form, the
 * sub-resources and x-amz-* headers of the canonical form, and what a
 * server refuses: tampering, skew, expiry, malformed credentials. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "sigv2.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

struct hdr {
    const char *name;
    const char *value;
};

#define MAX_HDRS 24

struct treq {
    struct hdr h[MAX_HDRS];
    int n;
    char ring[64][1024];
    int used;
};

static const char *lookup(void *ctx, const char *lname)
{
    struct treq *t = ctx;
    char *out = t->ring[t->used++ % 64];
    bool found = false;
    out[0] = '\0';
    for (int i = 0; i < t->n; i++) {
        if (strcasecmp(t->h[i].name, lname) != 0)
            continue;
        if (found)
            strcat(out, ",");
        strcat(out, t->h[i].value);
        found = true;
    }
    return found ? out : NULL;
}

static void foreach (void *ctx,
                     int (*fn)(void *fn_ctx, const char *name,
                               const char *value),
                     void *fn_ctx)
{
    struct treq *t = ctx;
    for (int i = 0; i < t->n; i++)
        if (fn(fn_ctx, t->h[i].name, t->h[i].value) != 0)
            return;
}

static void add_hdr(struct treq *t, const char *name, const char *value)
{
    assert_true(t->n < MAX_HDRS);
    t->h[t->n].name = name;
    t->h[t->n].value = value;
    t->n++;
}

static struct sigv4_request make_req(struct treq *t, const char *method,
                                     const char *path, const char *query)
{
    struct sigv4_request r = {
        .method = method,
        .raw_path = path,
        .raw_query = query ? query : "",
        .header = lookup,
        .header_ctx = t,
        .header_foreach = foreach,
    };
    return r;
}

static void expect_code(struct koala_error *err, const char *code)
{
    assert_non_null(err);
    assert_string_equal(error_code(err), code);
}

static time_t when(const char *http_date)
{
    time_t t;
    assert_int_equal(time_parse(http_date, &t), 0);
    return t;
}

/* Parses and verifies; returns what verify (or parse) returned. */
static int check(struct sigv4_request *r, const char *prefix, time_t now,
                 struct koala_error **err)
{
    struct sigv2_auth a;
    int rc = sigv2_parse(r, &a, err);
    if (rc == 1) {
        rc = sigv2_verify(r, &a, prefix, SECRET, now, err);
        sigv2_auth_clear(&a);
    }
    return rc;
}

/* ---- the developer guide's examples ---- */

static void test_object_get(void **state)
{
    (void)state;
    struct treq *t = calloc(1, sizeof(*t));
    static const char date[] = "Tue, 27 Mar 2007 19:36:42 +0000";
    add_hdr(t, "Host", "johnsmith.s3.amazonaws.com");
    add_hdr(t, "Date", date);
    add_hdr(t, "Authorization", "AWS " AK ":bWq2s1WEIj+Ydj0vQ697zp+IXMU=");
    struct sigv4_request r = make_req(t, "GET", "/photos/puppy.jpg", "");
    char *sts = sigv2_string_to_sign(&r, "/johnsmith", date);
    assert_string_equal(sts, "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n"
                             "/johnsmith/photos/puppy.jpg");
    char *sig = sigv2_sign(SECRET, sts);
    assert_string_equal(sig, "bWq2s1WEIj+Ydj0vQ697zp+IXMU=");
    free(sig);
    free(sts);

    struct sigv2_auth a;
    struct koala_error *err = NULL;
    assert_int_equal(sigv2_parse(&r, &a, &err), 1);
    assert_false(a.presigned);
    assert_string_equal(a.access_key, AK);
    assert_string_equal(a.signature, "bWq2s1WEIj+Ydj0vQ697zp+IXMU=");
    assert_int_equal(
        sigv2_verify(&r, &a, "/johnsmith", SECRET, when(date) + 60, &err), 0);
    /* The same request path-style. */
    r.raw_path = "/johnsmith/photos/puppy.jpg";
    assert_int_equal(sigv2_verify(&r, &a, NULL, SECRET, when(date), &err), 0);
    /* Skew. */
    assert_int_equal(
        sigv2_verify(&r, &a, NULL, SECRET, when(date) + 16 * 60, &err), -1);
    expect_code(err, "RequestTimeTooSkewed");
    error_clear(&err);
    assert_int_equal(
        sigv2_verify(&r, &a, NULL, SECRET, when(date) - 16 * 60, &err), -1);
    expect_code(err, "RequestTimeTooSkewed");
    error_clear(&err);
    /* Tampered path, wrong secret. */
    r.raw_path = "/johnsmith/photos/kitten.jpg";
    assert_int_equal(sigv2_verify(&r, &a, NULL, SECRET, when(date), &err), -1);
    expect_code(err, "SignatureDoesNotMatch");
    error_clear(&err);
    r.raw_path = "/johnsmith/photos/puppy.jpg";
    assert_int_equal(sigv2_verify(&r, &a, NULL, "other", when(date), &err), -1);
    expect_code(err, "SignatureDoesNotMatch");
    error_clear(&err);
    sigv2_auth_clear(&a);
    free(t);
}

static void test_object_put(void **state)
{
    (void)state;
    struct treq *t = calloc(1, sizeof(*t));
    static const char date[] = "Tue, 27 Mar 2007 21:15:45 +0000";
    add_hdr(t, "Host", "johnsmith.s3.amazonaws.com");
    add_hdr(t, "Content-Type", "image/jpeg");
    add_hdr(t, "Content-Length", "94328");
    add_hdr(t, "Date", date);
    add_hdr(t, "Authorization", "AWS " AK ":MyyxeRY7whkBe+bq8fHCL/2kKUg=");
    struct sigv4_request r = make_req(t, "PUT", "/photos/puppy.jpg", "");
    struct koala_error *err = NULL;
    assert_int_equal(check(&r, "/johnsmith", when(date), &err), 0);
    /* Another content type is another signature. */
    t->h[1].value = "image/png";
    assert_int_equal(check(&r, "/johnsmith", when(date), &err), -1);
    expect_code(err, "SignatureDoesNotMatch");
    error_clear(&err);
    free(t);
}

static void test_list_and_acl(void **state)
{
    (void)state;
    struct treq *t = calloc(1, sizeof(*t));
    struct koala_error *err = NULL;
    static const char d1[] = "Tue, 27 Mar 2007 19:42:41 +0000";
    add_hdr(t, "Host", "johnsmith.s3.amazonaws.com");
    add_hdr(t, "Date", d1);
    add_hdr(t, "Authorization", "AWS " AK ":htDYFYduRNen8P9ZfE/s9SuKy0U=");
    /* Query parameters that are not sub-resources are not signed. */
    struct sigv4_request r =
        make_req(t, "GET", "/", "prefix=photos&max-keys=50&marker=puppy");
    assert_int_equal(check(&r, "/johnsmith", when(d1), &err), 0);

    static const char d2[] = "Tue, 27 Mar 2007 19:44:46 +0000";
    memset(t, 0, sizeof(*t));
    add_hdr(t, "Host", "johnsmith.s3.amazonaws.com");
    add_hdr(t, "Date", d2);
    add_hdr(t, "Authorization", "AWS " AK ":c2WLPFtWHVgbEmeEG93a4cG37dM=");
    r = make_req(t, "GET", "/", "acl");
    char *sts = sigv2_string_to_sign(&r, "/johnsmith", d2);
    assert_string_equal(sts, "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n"
                             "/johnsmith/?acl");
    free(sts);
    assert_int_equal(check(&r, "/johnsmith", when(d2), &err), 0);
    /* The sub-resource is signed. */
    r = make_req(t, "GET", "/", "policy");
    assert_int_equal(check(&r, "/johnsmith", when(d2), &err), -1);
    expect_code(err, "SignatureDoesNotMatch");
    error_clear(&err);
    free(t);
}

/* The "Upload" example: x-amz-* headers lower-cased, sorted, repeated ones
 * joined, and a bucket named like a host (virtual host by CNAME). */
static void test_upload_amz_headers(void **state)
{
    (void)state;
    struct treq *t = calloc(1, sizeof(*t));
    static const char date[] = "Tue, 27 Mar 2007 21:06:08 +0000";
    add_hdr(t, "User-Agent", "curl/7.15.5");
    add_hdr(t, "Host", "static.johnsmith.net:8080");
    add_hdr(t, "Date", date);
    add_hdr(t, "x-amz-acl", "public-read");
    add_hdr(t, "content-type", "application/x-download");
    add_hdr(t, "Content-MD5", "4gJE4saaMU4BqNR0kLY+lw==");
    add_hdr(t, "X-Amz-Meta-ReviewedBy", "joe@johnsmith.net");
    add_hdr(t, "X-Amz-Meta-ReviewedBy", "jane@johnsmith.net");
    add_hdr(t, "X-Amz-Meta-FileChecksum", "0x02661779");
    add_hdr(t, "X-Amz-Meta-ChecksumAlgorithm", "crc32");
    add_hdr(t, "Content-Disposition", "attachment; filename=database.dat");
    add_hdr(t, "Content-Encoding", "gzip");
    add_hdr(t, "Content-Length", "5913339");
    add_hdr(t, "Authorization", "AWS " AK ":ilyl83RwaSoYIEdixDQcA4OnAnc=");
    struct sigv4_request r = make_req(t, "PUT", "/db-backup.dat.gz", "");
    char *sts = sigv2_string_to_sign(&r, "/static.johnsmith.net", date);
    assert_string_equal(
        sts, "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\n"
             "Tue, 27 Mar 2007 21:06:08 +0000\n"
             "x-amz-acl:public-read\n"
             "x-amz-meta-checksumalgorithm:crc32\n"
             "x-amz-meta-filechecksum:0x02661779\n"
             "x-amz-meta-reviewedby:joe@johnsmith.net,"
             "jane@johnsmith.net\n"
             "/static.johnsmith.net/db-backup.dat.gz");
    free(sts);
    struct koala_error *err = NULL;
    assert_int_equal(check(&r, "/static.johnsmith.net", when(date), &err), 0);
    /* Without a way to list the headers the x-amz-meta-* ones are lost. */
    r.header_foreach = NULL;
    assert_int_equal(check(&r, "/static.johnsmith.net", when(date), &err), -1);
    expect_code(err, "SignatureDoesNotMatch");
    error_clear(&err);
    free(t);
}

/* x-amz-date replaces Date: the Date line is empty and x-amz-date signed
 * among the x-amz-* headers (as boto and s3cmd sign). */
static void test_amz_date(void **state)
{
    (void)state;
    struct treq *t = calloc(1, sizeof(*t));
    static const char amz[] = "Tue, 27 Mar 2007 21:20:26 +0000";
    add_hdr(t, "Host", "s3.amazonaws.com");
    add_hdr(t, "Date", "Tue, 27 Mar 2007 21:20:27 +0000");
    add_hdr(t, "x-amz-date", amz);
    add_hdr(t, "X-Amz-Copy-Source", "  /b/other   key ");
    struct sigv4_request r =
        make_req(t, "DELETE", "/johnsmith/photos/puppy.jpg", "");
    char *sts = sigv2_string_to_sign(&r, NULL, "");
    assert_string_equal(sts, "DELETE\n\n\n\n"
                             "x-amz-copy-source:/b/other key\n"
                             "x-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n"
                             "/johnsmith/photos/puppy.jpg");
    char *sig = sigv2_sign(SECRET, sts);
    char authz[128];
    snprintf(authz, sizeof(authz), "AWS %s:%s", AK, sig);
    add_hdr(t, "Authorization", authz);
    struct koala_error *err = NULL;
    assert_int_equal(check(&r, NULL, when(amz) + 600, &err), 0);
    /* The time checked is x-amz-date's. */
    t->h[1].value = "Tue, 27 Mar 2007 23:00:00 +0000";
    assert_int_equal(check(&r, NULL, when(amz), &err), 0);
    assert_int_equal(check(&r, NULL, when(amz) + 3600, &err), -1);
    expect_code(err, "RequestTimeTooSkewed");
    error_clear(&err);
    free(sig);
    free(sts);
    free(t);
}

static void test_presigned(void **state)
{
    (void)state;
    struct treq *t = calloc(1, sizeof(*t));
    add_hdr(t, "Host", "johnsmith.s3.amazonaws.com");
    struct sigv4_request r =
        make_req(t, "GET", "/photos/puppy.jpg",
                 "AWSAccessKeyId=" AK "&Expires=1175139620"
                 "&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D");
    struct sigv2_auth a;
    struct koala_error *err = NULL;
    assert_int_equal(sigv2_parse(&r, &a, &err), 1);
    assert_true(a.presigned);
    assert_string_equal(a.access_key, AK);
    assert_string_equal(a.signature, "NpgCjnDzrM+WFzoENXmpNDUsSn8=");
    assert_int_equal(a.expires, 1175139620);
    assert_int_equal(
        sigv2_verify(&r, &a, "/johnsmith", SECRET, 1175139620 - 3600, &err), 0);
    assert_int_equal(
        sigv2_verify(&r, &a, "/johnsmith", SECRET, 1175139620, &err), 0);
    assert_int_equal(
        sigv2_verify(&r, &a, "/johnsmith", SECRET, 1175139621, &err), -1);
    expect_code(err, "AccessDenied");
    assert_string_equal(error_message(err), "Request has expired");
    error_clear(&err);
    sigv2_auth_clear(&a);
    /* A '+' left unescaped in the signature still works. */
    r.raw_query = "AWSAccessKeyId=" AK "&Expires=1175139620"
                  "&Signature=NpgCjnDzrM+WFzoENXmpNDUsSn8%3D";
    assert_int_equal(check(&r, "/johnsmith", 1175139620, &err), 0);
    /* Another expiry breaks the signature. */
    r.raw_query = "AWSAccessKeyId=" AK "&Expires=1175139621"
                  "&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D";
    assert_int_equal(check(&r, "/johnsmith", 1175139620, &err), -1);
    expect_code(err, "SignatureDoesNotMatch");
    error_clear(&err);
    free(t);
}

static void test_sub_resources(void **state)
{
    (void)state;
    struct treq *t = calloc(1, sizeof(*t));
    struct sigv4_request r = make_req(
        t, "GET", "/b/k%20x",
        "uploadId=abc%2Fd&partNumber=2&foo=bar&response-content-disposition="
        "attachment%3B%20filename%3D%22a%20b%22&versionId=v+1&prefix=p");
    char *sts = sigv2_string_to_sign(&r, "", "1");
    assert_string_equal(sts, "GET\n\n\n1\n/b/k%20x?partNumber=2"
                             "&response-content-disposition=attachment; "
                             "filename=\"a b\"&uploadId=abc/d&versionId=v+1");
    free(sts);
    /* A bare sub-resource stays bare, "uploads=" keeps its '='. */
    r = make_req(t, "POST", "/b/k", "uploads");
    sts = sigv2_string_to_sign(&r, NULL, "1");
    assert_string_equal(sts, "POST\n\n\n1\n/b/k?uploads");
    free(sts);
    r = make_req(t, "POST", "/b/k", "uploads=&x=1");
    sts = sigv2_string_to_sign(&r, NULL, "1");
    assert_string_equal(sts, "POST\n\n\n1\n/b/k?uploads=");
    free(sts);
    r = make_req(t, "POST", "/b", "delete");
    sts = sigv2_string_to_sign(&r, "", "1");
    assert_string_equal(sts, "POST\n\n\n1\n/b?delete");
    free(sts);
    r = make_req(t, "GET", "", "");
    sts = sigv2_string_to_sign(&r, "", "1");
    assert_string_equal(sts, "GET\n\n\n1\n/");
    free(sts);
    r = make_req(t, "GET", "/", "versioning&tagging&acl");
    sts = sigv2_string_to_sign(&r, "/bucket", "1");
    assert_string_equal(sts, "GET\n\n\n1\n/bucket/?acl&tagging&versioning");
    free(sts);
    free(t);
}

static void test_malformed(void **state)
{
    (void)state;
    struct treq *t = calloc(1, sizeof(*t));
    struct sigv2_auth a;
    struct koala_error *err = NULL;
    struct sigv4_request r = make_req(t, "GET", "/b/k", "");
    /* Nothing to find: anonymous. */
    assert_int_equal(sigv2_parse(&r, &a, &err), 0);
    assert_null(err);
    static const char *const bad_header[] = {"AWS nocolon", "AWS :sig",
                                             "AWS AKID:", "AWS "};
    for (size_t i = 0; i < ARRAY_SIZE(bad_header); i++) {
        memset(t, 0, sizeof(*t));
        add_hdr(t, "Authorization", bad_header[i]);
        assert_int_equal(sigv2_parse(&r, &a, &err), -1);
        expect_code(err, "InvalidArgument");
        error_clear(&err);
    }
    memset(t, 0, sizeof(*t));
    add_hdr(t, "Authorization", "Bearer abc");
    assert_int_equal(sigv2_parse(&r, &a, &err), -1);
    expect_code(err, "InvalidArgument");
    error_clear(&err);

    memset(t, 0, sizeof(*t));
    static const char *const bad_query[] = {
        "AWSAccessKeyId=AK&Signature=x",
        "AWSAccessKeyId=AK&Expires=10",
        "Signature=x&Expires=10",
        "AWSAccessKeyId=AK&Expires=soon&Signature=x",
        "AWSAccessKeyId=AK&Expires=10&Signature=%zz",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_query); i++) {
        r.raw_query = bad_query[i];
        if (sigv2_parse(&r, &a, &err) != -1)
            fail_msg("accepted %s", bad_query[i]);
        expect_code(err, "AccessDenied");
        error_clear(&err);
    }
    /* Header auth without any date. */
    r.raw_query = "";
    add_hdr(t, "Authorization", "AWS AK:c2lnbmF0dXJl");
    assert_int_equal(check(&r, NULL, 1000, &err), -1);
    expect_code(err, "AccessDenied");
    error_clear(&err);
    add_hdr(t, "Date", "yesterday");
    assert_int_equal(check(&r, NULL, 1000, &err), -1);
    expect_code(err, "AccessDenied");
    error_clear(&err);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object_get),
        cmocka_unit_test(test_object_put),
        cmocka_unit_test(test_list_and_acl),
        cmocka_unit_test(test_upload_amz_headers),
        cmocka_unit_test(test_amz_date),
        cmocka_unit_test(test_presigned),
        cmocka_unit_test(test_sub_resources),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
