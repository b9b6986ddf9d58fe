/* test_buf.c: growable buffers and the string helpers: percent-encoding,
 * hex, base64, prefixes, number parsing, trimming, UTF-8 validation, sizes
 * and the AWS time formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"

static void test_buf_growth(void **s)
{
    struct buf b = {0};
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_non_null(b.data); /* always NUL terminated once used */
    assert_string_equal(b.data, "");
    for (int i = 0; i < 10000; i++)
        assert_int_equal(buf_append_char(&b, (char)('a' + i % 26)), 0);
    assert_int_equal(b.len, 10000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(b.data[9999], 'a' + 9999 % 26);
    size_t cap = b.cap;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap); /* memory kept */
    assert_string_equal(b.data, "");
    assert_int_equal(buf_append_str(&b, "x="), 0);
    assert_int_equal(buf_printf(&b, "%d-%s-%05.1f", 42, "y", 2.5), 0);
    assert_string_equal(b.data, "x=42-y-002.5");
    /* Binary data with NULs. */
    assert_int_equal(buf_append(&b, "\0\1", 2), 0);
    assert_int_equal(b.len, 14);
    /* A long printf grows in one go. */
    char big[5000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "%s!", big), 0);
    assert_int_equal(b.len, 14 + 5000);
    assert_int_equal(b.data[b.len - 1], '!');
    /* Impossible sizes fail and leave the buffer alone. */
    size_t len = b.len;
    assert_int_equal(buf_reserve(&b, SIZE_MAX), -1);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - len), -1);
    assert_int_equal(b.len, len);
    char *stolen = buf_steal(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(stolen[len - 1], '!');
    free(stolen);
    /* Stealing an empty buffer gives an empty string. */
    stolen = buf_steal(&b);
    assert_string_equal(stolen, "");
    free(stolen);
    buf_free(&b);
    buf_free(&b);
    buf_reset(&b); /* on an unused buffer */
    assert_int_equal(b.len, 0);
}

static void test_cleanup_attrs(void **s)
{
    _cleanup_free_ char *p = strdup("x");
    _cleanup_buf_ struct buf b = {0};
    _cleanup_close_ int fd = -1;
    buf_append_str(&b, "y");
    assert_non_null(p);
    int three[3];
    assert_int_equal(ARRAY_SIZE(three), 3);
    fd = dup(0); /* closed by the attribute */
    assert_true(fd >= 0);
}

static char *enc(const char *in, size_t len, bool keep_slash)
{
    struct buf b = {0};
    assert_int_equal(str_uri_encode(&b, in, len, keep_slash), 0);
    return buf_steal(&b);
}

static void test_uri_encode(void **s)
{
    _cleanup_free_ char *a = enc("AZaz09-_.~", 10, false);
    assert_string_equal(a, "AZaz09-_.~");
    _cleanup_free_ char *b = enc("a b/c+d=e&f*", 12, false);
    assert_string_equal(b, "a%20b%2Fc%2Bd%3De%26f%2A");
    _cleanup_free_ char *c = enc("a b/c", 5, true);
    assert_string_equal(c, "a%20b/c");
    _cleanup_free_ char *d = enc("\xc3\xa9\x00\xff", 4, false);
    assert_string_equal(d, "%C3%A9%00%FF");
    _cleanup_free_ char *e = enc("", 0, false);
    assert_string_equal(e, "");
    /* Appends to what is there. */
    struct buf buf = {0};
    buf_append_str(&buf, "k=");
    str_uri_encode(&buf, "v w", 3, false);
    assert_string_equal(buf.data, "k=v%20w");
    buf_free(&buf);
}

static void test_uri_decode(void **s)
{
    _cleanup_free_ char *a = str_uri_decode("a%20b%2fc%2F", 12, false);
    assert_string_equal(a, "a b/c/");
    _cleanup_free_ char *b = str_uri_decode("a+b%2B", 6, true);
    assert_string_equal(b, "a b+");
    _cleanup_free_ char *c = str_uri_decode("a+b", 3, false);
    assert_string_equal(c, "a+b");
    _cleanup_free_ char *d = str_uri_decode("%C3%A9", 6, false);
    assert_string_equal(d, "\xc3\xa9");
    _cleanup_free_ char *e = str_uri_decode("", 0, false);
    assert_string_equal(e, "");
    /* Only len bytes are looked at. */
    _cleanup_free_ char *f = str_uri_decode("ab%41zzz", 5, false);
    assert_string_equal(f, "abA");
    /* Malformed escapes. */
    assert_null(str_uri_decode("%", 1, false));
    assert_null(str_uri_decode("%4", 2, false));
    assert_null(str_uri_decode("a%4", 3, false));
    assert_null(str_uri_decode("%4G", 3, false));
    assert_null(str_uri_decode("%G4", 3, false));
    assert_null(str_uri_decode("%%41", 4, false));
    assert_null(str_uri_decode("ab%41", 4, false)); /* cut by len */
    /* A decoded NUL would truncate a C string. */
    assert_null(str_uri_decode("a%00b", 5, false));
    /* Round trip of every byte but NUL. */
    char all[255];
    for (int i = 0; i < 255; i++)
        all[i] = (char)(i + 1);
    _cleanup_free_ char *x = enc(all, sizeof(all), false);
    _cleanup_free_ char *y = str_uri_decode(x, strlen(x), false);
    assert_int_equal(strlen(y), 255);
    assert_memory_equal(y, all, 255);
}

static void test_hex(void **s)
{
    char out[9];
    str_hex((const unsigned char *)"\x00\x1f\xa0\xff", 4, out);
    assert_string_equal(out, "001fa0ff");
    char empty[1] = {'x'};
    str_hex(NULL, 0, empty);
    assert_string_equal(empty, "");
}

static void b64_round_trip(const char *in, size_t len, const char *want)
{
    _cleanup_free_ char *e = str_base64_encode((const unsigned char *)in, len);
    assert_string_equal(e, want);
    size_t n = 99;
    _cleanup_free_ unsigned char *d = str_base64_decode(e, &n);
    assert_non_null(d);
    assert_int_equal(n, len);
    assert_memory_equal(d, in, len);
}

static void test_base64(void **s)
{
    /* RFC 4648 test vectors. */
    b64_round_trip("", 0, "");
    b64_round_trip("f", 1, "Zg==");
    b64_round_trip("fo", 2, "Zm8=");
    b64_round_trip("foo", 3, "Zm9v");
    b64_round_trip("foob", 4, "Zm9vYg==");
    b64_round_trip("fooba", 5, "Zm9vYmE=");
    b64_round_trip("foobar", 6, "Zm9vYmFy");
    b64_round_trip("\x00\xff\xfe\x00", 4, "AP/+AA==");
    /* Every byte value. */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    _cleanup_free_ char *e = str_base64_encode(all, sizeof(all));
    size_t n = 0;
    _cleanup_free_ unsigned char *d = str_base64_decode(e, &n);
    assert_int_equal(n, 256);
    assert_memory_equal(d, all, 256);
}

static void test_base64_invalid(void **s)
{
    static const char *const bad[] = {
        "Zg", /* not a multiple of 4 */
        "Zg=",        "Zm9vY", "====",      "Z===",
        "Zg=a",       "=Zg=",  "Zm9v Zg==",             /* white space */
        "Zm9v\nZg==", "Zm9-",  "Zm9_",      "Zg==Zg==", /* padding inside */
        "Zm9vYmFy=",  "Zm*v",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        size_t n = 0;
        unsigned char *d = str_base64_decode(bad[i], &n);
        if (d != NULL)
            fail_msg("'%s' decoded", bad[i]);
    }
}

static void test_prefixes(void **s)
{
    assert_true(str_has_prefix("x-amz-date", "x-amz-"));
    assert_true(str_has_prefix("abc", ""));
    assert_true(str_has_prefix("abc", "abc"));
    assert_false(str_has_prefix("ab", "abc"));
    assert_false(str_has_prefix("X-Amz-Date", "x-amz-"));
    assert_true(str_has_prefix_nocase("X-Amz-Date", "x-amz-"));
    assert_false(str_has_prefix_nocase("X-Am", "x-amz-"));
    assert_true(str_equal_nocase("Content-Type", "content-TYPE"));
    assert_false(str_equal_nocase("Content-Type", "Content-Typ"));
    assert_false(str_equal_nocase(NULL, "a"));
    assert_false(str_equal_nocase("a", NULL));
}

static void test_to_u64(void **s)
{
    uint64_t v = 7;
    assert_int_equal(str_to_u64("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(str_to_u64("18446744073709551615", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(str_to_u64("007", &v), 0);
    assert_int_equal(v, 7);
    v = 1;
    assert_int_equal(str_to_u64("18446744073709551616", &v), -1);
    assert_int_equal(str_to_u64("99999999999999999999999", &v), -1);
    assert_int_equal(str_to_u64("", &v), -1);
    assert_int_equal(str_to_u64(NULL, &v), -1);
    assert_int_equal(str_to_u64("-1", &v), -1);
    assert_int_equal(str_to_u64("+1", &v), -1);
    assert_int_equal(str_to_u64(" 1", &v), -1);
    assert_int_equal(str_to_u64("1 ", &v), -1);
    assert_int_equal(str_to_u64("1x", &v), -1);
    assert_int_equal(str_to_u64("0x10", &v), -1);
    assert_int_equal(v, 1); /* untouched on failure */
}

static void test_to_i64(void **s)
{
    int64_t v = 0;
    assert_int_equal(str_to_i64("-9223372036854775808", &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(str_to_i64("9223372036854775807", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(str_to_i64("-12", &v), 0);
    assert_int_equal(v, -12);
    assert_int_equal(str_to_i64("9223372036854775808", &v), -1);
    assert_int_equal(str_to_i64("-9223372036854775809", &v), -1);
    assert_int_equal(str_to_i64("", &v), -1);
    assert_int_equal(str_to_i64(NULL, &v), -1);
    assert_int_equal(str_to_i64("-", &v), -1);
    assert_int_equal(str_to_i64(" 1", &v), -1);
    assert_int_equal(str_to_i64("1 ", &v), -1);
    assert_int_equal(str_to_i64("1.5", &v), -1);
}

static void test_split_hostport(void **s)
{
    char *a = NULL;
    uint16_t p = 0;
    assert_int_equal(str_split_hostport("127.0.0.1:8773", &a, &p), 0);
    assert_string_equal(a, "127.0.0.1");
    assert_int_equal(p, 8773);
    free(a);
    assert_int_equal(str_split_hostport("[::1]:0", &a, &p), 0);
    assert_string_equal(a, "::1");
    assert_int_equal(p, 0);
    free(a);
    assert_int_equal(str_split_hostport("::1:65535", &a, &p), 0);
    assert_string_equal(a, "::1");
    assert_int_equal(p, 65535);
    free(a);
    assert_int_equal(str_split_hostport("127.0.0.1", &a, &p), -1);
    assert_int_equal(str_split_hostport("127.0.0.1:65536", &a, &p), -1);
    assert_int_equal(str_split_hostport("127.0.0.1:-1", &a, &p), -1);
    assert_int_equal(str_split_hostport("127.0.0.1:x", &a, &p), -1);
    assert_int_equal(str_split_hostport(NULL, &a, &p), -1);
}

static void test_trim(void **s)
{
    char a[] = "  \t hello world \r\n ";
    assert_string_equal(str_trim(a), "hello world");
    char b[] = "x";
    assert_string_equal(str_trim(b), "x");
    char c[] = " \t\n";
    assert_string_equal(str_trim(c), "");
    char d[] = "";
    assert_string_equal(str_trim(d), "");
}

static void test_utf8(void **s)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"", true},
        {"plain ascii", true},
        {"\xc3\xa9", true},         /* é */
        {"\xe2\x82\xac", true},     /* € */
        {"\xf0\x9f\x90\xa8", true}, /* koala */
        {"\xf4\x8f\xbf\xbf", true}, /* U+10FFFF */
        {"\xef\xbf\xbf", true},     /* U+FFFF (valid UTF-8) */
        {"\xed\x9f\xbf", true},     /* U+D7FF */
        {"\xee\x80\x80", true},     /* U+E000 */
        {"\x80", false},            /* lone continuation */
        {"\xc3", false},            /* truncated */
        {"\xe2\x82", false},
        {"\xf0\x9f\x90", false},
        {"a\xc3", false},
        {"\xc3\x28", false}, /* bad continuation */
        {"\xc0\xaf", false}, /* overlong '/' */
        {"\xc1\xbf", false},
        {"\xe0\x80\xaf", false}, /* overlong, 3 bytes */
        {"\xe0\x9f\xbf", false},
        {"\xf0\x80\x80\xaf", false}, /* overlong, 4 bytes */
        {"\xf0\x8f\xbf\xbf", false},
        {"\xed\xa0\x80", false},     /* surrogate U+D800 */
        {"\xed\xbf\xbf", false},     /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", false}, /* U+110000 */
        {"\xf5\x80\x80\x80", false},
        {"\xf8\x88\x80\x80\x80", false}, /* 5-byte form */
        {"\xfe", false},
        {"\xff", false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        if (str_valid_utf8(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("case %zu: expected %s", i,
                     cases[i].ok ? "valid" : "invalid");
    }
    /* NUL bytes are valid UTF-8; len bounds the check. */
    assert_true(str_valid_utf8("a\0b", 3));
    assert_true(str_valid_utf8("\xc3\xa9\xff", 2));
    assert_false(str_valid_utf8("\xc3\xa9\xff", 3));
}

static void test_parse_size(void **s)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"1024", 1024},
        {"64K", 64ull << 10},
        {"64k", 64ull << 10},
        {"10M", 10ull << 20},
        {"2G", 2ull << 30},
        {"1T", 1ull << 40},
        {"10MB", 10ull << 20},
        {"10MiB", 10ull << 20},
        {"16777215T", 16777215ull << 40},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        uint64_t v = 0;
        if (str_parse_size(good[i].s, &v) != 0 || v != good[i].v)
            fail_msg("'%s' parsed wrong", good[i].s);
    }
    static const char *const bad[] = {
        "",
        "K",
        "-1",
        " 1",
        "1 ",
        "1X",
        "1KX",
        "1Ki",
        "1KiBx",
        "1KBx",
        "1MiBgarbage",
        "1.5G",
        "16777216T",
        "18446744073709551616",
        "17179869184G",
        "1B",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        uint64_t v = 0;
        if (str_parse_size(bad[i], &v) == 0)
            fail_msg("'%s' accepted", bad[i]);
    }
    uint64_t v;
    assert_int_equal(str_parse_size(NULL, &v), -1);
}

static void test_time_format(void **s)
{
    char a[17], b[25], c[30];
    time_t t = 1440938160; /* 2015-08-30 12:36:00 UTC, a Sunday */
    assert_string_equal(time_format_iso8601_basic(t, a), "20150830T123600Z");
    assert_string_equal(time_format_iso8601(t, b), "2015-08-30T12:36:00.000Z");
    assert_string_equal(time_format_http(t, c),
                        "Sun, 30 Aug 2015 12:36:00 GMT");
    assert_string_equal(time_format_http(0, c),
                        "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_string_equal(time_format_iso8601_basic(0, a), "19700101T000000Z");
}

static void test_time_parse(void **s)
{
    static const char *const good[] = {
        "20150830T123600Z",
        "2015-08-30T12:36:00Z",
        "2015-08-30T12:36:00.000Z",
        "2015-08-30T12:36:00.123456Z",
        "2015-08-30T12:36:00",
        "Sun, 30 Aug 2015 12:36:00 GMT",
        "Sun, 30 Aug 2015 12:36:00 +0000",
        "Sunday, 30-Aug-15 12:36:00 GMT", /* RFC 850 */
        "Sun Aug 30 12:36:00 2015",       /* asctime */
    };
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        time_t t = 0;
        if (time_parse(good[i], &t) != 0)
            fail_msg("'%s' not parsed", good[i]);
        if (t != 1440938160)
            fail_msg("'%s' parsed as %lld", good[i], (long long)t);
    }
    /* Round trips through each format. */
    char a[17], b[25], c[30];
    for (time_t t = 0; t < 4102444800; t += 86400 * 37 + 3661) {
        time_t back = 0;
        assert_int_equal(time_parse(time_format_iso8601_basic(t, a), &back), 0);
        assert_int_equal(back, t);
        assert_int_equal(time_parse(time_format_iso8601(t, b), &back), 0);
        assert_int_equal(back, t);
        assert_int_equal(time_parse(time_format_http(t, c), &back), 0);
        assert_int_equal(back, t);
    }
    static const char *const bad[] = {
        "",
        "yesterday",
        "20150830",
        "20150830T123600", /* no Z */
        "20150830T123600Zx",
        "2015-08-30 12:36:00",
        "2015-08-30T12:36:00.000Zjunk",
        "Sun, 30 Aug 2015 12:36:00",
        "Sun, 30 Aug 2015 12:36:00 PST",
        "Sun, 30 Foo 2015 12:36:00 GMT",
        "2015-13-30T12:36:00Z",
        "2015-08-30T25:36:00Z",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        time_t t;
        if (time_parse(bad[i], &t) == 0)
            fail_msg("'%s' accepted", bad[i]);
    }
    time_t t;
    assert_int_equal(time_parse(NULL, &t), -1);
}

/* The decoded bytes are followed by a NUL (callers read tokens as text:
 * "MTIzNDUvaS0xMjM0" decodes to exactly 12 bytes "12345/i-1234"). */
static void test_base64_terminated(void **s)
{
    size_t n = 0;
    for (int k = 0; k < 3; k++) {
        static const char *const in[] = {"MTIzNDUvaS0xMjM0", "YQ==", "YWI="};
        static const size_t want[] = {12, 1, 2};
        unsigned char *d = str_base64_decode(in[k], &n);
        assert_non_null(d);
        assert_int_equal(n, want[k]);
        assert_int_equal(d[n], '\0');
        free(d);
    }
}

static void test_base64_text(void **s)
{
    char *t = str_base64_decode_text("MTIzNDUvaS0xMjM0", 12);
    assert_string_equal(t, "12345/i-1234");
    free(t);
    assert_null(str_base64_decode_text("MTIzNDUvaS0xMjM0", 11)); /* long */
    assert_null(str_base64_decode_text("", 10));                 /* empty */
    assert_null(str_base64_decode_text("YQBi", 10)); /* "a\0b": a NUL */
    assert_null(str_base64_decode_text("/w==", 10)); /* 0xff: not UTF-8 */
    assert_null(str_base64_decode_text("YQ", 10));   /* not base64 */
    t = str_base64_decode_text("w6k=", 10);          /* U+00E9 */
    assert_string_equal(t, "\xc3\xa9");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_growth),
        cmocka_unit_test(test_cleanup_attrs),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_uri_decode),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_base64_invalid),
        cmocka_unit_test(test_base64_terminated),
        cmocka_unit_test(test_base64_text),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_to_u64),
        cmocka_unit_test(test_to_i64),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_split_hostport),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_time_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
