/* tunnel_crypt.h: the encrypted tunnels between clusters' routers, for
 * kernels without ESP or WireGuard (docs/network.md, "Encryption").
 *
 * DESIGN.  The kernel's VXLAN device stays the tunnel; only its UDP leg
 * between routers is wrapped.  kvx0 and its FDB entries are as without
 * encryption (tunnel.c); an nftables table (ip koala_cc_tunnel) redirects
 * the VXLAN packets kvx0 sends to a peer (daddr the peer, dport 4789) to
 * tunnel_address:P, P a UDP socket of this relay for that peer, and drops
 * VXLAN that comes in from anywhere but this host, so nothing reaches
 * kvx0 in the clear.  The relay seals what the kernel sends to P and
 * sends it from its WAN socket (tunnel_address:4790) to the peer's relay,
 * which opens it and hands the VXLAN packet to its own kvx0 at
 * tunnel_address:4789.  (A kvx0 bound to 127.0.0.1 with FDB entries
 * naming 127.0.0.1:P would need the kernel's `nolocalbypass`, which
 * Debian 12's iproute2 cannot set: VXLAN to a local address is otherwise
 * delivered straight to a local VXLAN device, never to a socket.)
 *
 * A sealed packet: "KT" 1 0 | session (16) | counter (8, big endian) |
 * AES-256-GCM ciphertext | tag (16); the 28-byte header is the additional
 * data.  Keys: the cloud's tunnel secret S (32 bytes, from the CLC over
 * mutual TLS) gives each direction its key, K(a->b) = HMAC-SHA256(S,
 * "koala-tunnel-1" | a | b) (a, b the WAN addresses as text, NUL
 * separated), and each session (a random 16-byte id chosen when a relay
 * starts or is rekeyed) its own, HMAC-SHA256(K(a->b), session).  The nonce
 * is 4 zero bytes and the counter, which starts at 1 and only grows within
 * a session, so no (key, nonce) pair repeats.  The receiver keeps, per
 * peer, the last two sessions it saw and a 64-packet replay window for
 * each; a packet that fails its tag, replays, or comes from an address
 * that is no peer is dropped and counted.
 *
 * Overhead: 20 (IP) + 8 (UDP) + 44 (seal) on top of VXLAN's 8 + 14, so
 * kvx0's MTU is 1406 and the guests get 1400.
 */
#ifndef KOALA_CC_TUNNEL_CRYPT_H
#define KOALA_CC_TUNNEL_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define TUNNEL_SECRET_BYTES 32
#define TUNNEL_SESSION_BYTES 16
#define TUNNEL_HEADER_BYTES 28
#define TUNNEL_TAG_BYTES 16
#define TUNNEL_SEAL_OVERHEAD (TUNNEL_HEADER_BYTES + TUNNEL_TAG_BYTES)
#define TUNNEL_RELAY_PORT 4790
#define TUNNEL_MAX_PACKET 9216

/* ---- pure functions (unit tested) ---- */

/* K(src -> dst) of the secret. */
void tunnel_direction_key(const uint8_t secret[TUNNEL_SECRET_BYTES],
                          const char *src, const char *dst, uint8_t out[32]);
/* A session's key of a direction key. */
void tunnel_session_key(const uint8_t dir_key[32],
                        const uint8_t session[TUNNEL_SESSION_BYTES],
                        uint8_t out[32]);
/* Seals in[0..len) into out (len + TUNNEL_SEAL_OVERHEAD bytes).  Returns
 * the sealed length, or 0 when OpenSSL fails. */
size_t tunnel_seal(const uint8_t session_key[32],
                   const uint8_t session[TUNNEL_SESSION_BYTES],
                   uint64_t counter, const uint8_t *in, size_t len,
                   uint8_t *out);
/* The session id and counter a sealed packet claims (no check of its tag):
 * false when it is too short or not ours. */
bool tunnel_peek(const uint8_t *in, size_t len,
                 uint8_t session[TUNNEL_SESSION_BYTES], uint64_t *counter);
/* Opens a sealed packet with its session's key into out (len -
 * TUNNEL_SEAL_OVERHEAD bytes): the plaintext length, or -1 when it is
 * not authentic. */
long tunnel_open(const uint8_t session_key[32], const uint8_t *in, size_t len,
                 uint8_t *out);

/* A replay window: the highest counter accepted and the 64 below it. */
struct tunnel_window {
    uint64_t top;
    uint64_t seen; /* bit i: top - i accepted */
};
/* True (and recorded) when counter is new; false for a replay or one too
 * old.  Call only for authentic packets. */
bool tunnel_window_accept(struct tunnel_window *w, uint64_t counter);

/* ---- the relay ---- */

struct tunnel_relay;
struct tunnel_relay_peer {
    char address[16]; /* its WAN address */
    uint16_t inner_port; /* out: our port its VXLAN packets are sent to */
};
struct tunnel_relay_stats {
    uint64_t sealed, opened, dropped_auth, dropped_replay, dropped_unknown;
};

/* Starts the relay's thread with its WAN socket (local:TUNNEL_RELAY_PORT)
 * in netns; no peers yet. */
struct tunnel_relay *tunnel_relay_start(const char *netns, const char *local,
                                        struct koala_error **err);
/* Replaces the secret and the peers; fills each peer's inner_port (a peer
 * kept keeps its port).  A new secret starts a new session. */
int tunnel_relay_set(struct tunnel_relay *r,
                     const uint8_t secret[TUNNEL_SECRET_BYTES],
                     struct tunnel_relay_peer *peers, size_t n,
                     struct koala_error **err);
void tunnel_relay_stats(struct tunnel_relay *r, struct tunnel_relay_stats *out);
/* Stops the thread, closes the sockets.  NULL-safe. */
void tunnel_relay_free(struct tunnel_relay *r);

#endif
