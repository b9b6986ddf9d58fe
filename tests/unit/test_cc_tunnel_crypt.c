/* test_cc_tunnel_crypt.c: the sealing of the encrypted tunnels between
 * clusters' routers (src/cc/tunnel_crypt.h): round trips, the keys of each
 * direction and session, tampering anywhere refused, the replay window.
 * The relay carrying real traffic between two routers is tested in
 * tests/integration/test_tunnels.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "tunnel_crypt.h"

static const uint8_t SECRET[TUNNEL_SECRET_BYTES] = {
    1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t SESSION[TUNNEL_SESSION_BYTES] = {
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};

static void keys(const char *src, const char *dst, uint8_t out[32])
{
    uint8_t dir[32];
    tunnel_direction_key(SECRET, src, dst, dir);
    tunnel_session_key(dir, SESSION, out);
}

static void test_round_trip(void **s)
{
    uint8_t k[32], in[1500], sealed[1500 + TUNNEL_SEAL_OVERHEAD], out[1500];
    keys("192.0.2.1", "192.0.2.2", k);
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 7);
    size_t n = tunnel_seal(k, SESSION, 42, in, sizeof(in), sealed);
    assert_int_equal(n, sizeof(in) + TUNNEL_SEAL_OVERHEAD);
    /* the payload does not appear in the clear */
    assert_null(memmem(sealed, n, in + 100, 32));
    uint8_t sess[TUNNEL_SESSION_BYTES];
    uint64_t ctr;
    assert_true(tunnel_peek(sealed, n, sess, &ctr));
    assert_int_equal(ctr, 42);
    assert_memory_equal(sess, SESSION, sizeof(sess));
    assert_int_equal(tunnel_open(k, sealed, n, out), (long)sizeof(in));
    assert_memory_equal(out, in, sizeof(in));
    /* an empty packet too */
    n = tunnel_seal(k, SESSION, 43, in, 0, sealed);
    assert_int_equal(n, TUNNEL_SEAL_OVERHEAD);
    assert_int_equal(tunnel_open(k, sealed, n, out), 0);
}

static void test_keys_differ_by_direction_session_and_secret(void **s)
{
    uint8_t ab[32], ba[32], ac[32], other[32], dir[32];
    keys("192.0.2.1", "192.0.2.2", ab);
    keys("192.0.2.2", "192.0.2.1", ba);
    keys("192.0.2.1", "192.0.2.3", ac);
    assert_memory_not_equal(ab, ba, 32);
    assert_memory_not_equal(ab, ac, 32);
    /* "192.0.2.1" + "2.0.2.2" must not collide with "192.0.2.12" + ... */
    keys("192.0.2.12", ".0.2.2", other);
    assert_memory_not_equal(ab, other, 32);
    uint8_t sess2[TUNNEL_SESSION_BYTES] = {0};
    tunnel_direction_key(SECRET, "192.0.2.1", "192.0.2.2", dir);
    tunnel_session_key(dir, sess2, other);
    assert_memory_not_equal(ab, other, 32);
    uint8_t secret2[TUNNEL_SECRET_BYTES] = {0};
    tunnel_direction_key(secret2, "192.0.2.1", "192.0.2.2", dir);
    tunnel_session_key(dir, SESSION, other);
    assert_memory_not_equal(ab, other, 32);
}

static void test_tampering_is_refused(void **s)
{
    uint8_t k[32], wrong[32], in[200], sealed[200 + TUNNEL_SEAL_OVERHEAD],
        bad[sizeof(sealed)], out[200];
    keys("192.0.2.1", "192.0.2.2", k);
    keys("192.0.2.2", "192.0.2.1", wrong);
    memset(in, 'x', sizeof(in));
    size_t n = tunnel_seal(k, SESSION, 7, in, sizeof(in), sealed);
    /* every byte flipped, header (session, counter) included */
    for (size_t i = 0; i < n; i++) {
        memcpy(bad, sealed, n);
        bad[i] ^= 0x01;
        assert_int_equal(tunnel_open(k, bad, n, out), -1);
    }
    assert_int_equal(tunnel_open(wrong, sealed, n, out), -1);
    assert_int_equal(tunnel_open(k, sealed, n - 1, out), -1);
    assert_int_equal(tunnel_open(k, sealed, TUNNEL_SEAL_OVERHEAD - 1, out),
                     -1);
    uint8_t sess[TUNNEL_SESSION_BYTES];
    uint64_t ctr;
    assert_false(tunnel_peek((const uint8_t *)"not a sealed packet at all...."
                                              "..............",
                             44, sess, &ctr));
}

static void test_replay_window(void **s)
{
    struct tunnel_window w = {0};
    assert_false(tunnel_window_accept(&w, 0));
    assert_true(tunnel_window_accept(&w, 1));
    assert_false(tunnel_window_accept(&w, 1));
    assert_true(tunnel_window_accept(&w, 5));
    assert_true(tunnel_window_accept(&w, 3)); /* late, in the window */
    assert_false(tunnel_window_accept(&w, 3));
    assert_true(tunnel_window_accept(&w, 2));
    assert_true(tunnel_window_accept(&w, 100));
    assert_false(tunnel_window_accept(&w, 5)); /* 95 behind: too old */
    assert_true(tunnel_window_accept(&w, 37)); /* 63 behind: still in */
    assert_false(tunnel_window_accept(&w, 36)); /* 64 behind: out */
    assert_false(tunnel_window_accept(&w, 37));
    assert_true(tunnel_window_accept(&w, 1000000));
    assert_false(tunnel_window_accept(&w, 100));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_keys_differ_by_direction_session_and_secret),
        cmocka_unit_test(test_tampering_is_refused),
        cmocka_unit_test(test_replay_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
