/* test_aws_chunked.c: the aws-chunked decoder: the S3 documentation's
 * signed upload and signed-trailer upload, input split at every byte, a
 * forged chunk that must not reach the sink, the unsigned-trailer form SDKs
 * send, and broken framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws_chunked.h"
#include "buf.h"
#include "checksum.h"
#include "sigv4.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define AMZ_DATE "20130524T000000Z"
#define SCOPE "20130524/us-east-1/s3/aws4_request"
#define SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define TRAILER_SEED                                                           \
    "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"

struct sink {
    struct buf got;
    int calls;
    size_t fail_after; /* 0: never */
};

static int sink_fn(void *ctx, const char *data, size_t len,
                   struct koala_error **err)
{
    struct sink *s = ctx;
    s->calls++;
    if (s->fail_after && s->got.len + len > s->fail_after)
        return error_set(err, EFBIG, "EntityTooLarge", "too large");
    assert_int_equal(buf_append(&s->got, data, len), 0);
    return 0;
}

static unsigned char key[32];

static int setup(void **state)
{
    (void)state;
    sigv4_signing_key(SECRET, "20130524", "us-east-1", "s3", key);
    return 0;
}

static struct aws_chunked *new_dec(enum aws_chunked_mode mode, const char *seed,
                                   struct sink *s)
{
    memset(s, 0, sizeof(*s));
    struct aws_chunked *d =
        aws_chunked_new(mode, key, AMZ_DATE, SCOPE, seed, sink_fn, s);
    assert_non_null(d);
    return d;
}

/* Feeds body in pieces of `step` bytes (0: all at once), then finishes. */
static int run(struct aws_chunked *d, const char *body, size_t len, size_t step,
               struct koala_error **err)
{
    size_t off = 0;
    if (step == 0)
        step = len ? len : 1;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        if (aws_chunked_feed(d, body + off, n, err) < 0)
            return -1;
        off += n;
    }
    return aws_chunked_finish(d, err);
}

static void expect_code(struct koala_error *err, const char *code)
{
    assert_non_null(err);
    assert_string_equal(error_code(err), code);
}

/* The documentation's example: 65536 + 1024 bytes of 'a'. */
static void doc_body(struct buf *b, bool trailer, bool blank_before_trailer)
{
    memset(b, 0, sizeof(*b));
    char *a = malloc(65536);
    memset(a, 'a', 65536);
    if (!trailer) {
        buf_printf(b, "10000;chunk-signature=%s\r\n",
                   "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a6548"
                   "5a288648");
        buf_append(b, a, 65536);
        buf_printf(b, "\r\n400;chunk-signature=%s\r\n",
                   "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a5"
                   "03ef5497");
        buf_append(b, a, 1024);
        buf_printf(b, "\r\n0;chunk-signature=%s\r\n\r\n",
                   "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e27"
                   "9d449df9");
    } else {
        buf_printf(b, "10000;chunk-signature=%s\r\n",
                   "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb585"
                   "01ef5aa2");
        buf_append(b, a, 65536);
        buf_printf(b, "\r\n400;chunk-signature=%s\r\n",
                   "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8c"
                   "ae51e5c7");
        buf_append(b, a, 1024);
        buf_printf(b, "\r\n0;chunk-signature=%s\r\n%s",
                   "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f8"
                   "5863f992",
                   blank_before_trailer ? "\r\n" : "");
        buf_append_str(b, "x-amz-checksum-crc32c:sOO8/Q==\r\n"
                          "x-amz-trailer-signature:d81f82fc3505edab99d45989105"
                          "1a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n");
    }
    free(a);
}

static void assert_all_a(const struct buf *b, size_t n)
{
    assert_int_equal(b->len, n);
    for (size_t i = 0; i < n; i++)
        if (b->data[i] != 'a')
            fail_msg("byte %zu is %d", i, b->data[i]);
}

static void test_doc_signed(void **state)
{
    (void)state;
    struct buf body;
    doc_body(&body, false, false);
    assert_int_equal(body.len, 66824); /* the example's Content-Length */
    static const size_t steps[] = {0, 1, 2, 7, 64, 8192, 65536, 65537, 66000};
    for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
        struct sink s;
        struct aws_chunked *d = new_dec(AWS_CHUNKED_SIGNED, SEED, &s);
        struct koala_error *err = NULL;
        if (run(d, body.data, body.len, steps[i], &err) != 0)
            fail_msg("step %zu: %s", steps[i], error_message(err));
        assert_all_a(&s.got, 66560);
        /* Each chunk reaches the sink whole, once verified. */
        assert_int_equal(s.calls, 2);
        assert_int_equal(aws_chunked_decoded_length(d), 66560);
        assert_null(aws_chunked_trailer(d, "x-amz-checksum-crc32c"));
        aws_chunked_free(d);
        buf_free(&s.got);
    }
    buf_free(&body);
}

/* A flipped byte in a chunk: refused, and none of that chunk reaches the
 * sink (the chunks before it did: they were verified). */
static void test_doc_forged_chunk(void **state)
{
    (void)state;
    struct buf body;
    doc_body(&body, false, false);
    size_t hdr1 = strlen("10000;chunk-signature=") + 64 + 2;
    size_t chunk2 = hdr1 + 65536 + 2 + strlen("400;chunk-signature=") + 64 + 2;
    struct {
        size_t at;
        size_t delivered;
    } cases[] = {
        {hdr1, 0},              /* first byte of chunk 1 */
        {hdr1 + 65535, 0},      /* last byte of chunk 1 */
        {chunk2 + 10, 65536},   /* inside chunk 2 */
        {30, 0},                /* chunk 1's signature */
        {body.len - 10, 66560}, /* the final chunk's signature */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        for (size_t step = 0; step <= 1; step++) {
            char saved = body.data[cases[i].at];
            body.data[cases[i].at] =
                saved == 'a' ? 'b' : (saved == '0' ? '1' : '0');
            struct sink s;
            struct aws_chunked *d = new_dec(AWS_CHUNKED_SIGNED, SEED, &s);
            struct koala_error *err = NULL;
            assert_int_equal(run(d, body.data, body.len, step ? 997 : 0, &err),
                             -1);
            expect_code(err, "SignatureDoesNotMatch");
            assert_int_equal(s.got.len, cases[i].delivered);
            assert_all_a(&s.got, cases[i].delivered);
            error_clear(&err);
            /* The decoder refuses anything further. */
            assert_int_equal(aws_chunked_feed(d, "0", 1, &err), -1);
            error_clear(&err);
            assert_int_equal(aws_chunked_finish(d, &err), -1);
            error_clear(&err);
            aws_chunked_free(d);
            buf_free(&s.got);
            body.data[cases[i].at] = saved;
        }
    }
    /* Another seed (another request) does not verify either. */
    struct sink s;
    struct aws_chunked *d = new_dec(
        AWS_CHUNKED_SIGNED,
        "5f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9", &s);
    struct koala_error *err = NULL;
    assert_int_equal(run(d, body.data, body.len, 0, &err), -1);
    expect_code(err, "SignatureDoesNotMatch");
    assert_int_equal(s.got.len, 0);
    error_clear(&err);
    aws_chunked_free(d);
    buf_free(&s.got);
    buf_free(&body);
}

static void test_doc_signed_trailer(void **state)
{
    (void)state;
    for (int blank = 0; blank <= 1; blank++) {
        struct buf body;
        doc_body(&body, true, blank);
        static const size_t steps[] = {0, 1, 13, 4096};
        for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
            struct sink s;
            struct aws_chunked *d =
                new_dec(AWS_CHUNKED_SIGNED_TRAILER, TRAILER_SEED, &s);
            struct koala_error *err = NULL;
            if (run(d, body.data, body.len, steps[i], &err) != 0)
                fail_msg("blank %d step %zu: %s", blank, steps[i],
                         error_message(err));
            assert_all_a(&s.got, 66560);
            assert_string_equal(aws_chunked_trailer(d, "x-amz-checksum-crc32c"),
                                "sOO8/Q==");
            assert_string_equal(aws_chunked_trailer(d, "X-Amz-Checksum-CRC32C"),
                                "sOO8/Q==");
            assert_null(aws_chunked_trailer(d, "x-amz-trailer-signature"));
            aws_chunked_free(d);
            buf_free(&s.got);
        }
        /* Without the closing empty line the trailer is still whole. */
        struct sink s;
        struct aws_chunked *d =
            new_dec(AWS_CHUNKED_SIGNED_TRAILER, TRAILER_SEED, &s);
        struct koala_error *err = NULL;
        assert_int_equal(run(d, body.data, body.len - 2, 0, &err), 0);
        aws_chunked_free(d);
        buf_free(&s.got);
        /* A changed trailer value, a trailer without its signature. */
        char *p = strstr(body.data + 66000, "sOO8/Q==");
        p[4] = 'A';
        d = new_dec(AWS_CHUNKED_SIGNED_TRAILER, TRAILER_SEED, &s);
        assert_int_equal(run(d, body.data, body.len, 0, &err), -1);
        expect_code(err, "SignatureDoesNotMatch");
        error_clear(&err);
        aws_chunked_free(d);
        buf_free(&s.got);
        p[4] = '/';
        char *sig = strstr(body.data + 66000, "x-amz-trailer-signature");
        memcpy(sig, "x-amz-other-header-xxxx", 23);
        d = new_dec(AWS_CHUNKED_SIGNED_TRAILER, TRAILER_SEED, &s);
        assert_int_equal(run(d, body.data, body.len, 0, &err), -1);
        expect_code(err, "SignatureDoesNotMatch");
        error_clear(&err);
        aws_chunked_free(d);
        buf_free(&s.got);
        buf_free(&body);
    }
}

/* A small signed body built here, decoded with the input split at every
 * possible point (in two pieces, and in three around each chunk header). */
static void signed_body(struct buf *b, const char *seed, const char *payload,
                        const size_t *sizes, size_t n, bool trailer)
{
    memset(b, 0, sizeof(*b));
    char prev[65];
    snprintf(prev, sizeof(prev), "%s", seed);
    size_t off = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t len = i < n ? sizes[i] : 0;
        unsigned char h[32];
        char sig[65];
        checksum_sha256(payload + off, len, h);
        sigv4_chunk_signature(key, AMZ_DATE, SCOPE, prev, h, sig);
        buf_printf(b, "%zx;chunk-signature=%s\r\n", len, sig);
        buf_append(b, payload + off, len);
        if (len)
            buf_append_str(b, "\r\n");
        off += len;
        memcpy(prev, sig, 65);
    }
    if (trailer) {
        static const char t[] = "x-amz-checksum-sha256:abc=\n";
        char sig[65];
        sigv4_trailer_signature(key, AMZ_DATE, SCOPE, prev, t, strlen(t), sig);
        buf_printf(b,
                   "x-amz-checksum-sha256:abc=\r\n"
                   "x-amz-trailer-signature:%s\r\n\r\n",
                   sig);
    } else {
        buf_append_str(b, "\r\n");
    }
}

static void test_every_split(void **state)
{
    (void)state;
    char payload[300];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)('A' + i % 26);
    static const size_t sizes[] = {100, 1, 199};
    for (int trailer = 0; trailer <= 1; trailer++) {
        struct buf body;
        signed_body(&body, SEED, payload, sizes, 3, trailer);
        enum aws_chunked_mode mode =
            trailer ? AWS_CHUNKED_SIGNED_TRAILER : AWS_CHUNKED_SIGNED;
        for (size_t k = 0; k <= body.len; k++) {
            for (size_t j = k; j <= body.len; j += (j < k + 90 ? 1 : 17)) {
                struct sink s;
                struct aws_chunked *d = new_dec(mode, SEED, &s);
                struct koala_error *err = NULL;
                if (aws_chunked_feed(d, body.data, k, &err) < 0 ||
                    aws_chunked_feed(d, body.data + k, j - k, &err) < 0 ||
                    aws_chunked_feed(d, body.data + j, body.len - j, &err) <
                        0 ||
                    aws_chunked_finish(d, &err) < 0)
                    fail_msg("split %zu/%zu: %s", k, j, error_message(err));
                assert_int_equal(s.got.len, 300);
                assert_memory_equal(s.got.data, payload, 300);
                if (trailer)
                    assert_string_equal(
                        aws_chunked_trailer(d, "x-amz-checksum-sha256"),
                        "abc=");
                aws_chunked_free(d);
                buf_free(&s.got);
            }
        }
        /* Cut anywhere before the end: refused (IncompleteBody, or a
         * trailer missing its signature line). */
        size_t whole = body.len - 2; /* the last CRLF may be left out */
        for (size_t cut = 0; cut < whole; cut++) {
            struct sink s;
            struct aws_chunked *d = new_dec(mode, SEED, &s);
            struct koala_error *err = NULL;
            if (run(d, body.data, cut, 0, &err) != -1)
                fail_msg("cut at %zu accepted", cut);
            assert_non_null(err);
            error_clear(&err);
            aws_chunked_free(d);
            buf_free(&s.got);
        }
        buf_free(&body);
    }
}

static void test_unsigned_trailer(void **state)
{
    (void)state;
    char crc[32];
    {
        struct checksum *c = checksum_new(CHECKSUM_CRC32);
        checksum_update(c, "hello world", 11);
        unsigned char d[CHECKSUM_MAX_LEN];
        checksum_final(c, d);
        checksum_free(c);
        char *b64 = str_base64_encode(d, 4);
        snprintf(crc, sizeof(crc), "%s", b64);
        free(b64);
    }
    char body[256];
    /* As aws-cli / boto3 send it; chunk extensions ignored; a chunk-signature
     * extension means nothing here. */
    snprintf(body, sizeof(body),
             "6\r\nhello \r\n5;foo=bar;chunk-signature=00\r\nworld\r\n"
             "0\r\nx-amz-checksum-crc32:%s\r\n\r\n",
             crc);
    for (size_t step = 0; step <= 3; step++) {
        struct sink s;
        memset(&s, 0, sizeof(s));
        struct aws_chunked *d = aws_chunked_new(
            AWS_CHUNKED_UNSIGNED_TRAILER, NULL, NULL, NULL, NULL, sink_fn, &s);
        assert_non_null(d);
        struct koala_error *err = NULL;
        assert_int_equal(run(d, body, strlen(body), step, &err), 0);
        assert_int_equal(s.got.len, 11);
        assert_memory_equal(s.got.data, "hello world", 11);
        assert_string_equal(aws_chunked_trailer(d, "x-amz-checksum-crc32"),
                            crc);
        assert_int_equal(aws_chunked_decoded_length(d), 11);
        /* unsigned: bytes go through as they arrive */
        if (step == 1)
            assert_int_equal(s.calls, 11);
        aws_chunked_free(d);
        buf_free(&s.got);
    }
    /* An empty body with only the trailer; upper-case hex; no trailer; a
     * trailer signature line is ignored. */
    static const char *const ok[] = {
        "0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
        "A\r\n0123456789\r\n0\r\n\r\n",
        "0\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:"
        "zz\r\n\r\n",
        "0\nx-amz-checksum-crc32 : AAAAAA== \n\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        struct sink s;
        memset(&s, 0, sizeof(s));
        struct aws_chunked *d = aws_chunked_new(
            AWS_CHUNKED_UNSIGNED_TRAILER, NULL, NULL, NULL, NULL, sink_fn, &s);
        struct koala_error *err = NULL;
        if (run(d, ok[i], strlen(ok[i]), 0, &err) != 0)
            fail_msg("%zu: %s", i, error_message(err));
        if (i != 1)
            assert_string_equal(aws_chunked_trailer(d, "x-amz-checksum-crc32"),
                                "AAAAAA==");
        aws_chunked_free(d);
        buf_free(&s.got);
    }
}

static void expect_fail(enum aws_chunked_mode mode, const char *body,
                        const char *code)
{
    struct sink s;
    struct aws_chunked *d =
        mode == AWS_CHUNKED_UNSIGNED_TRAILER
            ? aws_chunked_new(mode, NULL, NULL, NULL, NULL, sink_fn, &s)
            : new_dec(mode, SEED, &s);
    memset(&s, 0, sizeof(s));
    struct koala_error *err = NULL;
    if (run(d, body, strlen(body), 0, &err) != -1)
        fail_msg("accepted: %s", body);
    if (strcmp(error_code(err), code) != 0)
        fail_msg("%s: %s (%s)", body, error_code(err), error_message(err));
    error_free(err);
    aws_chunked_free(d);
    buf_free(&s.got);
}

static void test_bad_framing(void **state)
{
    (void)state;
    const enum aws_chunked_mode u = AWS_CHUNKED_UNSIGNED_TRAILER;
    expect_fail(u, "zz\r\nhello\r\n0\r\n\r\n", "InvalidRequest");
    expect_fail(u, "\r\n", "InvalidRequest");
    expect_fail(u, "5x\r\nhello\r\n0\r\n\r\n", "InvalidRequest");
    expect_fail(u, "12345678901234567\r\n", "InvalidRequest");
    expect_fail(u, "5\r\nhelloX\r\n0\r\n\r\n", "InvalidRequest");
    expect_fail(u, "5\r\nhello\rX0\r\n\r\n", "InvalidRequest");
    expect_fail(u, "5\r\nhello\r\n0\r\nno-colon\r\n\r\n", "InvalidRequest");
    expect_fail(u, "5\r\nhello\r\n0\r\n\r\nextra\r\n", "InvalidRequest");
    expect_fail(u, "0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\nextra",
                "InvalidRequest");
    /* truncated */
    expect_fail(u, "", "IncompleteBody");
    expect_fail(u, "5\r\nhel", "IncompleteBody");
    expect_fail(u, "5\r\nhello", "IncompleteBody");
    expect_fail(u, "5\r\nhello\r\n", "IncompleteBody");
    expect_fail(u, "5\r\nhello\r\n0", "IncompleteBody");
    expect_fail(u, "5\r\nhello\r\n0\r\n", "IncompleteBody");
    expect_fail(u, "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AA",
                "IncompleteBody");
    /* an endless chunk header or trailer */
    char *big = malloc(20000);
    memset(big, '0', 19999);
    big[19999] = '\0';
    expect_fail(u, big, "InvalidRequest");
    memcpy(big, "0\r\n", 3);
    memset(big + 3, 'x', 19996);
    expect_fail(u, big, "InvalidRequest");
    free(big);
    /* signed: no signature, a short one, a huge chunk, a trailer */
    const enum aws_chunked_mode s = AWS_CHUNKED_SIGNED;
    expect_fail(s, "5\r\nhello\r\n", "SignatureDoesNotMatch");
    expect_fail(s, "5;chunk-signature=abc\r\nhello\r\n",
                "SignatureDoesNotMatch");
    expect_fail(s,
                "1000001;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e9"
                "9e0e2307b0ade35a65485a288648\r\n",
                "InvalidRequest");
    /* a trailer in the mode that has none (after a valid final chunk) */
    char prev_final[65];
    unsigned char h[32];
    checksum_sha256("", 0, h);
    sigv4_chunk_signature(key, AMZ_DATE, SCOPE, SEED, h, prev_final);
    char body[256];
    snprintf(body, sizeof(body),
             "0;chunk-signature=%s\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
             prev_final);
    expect_fail(s, body, "InvalidRequest");
    snprintf(body, sizeof(body), "0;chunk-signature=%s\r\n\r\n", prev_final);
    struct sink sk;
    struct aws_chunked *d = new_dec(s, SEED, &sk);
    struct koala_error *err = NULL;
    assert_int_equal(run(d, body, strlen(body), 0, &err), 0);
    assert_int_equal(sk.got.len, 0);
    /* stray line ends after the end are tolerated, finish is idempotent */
    assert_int_equal(aws_chunked_feed(d, "\r\n", 2, &err), 0);
    assert_int_equal(aws_chunked_finish(d, &err), 0);
    aws_chunked_free(d);
    /* signed-trailer: a trailer without signature */
    snprintf(body, sizeof(body),
             "0;chunk-signature=%s\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
             prev_final);
    expect_fail(AWS_CHUNKED_SIGNED_TRAILER, body, "SignatureDoesNotMatch");
}

static void test_sink_error_and_args(void **state)
{
    (void)state;
    struct sink s;
    memset(&s, 0, sizeof(s));
    s.fail_after = 4;
    struct aws_chunked *d = aws_chunked_new(AWS_CHUNKED_UNSIGNED_TRAILER, NULL,
                                            NULL, NULL, NULL, sink_fn, &s);
    struct koala_error *err = NULL;
    static const char body[] = "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    assert_int_equal(run(d, body, strlen(body), 0, &err), -1);
    expect_code(err, "EntityTooLarge");
    assert_int_equal(aws_chunked_decoded_length(d), 3);
    error_clear(&err);
    aws_chunked_free(d);
    buf_free(&s.got);
    /* Signed modes need their key material. */
    assert_null(aws_chunked_new(AWS_CHUNKED_SIGNED, NULL, AMZ_DATE, SCOPE, SEED,
                                sink_fn, &s));
    assert_null(aws_chunked_new(AWS_CHUNKED_SIGNED, key, AMZ_DATE, SCOPE,
                                "short", sink_fn, &s));
    assert_null(aws_chunked_new(AWS_CHUNKED_UNSIGNED_TRAILER, NULL, NULL, NULL,
                                NULL, NULL, &s));
    aws_chunked_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_signed),
        cmocka_unit_test(test_doc_forged_chunk),
        cmocka_unit_test(test_doc_signed_trailer),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_unsigned_trailer),
        cmocka_unit_test(test_bad_framing),
        cmocka_unit_test(test_sink_error_and_args),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
