/* test_sc_manifest.c: the SC's snapshot manifests and block hashes
 * (src/sc/manifest.c): block counts of odd sizes, zero blocks hashed as
 * nothing, the JSON round trip, and manifests that must be refused; and
 * the [sc] options (sc_options_load): defaults and bad values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "config.h"
#include "manifest.h"
#include "sc.h"

static void test_count(void **state)
{
    (void)state;
    assert_int_equal(sc_manifest_count(1ull << 30, 524288), 2048);
    assert_int_equal(sc_manifest_count(524288, 524288), 1);
    assert_int_equal(sc_manifest_count(524289, 524288), 2);
    assert_int_equal(sc_manifest_count(1, 524288), 1);
    assert_int_equal(sc_manifest_count(0, 524288), 0);
}

static void test_block_hash(void **state)
{
    (void)state;
    size_t len = 524288;
    char *b = calloc(1, len), out[65], want[65];
    assert_non_null(b);
    assert_false(sc_block_hash(b, len, out));
    assert_string_equal(out, "");
    /* one byte anywhere, even the last of an odd length, is data */
    b[len - 1] = 1;
    assert_true(sc_block_hash(b, len, out));
    checksum_sha256_hex(b, len, want);
    assert_string_equal(out, want);
    assert_true(sc_hash_valid(out));
    b[len - 1] = 0;
    b[3] = 7;
    assert_true(sc_block_hash(b, 5, out));
    assert_false(sc_block_hash(b, 3, out));
    free(b);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct sc_manifest m, back;
    struct koala_error *err = NULL;
    /* 1 MiB + 1 byte: three blocks, the last one a byte long */
    assert_int_equal(sc_manifest_init(&m, (1u << 20) + 1, 524288, &err), 0);
    assert_int_equal(m.n, 3);
    checksum_sha256_hex("a", 1, m.hash[0]);
    checksum_sha256_hex("b", 1, m.hash[2]);
    size_t len = 0;
    char *text = sc_manifest_dump(&m, "snap-0123456789abcdef0",
                                  "vol-0123456789abcdef0", &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"blocks\":[\""));
    assert_non_null(strstr(text, "null"));
    assert_int_equal(sc_manifest_parse(text, len, &back, &err), 0);
    assert_int_equal(back.volume_size, m.volume_size);
    assert_int_equal(back.block_size, 524288);
    assert_int_equal(back.n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(back.hash[i], m.hash[i]);
    free(text);
    sc_manifest_clear(&m);
    sc_manifest_clear(&back);
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "not json",
        "{}",
        /* two blocks for a volume of three */
        "{\"volumeSize\":1048577,\"blockSize\":524288,\"blocks\":[null,null]}",
        /* a hash that is not 64 hex digits */
        "{\"volumeSize\":524288,\"blockSize\":524288,\"blocks\":[\"abc\"]}",
        "{\"volumeSize\":524288,\"blockSize\":524288,\"blocks\":[7]}",
        "{\"volumeSize\":0,\"blockSize\":524288,\"blocks\":[]}",
        "{\"volumeSize\":524288,\"blockSize\":0,\"blocks\":[null]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sc_manifest m;
        struct koala_error *err = NULL;
        assert_int_equal(sc_manifest_parse(bad[i], strlen(bad[i]), &m, &err),
                         -1);
        assert_non_null(err);
        assert_null(m.hash);
        error_free(err);
    }
}

static int load(const char *text, struct sc_options *o,
                struct koala_error **err)
{
    struct config *cfg = config_parse_string(text, err);
    assert_non_null(cfg);
    int rc = sc_options_load(cfg, o, err);
    config_free(cfg);
    return rc;
}

static void test_options(void **state)
{
    (void)state;
    struct sc_options o;
    struct koala_error *err = NULL;
    assert_int_equal(load("[sc]\ntls_cert = c\ntls_key = k\nca = a\n", &o,
                          &err),
                     0);
    assert_int_equal(o.port, 8776);
    assert_string_equal(o.listen_addr, "127.0.0.1");
    assert_int_equal(o.capacity_bytes, 100ull << 30);
    assert_int_equal(o.transport, SC_EXPORT_UNIX);
    assert_string_equal(o.export_dir, "/var/lib/koala/sc/exports");
    assert_string_equal(o.export_address, "127.0.0.1");
    assert_null(o.walrus_endpoint);
    sc_options_clear(&o);
    assert_int_equal(load("[sc]\ntls_cert = c\ntls_key = k\nca = a\n"
                          "capacity_gb = 7\nexport_transport = tcp\n"
                          "listen = 0.0.0.0:9000\nexport_address = 10.0.0.5\n",
                          &o, &err),
                     0);
    assert_int_equal(o.capacity_bytes, 7ull << 30);
    assert_int_equal(o.transport, SC_EXPORT_TCP);
    assert_string_equal(o.export_address, "10.0.0.5");
    sc_options_clear(&o);
    const char *bad[] = {
        "[sc]\n",
        "[sc]\ntls_cert = c\ntls_key = k\nca = a\ncapacity_gb = 0\n",
        "[sc]\ntls_cert = c\ntls_key = k\nca = a\ncapacity_gb = lots\n",
        "[sc]\ntls_cert = c\ntls_key = k\nca = a\nexport_transport = iscsi\n",
        "[sc]\ntls_cert = c\ntls_key = k\nca = a\nname = a/b\n",
        "[sc]\ntls_cert = c\ntls_key = k\nca = a\nlisten = nowhere\n",
        "[sc]\ntls_cert = c\ntls_key = k\nca = a\nwalrus_endpoint = http://x\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        assert_int_equal(load(bad[i], &o, &err), -1);
        assert_non_null(err);
        error_free(err);
        sc_options_clear(&o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_block_hash),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
