/* test_checksum.c: the streaming digests: published vectors for every
 * algorithm, incremental feeding equal to one shot, S3's base64 form, and
 * both CRC32C paths (SSE 4.2 and tables) against a bit-at-a-time reference.
 *
 * The module's source is included so the test reaches its static CRC32C
 * paths; its public functions then come from here, not from libkoala. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/common/checksum.c"

#include "buf.h"

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    str_hex(d, n, out);
}

static void check_alg(enum checksum_alg alg, const char *in, size_t len,
                      const char *want_hex)
{
    struct checksum *c = checksum_new(alg);
    assert_non_null(c);
    checksum_update(c, in, len);
    unsigned char d[CHECKSUM_MAX_LEN];
    size_t n = checksum_final(c, d);
    assert_int_equal(n, checksum_alg_len(alg));
    char hex[2 * CHECKSUM_MAX_LEN + 1];
    hex_of(d, n, hex);
    assert_string_equal(hex, want_hex);
    checksum_free(c);
}

static void test_vectors(void **state)
{
    (void)state;
    static const char fox[] = "The quick brown fox jumps over the lazy dog";
    check_alg(CHECKSUM_MD5, "", 0, "d41d8cd98f00b204e9800998ecf8427e");
    check_alg(CHECKSUM_MD5, "abc", 3, "900150983cd24fb0d6963f7d28e17f72");
    check_alg(CHECKSUM_MD5, fox, strlen(fox),
              "9e107d9d372bb6826bd81d3542a419d6");
    check_alg(CHECKSUM_SHA1, "", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    check_alg(CHECKSUM_SHA1, "abc", 3,
              "a9993e364706816aba3e25717850c26c9cd0d89d");
    check_alg(
        CHECKSUM_SHA256, "", 0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_alg(
        CHECKSUM_SHA256, "abc", 3,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* CRCs are big-endian, the "check" values of the catalogue. */
    check_alg(CHECKSUM_CRC32, "123456789", 9, "cbf43926");
    check_alg(CHECKSUM_CRC32C, "123456789", 9, "e3069283");
    check_alg(CHECKSUM_CRC32, "", 0, "00000000");
    check_alg(CHECKSUM_CRC32C, "", 0, "00000000");
    check_alg(CHECKSUM_CRC32, fox, strlen(fox), "414fa339");
}

/* RFC 3720 (iSCSI) B.4 CRC32C examples. */
static void test_crc32c_rfc3720(void **state)
{
    (void)state;
    unsigned char buf[48];
    memset(buf, 0, 32);
    assert_int_equal(checksum_crc32c_update(0, buf, 32), 0x8A9136AA);
    memset(buf, 0xFF, 32);
    assert_int_equal(checksum_crc32c_update(0, buf, 32), 0x62A8AB43);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    assert_int_equal(checksum_crc32c_update(0, buf, 32), 0x46DD794E);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    assert_int_equal(checksum_crc32c_update(0, buf, 32), 0x113FDB5C);
    static const unsigned char scsi[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    assert_int_equal(checksum_crc32c_update(0, scsi, 48), 0xD9963A56);
    /* Continuing a CRC is the same as one pass. */
    uint32_t c = checksum_crc32c_update(0, "12345", 5);
    assert_int_equal(checksum_crc32c_update(c, "6789", 4), 0xE3069283);
}

static uint32_t crc32c_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* Both implementations, at every alignment and many lengths. */
static void test_crc32c_paths(void **state)
{
    (void)state;
    enum { N = 4096 };
    unsigned char *data = malloc(N + 16);
    assert_non_null(data);
    uint32_t seed = 12345;
    for (size_t i = 0; i < N + 16; i++) {
        seed = seed * 1103515245u + 12345u;
        data[i] = (unsigned char)(seed >> 16);
    }
    for (size_t off = 0; off < 16; off++) {
        for (size_t len = 0; len < 300; len += (len < 40 ? 1 : 37)) {
            uint32_t want = crc32c_bitwise(0, data + off, len);
            assert_int_equal(~crc32c_sw(~0u, data + off, len), want);
#ifdef CRC32C_HW
            if (have_sse42())
                assert_int_equal(~crc32c_hw(~0u, data + off, len), want);
#endif
            assert_int_equal(checksum_crc32c_update(0, data + off, len), want);
        }
    }
    uint32_t want = crc32c_bitwise(0, data, N);
    assert_int_equal(~crc32c_sw(~0u, data, N), want);
    assert_int_equal(checksum_crc32c_update(0, data, N), want);
    free(data);
}

/* Feeding in pieces of any size gives the one-shot digest. */
static void test_incremental(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    unsigned char *data = malloc(N);
    assert_non_null(data);
    uint32_t seed = 7;
    for (size_t i = 0; i < N; i++) {
        seed = seed * 1664525u + 1013904223u;
        data[i] = (unsigned char)(seed >> 24);
    }
    enum checksum_alg all[] = {CHECKSUM_MD5, CHECKSUM_SHA1, CHECKSUM_SHA256,
                               CHECKSUM_CRC32, CHECKSUM_CRC32C};
    for (size_t a = 0; a < ARRAY_SIZE(all); a++) {
        unsigned char one[CHECKSUM_MAX_LEN], inc[CHECKSUM_MAX_LEN];
        struct checksum *c = checksum_new(all[a]);
        checksum_update(c, data, N);
        size_t n1 = checksum_final(c, one);
        checksum_free(c);

        c = checksum_new(all[a]);
        size_t off = 0, step = 1;
        while (off < N) {
            size_t take = step < N - off ? step : N - off;
            checksum_update(c, data + off, take);
            off += take;
            step = step * 3 + 1;
            if (step > 100000)
                step = 1;
        }
        size_t n2 = checksum_final(c, inc);
        assert_int_equal(n1, n2);
        assert_memory_equal(one, inc, n1);
        /* final is idempotent, and updates after it are ignored */
        checksum_update(c, "x", 1);
        unsigned char again[CHECKSUM_MAX_LEN];
        assert_int_equal(checksum_final(c, again), n1);
        assert_memory_equal(one, again, n1);
        checksum_free(c);
    }
    free(data);
}

static char *b64_of(enum checksum_alg alg, const void *data, size_t len)
{
    struct checksum *c = checksum_new(alg);
    checksum_update(c, data, len);
    unsigned char d[CHECKSUM_MAX_LEN];
    size_t n = checksum_final(c, d);
    checksum_free(c);
    return str_base64_encode(d, n);
}

/* The values S3 puts in x-amz-checksum-* headers. */
static void test_s3_base64(void **state)
{
    (void)state;
    char *s = b64_of(CHECKSUM_CRC32, "123456789", 9);
    assert_string_equal(s, "y/Q5Jg==");
    free(s);
    s = b64_of(CHECKSUM_CRC32C, "123456789", 9);
    assert_string_equal(s, "4waSgw==");
    free(s);
    /* The trailer of the AWS sigv4-streaming-trailers example: 66560 'a'. */
    char *a = malloc(66560);
    memset(a, 'a', 66560);
    s = b64_of(CHECKSUM_CRC32C, a, 66560);
    assert_string_equal(s, "sOO8/Q==");
    free(s);
    free(a);
    s = b64_of(CHECKSUM_SHA256, "", 0);
    assert_string_equal(s, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    free(s);
    s = b64_of(CHECKSUM_SHA1, "", 0);
    assert_string_equal(s, "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
    free(s);
    s = b64_of(CHECKSUM_MD5, "", 0);
    assert_string_equal(s, "1B2M2Y8AsgTpgAmY7PhCfg==");
    free(s);
}

static void test_one_shot_and_names(void **state)
{
    (void)state;
    char hex[65];
    checksum_sha256_hex("abc", 3, hex);
    assert_string_equal(
        hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unsigned char md5[16];
    checksum_md5("abc", 3, md5);
    char mhex[33];
    str_hex(md5, 16, mhex);
    assert_string_equal(mhex, "900150983cd24fb0d6963f7d28e17f72");

    enum checksum_alg a;
    assert_int_equal(checksum_alg_parse("CRC32", &a), 0);
    assert_int_equal(a, CHECKSUM_CRC32);
    assert_int_equal(checksum_alg_parse("crc32c", &a), 0);
    assert_int_equal(a, CHECKSUM_CRC32C);
    assert_int_equal(checksum_alg_parse("Sha256", &a), 0);
    assert_int_equal(a, CHECKSUM_SHA256);
    assert_int_equal(checksum_alg_parse("sha1", &a), 0);
    assert_int_equal(checksum_alg_parse("md5", &a), 0);
    assert_int_equal(a, CHECKSUM_MD5);
    assert_int_equal(checksum_alg_parse("crc64nvme", &a), -1);
    assert_int_equal(checksum_alg_parse(NULL, &a), -1);
    assert_string_equal(checksum_alg_name(CHECKSUM_CRC32C), "crc32c");
    assert_string_equal(checksum_alg_name(CHECKSUM_SHA256), "sha256");
    assert_int_equal(checksum_alg_len(CHECKSUM_SHA1), 20);
    assert_int_equal(checksum_alg_len(CHECKSUM_MD5), 16);
    checksum_free(NULL);
    {
        _cleanup_checksum_ struct checksum *c = checksum_new(CHECKSUM_SHA1);
        assert_non_null(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_crc32c_rfc3720),
        cmocka_unit_test(test_crc32c_paths),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_s3_base64),
        cmocka_unit_test(test_one_shot_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
